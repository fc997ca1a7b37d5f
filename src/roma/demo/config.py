"""``roma demo``'s settings: :class:`DemoConfig`, the named variants and their recipes, ``--quick``, the
output file names. :func:`build_config` layers defaults, :data:`QUICK`, a YAML file and the CLI flags."""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

EVAL_SPLITS: tuple[str, ...] = ("test", "validation")
BASE = "base"
REFERENCE = "grpo"
"""The variant that the deltas of the table are taken against."""


@dataclass(frozen=True)
class VariantKind:
    """A named variant: what it is, and the recipe keys it sets on top of the common ``train`` block."""

    help: str
    recipe: dict[str, Any] | None  # None: no RL (the base policy)
    uses_roma: bool = False  # the DemoConfig.roma block applies before ``recipe``


VARIANTS: dict[str, VariantKind] = {
    "base": VariantKind("the SFT warm-up, no RL", None),
    "grpo": VariantKind("GRPO on clean rollouts (no degraded image anywhere)", {"mode": "grpo"}),
    "naive-aug": VariantKind("GRPO whose rollouts are sampled on degraded images", {"mode": "naive_aug"}),
    "roma": VariantKind("ROMA (DemoConfig.roma: K views, λ_kl, λ_aux, worst case)", {}, uses_roma=True),
    "roma-mean": VariantKind("ROMA, mean over the views instead of the worst case", {"worst_case": "mean"}, True),
    "roma-no-aux": VariantKind("ROMA without the auxiliary policy gradient (λ_aux = 0)", {"lambda_aux": 0.0}, True),
    "roma-no-mask": VariantKind("ROMA penalising every trajectory, not only successful ones",
                                {"correctness_mask": False}, True),
    "roma-no-inv": VariantKind("ROMA without the invariance penalty (λ_kl = 0)", {"lambda_kl": 0.0}, True),
}

MANAGED_TRAIN_KEYS: tuple[str, ...] = (
    "model_name_or_path", "output_dir", "seed", "view_seed", "synthetic_families", "synthetic_image_size",
    "build_tiny_model", "save_strategy", "save_steps", "save_only_model", "resume_from_checkpoint",
)
"""Recipe keys the demo sets itself (paths, seeds, the final checkpoint that holds ``trainer_state.json``)."""
MANAGED_SFT_KEYS: tuple[str, ...] = ("model_dir", "output_dir", "seed", "families", "image_size", "num_threads")


def _default_sft() -> dict[str, Any]:
    # A budget in steps, not minutes, so that the base policy does not depend on how busy the machine is:
    # the cosine schedule decays over 800 steps and the warm-up stops once validation accuracy reaches 0.55
    # (about 500 steps, under 3 minutes on 2 idle cores); max_minutes is only a safety net. The warm-up's own
    # test measurement is skipped: the demo evaluates the base itself.
    return {"max_steps": 800, "max_minutes": 12.0, "test_examples": 0}


def _default_train() -> dict[str, Any]:
    # The tiny recipes of configs/tiny-{grpo,roma,naive-aug}.yaml with the demo's budget.
    return {
        "dataset_name": "synthetic",
        "dataset_split": "train",
        "dataset_size": 2048,
        "dataset_seed": 7,
        "reward_funcs": ["accuracy", "format"],
        "success_reward": "accuracy_reward",
        "suppress_vision_tokens": True,
        "degradation_pool": "seen",
        "degradation_level": "train",
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "per_device_train_batch_size": 64,  # 8 prompts x 8 completions
        "num_generations": 8,
        "max_completion_length": 48,
        "temperature": 1.0,
        "beta": 0.0,
        "learning_rate": 3.0e-5,  # chosen on the validation split (docs/results.md)
        "lr_scheduler_type": "constant",
        "max_steps": 60,
        "logging_steps": 1,
        "report_to": "none",
    }


def _default_roma() -> dict[str, Any]:
    return {
        "mode": "roma",
        "roma_views": 3,
        "lambda_kl": 2.0,  # chosen on the validation split (docs/results.md); the library default is 0.05
        "lambda_aux": 0.1,
        "worst_case": "batch",
        "kl_estimator": "k3",
        "correctness_mask": True,
        "aux_correct_only": True,
    }


@dataclass
class DemoConfig:
    """Every setting of ``roma demo``; the defaults are the full demo (about 15 minutes on 2 cores)."""

    out: str = field(default="runs/demo", metadata={"help": "Output folder (--quick: runs/demo-quick)."})
    variants: list[str] = field(
        default_factory=lambda: ["base", "grpo", "naive-aug", "roma"],
        metadata={"help": f"Variants to train and evaluate: {list(VARIANTS)}, each optionally with recipe "
                  "overrides as NAME:key=value[,key=value] (e.g. roma:lambda_kl=0.2,roma_views=2)."},
    )
    seeds: int = field(
        default=1, metadata={"help": "RL seeds 0..seeds-1 per variant (trainer seed and view seed); the table "
                             "shows mean ± std over them. The base is trained once."},
    )
    base_seed: int = field(default=0, metadata={"help": "Seed of the tiny model's weights and of the SFT warm-up."})
    num_threads: int = field(
        default=2, metadata={"help": "torch CPU threads for every stage (1 gives steadier timings when shared)."}
    )
    families: list[str] | None = field(
        default=None,
        metadata={"help": "Synthetic task families for SFT, RL and evaluation (default: all of "
                  "roma.data.synthetic.FAMILIES)."},
    )
    image_size: int = field(default=128, metadata={"help": "Image side in pixels (128: 16 vision tokens)."})
    model_spec: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Overrides of roma.models.TinyQwen3VLSpec (default sizes)."}
    )
    sft: dict[str, Any] = field(
        default_factory=_default_sft,
        metadata={"help": "Overrides of roma.sft.SFTRunConfig's defaults (the demo sets model_dir, output_dir, "
                  "seed, families, image_size and num_threads)."},
    )
    train: dict[str, Any] = field(
        default_factory=_default_train,
        metadata={"help": "The RL recipe common to every variant: keys of roma.train.RomaConfig, TRL's "
                  "ModelConfig or roma.train.cli.DataArguments (as in configs/tiny-*.yaml). The same budget "
                  "(max_steps, batch, generations) for every variant."},
    )
    roma: dict[str, Any] = field(
        default_factory=_default_roma,
        metadata={"help": "ROMA's recipe keys, applied to the roma* variants before their own overrides."},
    )
    eval_split: str = field(
        default="test",
        metadata={"help": "Synthetic split the models are compared on: 'test' for results, 'validation' for "
                  "any tuning (sweeps)."},
    )
    eval_examples: int = field(default=200, metadata={"help": "Examples of the evaluation split."})
    eval_levels: list[int] = field(
        default_factory=lambda: [1, 2, 3], metadata={"help": "Degradation levels evaluated (main table: 3)."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "(example × condition) items per generate call."})
    eval_max_new_tokens: int = field(
        default=32, metadata={"help": "Greedy generation budget (worked solutions are 10–25 tokens)."}
    )
    eval_seed: int = field(default=0, metadata={"help": "Seed of the degraded evaluation views."})

    def __post_init__(self) -> None:
        from roma.data.synthetic import FAMILIES

        if self.families is None:
            self.families = list(FAMILIES)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {self.families}")
        if not self.variants:
            raise ValueError("variants must name at least one variant")
        specs = [parse_variant(v) for v in self.variants]
        slugs = [s.slug for s in specs]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"variants must be distinct, got {self.variants}")
        for name in ("seeds", "num_threads", "image_size", "eval_examples", "eval_batch_size", "eval_max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"eval_split must be one of {list(EVAL_SPLITS)}, got {self.eval_split!r}")
        bad = [lv for lv in self.eval_levels if isinstance(lv, bool) or lv not in (1, 2, 3)]
        if bad or not self.eval_levels:
            raise ValueError(f"eval_levels must be a non-empty subset of [1, 2, 3], got {self.eval_levels}")
        self.eval_levels = sorted(set(self.eval_levels))
        for block, managed in (("sft", MANAGED_SFT_KEYS), ("train", MANAGED_TRAIN_KEYS)):
            mapping = getattr(self, block)
            if not isinstance(mapping, dict):
                raise TypeError(f"{block} must be a mapping of settings, got {type(mapping).__name__}")
            clash = sorted(set(mapping) & set(managed))
            if clash:
                raise ValueError(f"{block} may not set {clash}: the demo sets {list(managed)} itself")
        clash = sorted(set(self.roma) & set(MANAGED_TRAIN_KEYS))
        if clash:
            raise ValueError(f"roma may not set {clash}: the demo sets {list(MANAGED_TRAIN_KEYS)} itself")
        if "mode" in self.train:
            raise ValueError("train may not set 'mode': each variant sets it (see VARIANTS)")

    @property
    def main_level(self) -> int:
        from roma.eval.protocol import main_level_of

        return main_level_of(self.eval_levels)


QUICK: dict[str, Any] = {
    "out": "runs/demo-quick",
    "sft": {"max_steps": 4, "train_examples": 128, "validation_examples": 8, "test_examples": 0,
            "eval_every_steps": 4, "batch_size": 8, "warmup_steps": 1, "logging_steps": 2, "max_minutes": 1.0},
    "train": {"max_steps": 2, "per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 16,
              "dataset_size": 16},
    "eval_examples": 3,
    "eval_levels": [3],
    "eval_batch_size": 32,
    "eval_max_new_tokens": 16,
}
"""``--quick``: every stage with a tiny budget (a smoke test of the pipeline, not a result): 4 SFT steps,
2 RL steps of 2 prompts × 4 completions, 3 evaluation examples under the 10 conditions of Level 3."""


# ------------------------------------------------------------------------------------------ variants


@dataclass(frozen=True)
class Variant:
    """A parsed variant: ``name`` (a key of :data:`VARIANTS`), its overrides, its label and folder name."""

    name: str
    overrides: dict[str, Any]
    label: str  # as written by the user, shown in the report
    slug: str  # folder name

    @property
    def trained(self) -> bool:
        return VARIANTS[self.name].recipe is not None


def _scalar(text: str) -> Any:
    """A YAML scalar, with numbers in exponent form read as floats (YAML 1.1 reads ``3e-5`` as a string)."""
    import yaml

    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_variant(spec: str) -> Variant:
    """``"roma"`` or ``"roma:lambda_kl=0.2,roma_views=2"`` → :class:`Variant` (values parsed as YAML scalars)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a variant is a non-empty string, got {spec!r}")
    name, _, rest = spec.partition(":")
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r} in {spec!r}; choose one of {list(VARIANTS)}")
    overrides: dict[str, Any] = {}
    if rest:
        if VARIANTS[name].recipe is None:
            raise ValueError(f"variant {name!r} has no RL recipe to override, got {spec!r}")
        for item in rest.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"variant overrides are key=value pairs separated by commas, got {item!r} in {spec!r}")
            if key in MANAGED_TRAIN_KEYS or key == "mode":
                raise ValueError(f"variant {spec!r} may not set {key!r}: the demo sets {list(MANAGED_TRAIN_KEYS)} "
                                 "and each variant its mode")
            overrides[key] = _scalar(value)
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", spec.replace(":", "__"))
    return Variant(name, overrides, spec, slug)


def variant_recipe(config: DemoConfig, variant: Variant) -> dict[str, Any]:
    """The RL recipe keys of a trained variant (without the keys the demo manages)."""
    kind = VARIANTS[variant.name]
    if kind.recipe is None:
        raise ValueError(f"variant {variant.name!r} is not trained")
    recipe = dict(config.train)
    if kind.uses_roma:
        recipe.update(config.roma)
    recipe.update(kind.recipe)
    recipe.update(variant.overrides)
    return recipe


# --------------------------------------------------------------------------------------------- config


def merge_config(base: dict[str, Any], update: dict[str, Any], *, source: str) -> dict[str, Any]:
    """``base`` with ``update``'s fields; the nested ``sft`` / ``train`` / ``roma`` / ``model_spec`` are merged
    key by key. An unknown field raises ``ValueError`` naming it and the accepted ones."""
    names = [f.name for f in fields(DemoConfig)]
    unknown = sorted(set(update) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown demo setting(s) {unknown}; accepted: {names}")
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if key in ("sft", "train", "roma", "model_spec"):
            if not isinstance(value, dict):
                raise TypeError(f"{source}: {key} must be a mapping, got {type(value).__name__}")
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_config(*, quick: bool = False, config_file: str | Path | None = None,
                 overrides: dict[str, Any] | None = None) -> DemoConfig:
    """Defaults, then :data:`QUICK` (``quick``), then the YAML file, then ``overrides`` (the CLI flags);
    every stage's settings are then resolved at once (:func:`check_stage_configs`). A key repeated in the
    YAML file is an error."""
    from roma.preflight import load_yaml_mapping

    values = asdict(DemoConfig())
    if quick:
        values = merge_config(values, QUICK, source="--quick")
    if config_file is not None:
        loaded = load_yaml_mapping(config_file)
        values = merge_config(values, loaded, source=str(config_file))
    if overrides:
        values = merge_config(values, overrides, source="command line")
    config = DemoConfig(**values)
    check_stage_configs(config)
    return config


def sft_settings(config: DemoConfig, root: Path) -> dict[str, Any]:
    """The keyword arguments of :class:`roma.sft.SFTRunConfig` for the warm-up."""
    return {**config.sft, "model_dir": str(root / "model"), "output_dir": str(root / "sft"),
            "seed": config.base_seed, "families": list(config.families), "image_size": config.image_size,
            "num_threads": config.num_threads}


def train_recipe(config: DemoConfig, variant: Variant, seed: int, *, base_model: Path, out_dir: Path) -> dict[str, Any]:
    """The full ``roma train`` recipe of one (variant, seed) run, as written to ``<out_dir>/recipe.yaml``.

    No checkpoint is saved: ``roma train`` writes the final model and ``trainer_state.json`` (the per-step
    logs the report plots) into the run folder.
    """
    recipe = variant_recipe(config, variant)
    max_steps = recipe.get("max_steps")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"the demo trains a fixed number of steps: train.max_steps must be an int >= 1, got {max_steps!r}")
    recipe.update(
        model_name_or_path=str(base_model), output_dir=str(out_dir), seed=seed, view_seed=seed,
        synthetic_families=list(config.families), synthetic_image_size=config.image_size, build_tiny_model=False,
        save_strategy="no",
    )
    return recipe


def check_stage_configs(config: DemoConfig) -> None:
    """Resolve every stage's settings against the real configuration classes now, not when the stage
    runs: the model spec (TinyQwen3VLSpec), the SFT settings (SFTRunConfig) and the RL recipe of every
    trained variant (parsed as ``roma train --config`` parses it, with its dataset, reward and budget checks;
    the ``roma`` block too when no ``roma*`` variant is chosen). ``ValueError`` naming the block or the
    variant and the bad key or value."""
    from roma.models import TinyQwen3VLSpec
    from roma.sft import SFTRunConfig
    from roma.train.cli import check_budget, check_data_args, parse_recipe, reward_functions

    root = Path(config.out)
    for block, build in (("model_spec", lambda: TinyQwen3VLSpec(**config.model_spec)),
                         ("sft", lambda: SFTRunConfig(**sft_settings(config, root)))):
        try:
            build()
        except (TypeError, ValueError) as error:
            raise ValueError(f"{block}: {error}") from error
    checks = [(v, f"variant {v.label!r}") for v in map(parse_variant, config.variants) if v.trained]
    if not any(VARIANTS[v.name].uses_roma for v, _ in checks):  # the roma block, even when no variant reads it
        checks.append((parse_variant("roma"), "the roma block"))
    for variant, where in checks:
        recipe = train_recipe(config, variant, 0, base_model=root / "sft" / "model",
                              out_dir=root / "train" / variant.slug / "seed0")
        try:
            training_args, _, data_args = parse_recipe(recipe)
            check_data_args(data_args)
            check_budget(training_args)
            reward_functions(data_args.reward_funcs)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error



@dataclass(frozen=True)
class Outputs:
    """File and folder names of a demo's evaluations and report; suffixed by the split unless it is ``test``,
    so a validation sweep can share the output folder (model, SFT and trainings) with the test results."""

    eval_dir: str
    report: str
    summary: str
    config: str
    levels_png: str
    curves_png: str

    @classmethod
    def of(cls, config: DemoConfig) -> Outputs:
        suffix = "" if config.eval_split == "test" else f"-{config.eval_split}"
        return cls(f"eval{suffix}", f"report{suffix}.md", f"demo-summary{suffix}.json", f"demo-config{suffix}.yaml",
                   f"accuracy-vs-level{suffix}.png", f"training-curves{suffix}.png")

