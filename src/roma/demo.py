"""``roma demo``: the whole ROMA experiment at CPU scale, in one command.

::

    roma demo                          # the full demo (about 15 minutes on 2 CPU cores), into runs/demo
    roma demo --quick                  # a smoke run of every stage (under 2 minutes), into runs/demo-quick
    roma demo --seeds 3 --variants base grpo roma roma-mean roma-no-aux roma-no-mask roma-no-inv
    roma demo --config configs/demo/sweep.yaml     # any DemoConfig field from a YAML file

Stages, each cached (see below):

1. ``model``  — build the tiny offline Qwen3-VL with random weights (:func:`roma.models.build_tiny_qwen3vl`);
2. ``sft``    — supervised warm-up on the synthetic suite (:func:`roma.sft.run_sft`): the *base* policy;
3. ``eval/base`` — evaluate the base under the clean / seen / unseen protocol (:func:`roma.eval.evaluate`)
   on the synthetic **test** split (``eval_split``) at Levels 1–3;
4. ``train/<variant>/seed<s>`` then ``eval/<variant>/seed<s>`` — RL from the same base, with the same
   data, budget and seeds for every variant (:func:`roma.train_cli.run`): GRPO, naive augmentation,
   ROMA and its ablations (:data:`VARIANTS`);
5. ``report`` — ``report.md`` (the paper-style table at Level 3: clean / seen / unseen, gaps, deltas
   against GRPO, mean ± std over seeds; per-level and per-type tables; training summaries; stage
   timings), ``demo-summary.json`` and two plots: ``accuracy-vs-level.png`` and ``training-curves.png``
   (reward, success rate and invariance penalty read from each run's ``trainer_state.json``).

**Caching.** Each stage writes ``<out>/stages/<stage>.json`` with its configuration, a fingerprint of it,
its status and its wall time. A rerun skips a stage whose marker says ``done`` with the same fingerprint.
A stage's configuration includes the run id of every stage it reads from, so a changed SFT recipe (say)
reruns the SFT, which reruns every training and evaluation after it. A stage left ``running`` by an
interrupted demo starts again from scratch, except an evaluation, which resumes from its
``records.jsonl``. ``--force`` reruns every stage.

**Settings.** :class:`DemoConfig` holds every setting; its defaults are the full demo. ``--quick``
applies :data:`QUICK` (tiny budgets, Level 3 only), then ``--config FILE`` overrides fields (the nested
``sft`` / ``train`` / ``roma`` mappings are merged key by key), then the command-line flags. Nothing here
is tuned on the test split: the ``eval_split: validation`` setting exists for tuning.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MAIN_LEVEL = 3
EVAL_SPLITS: tuple[str, ...] = ("test", "validation")
SETTINGS: tuple[str, ...] = ("clean", "seen", "unseen")
TRAIN_CURVE_KEYS: tuple[str, ...] = ("reward", "roma/success_rate", "roma/loss_inv")
"""Per-step logs of the RL trainer that the report plots (when a run logged them)."""

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
        metadata={"help": "The RL recipe common to every variant: keys of roma.trainer.RomaConfig, TRL's "
                  "ModelConfig or roma.train_cli.DataArguments (as in configs/tiny-*.yaml). The same budget "
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
        return MAIN_LEVEL if MAIN_LEVEL in self.eval_levels else max(self.eval_levels)


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
    """Defaults, then :data:`QUICK` (``quick``), then the YAML file, then ``overrides`` (the CLI flags)."""
    import yaml

    values = asdict(DemoConfig())
    if quick:
        values = merge_config(values, QUICK, source="--quick")
    if config_file is not None:
        loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of demo settings, got {type(loaded).__name__}")
        values = merge_config(values, loaded, source=str(config_file))
    if overrides:
        values = merge_config(values, overrides, source="command line")
    return DemoConfig(**values)


# ------------------------------------------------------------------------------------------ the stages


def fingerprint(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class StageResult:
    """What a stage left behind: its run id (changes whenever it runs), wall time, and whether it ran now."""

    name: str
    run_id: str
    seconds: float
    ran: bool


class StageCache:
    """Runs the demo's stages, skipping those already done with the same configuration.

    The marker of stage ``name`` is ``<root>/stages/<name with / → -->.json``: ``{"stage", "status"
    ("running" | "done"), "fingerprint", "config", "run_id", "seconds", "started", "finished"}``.
    """

    def __init__(self, root: str | Path, *, force: bool = False, total: int = 0,
                 log: Callable[[str], None] = print) -> None:
        self.root = Path(root)
        self.force = force
        self.total = total
        self.log = log
        self.index = 0
        self.results: list[StageResult] = []

    def marker_path(self, name: str) -> Path:
        return self.root / "stages" / (name.replace("/", "--") + ".json")

    def read_marker(self, name: str) -> dict[str, Any] | None:
        path = self.marker_path(name)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def _write_marker(self, name: str, marker: dict[str, Any]) -> None:
        path = self.marker_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(marker, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)

    def run(self, name: str, config: dict[str, Any], body: Callable[[], Any], *, out_dir: Path | None = None,
            outputs: Sequence[Path] = (), resumable: bool = False) -> StageResult:
        """Run ``body()`` unless stage ``name`` is done with this ``config``; return its :class:`StageResult`.

        ``out_dir`` (if given) is the stage's own folder: deleted before a fresh run. ``outputs`` are files
        the stage must have left: a done stage missing one runs again. A ``resumable`` stage left
        ``running`` with the same configuration keeps its folder (the body resumes from it).
        """
        self.index += 1
        position = f"[{self.index}/{self.total}]" if self.total else f"[{self.index}]"
        digest = fingerprint(config)
        marker = self.read_marker(name)
        same = marker is not None and marker.get("fingerprint") == digest
        missing = [str(p) for p in outputs if not Path(p).exists()]
        if same and marker.get("status") == "done" and not self.force and not missing:
            self.log(f"==> {position} {name}: done earlier ({marker['seconds']:.1f} s), skipped")
            result = StageResult(name, marker["run_id"], float(marker["seconds"]), ran=False)
            self.results.append(result)
            return result
        if marker is None:
            why = "new"
        elif self.force:
            why = "--force"
        elif not same:
            why = "configuration changed"
        elif missing and marker.get("status") == "done":
            why = f"output missing: {missing[0]}"
        else:
            why = "interrupted earlier"
        keep = resumable and same and marker.get("status") == "running" and not self.force
        if out_dir is not None and out_dir.exists() and not keep:
            shutil.rmtree(out_dir)
        self.log(f"==> {position} {name} ({why}{', resuming' if keep else ''})"
                 + (f" -> {out_dir}" if out_dir is not None else ""))
        run_id = uuid.uuid4().hex[:12]
        record = {"stage": name, "status": "running", "fingerprint": digest, "config": config, "run_id": run_id,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._write_marker(name, record)
        start = time.perf_counter()
        body()
        seconds = time.perf_counter() - start
        record.update(status="done", seconds=round(seconds, 2), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self._write_marker(name, record)
        self.log(f"    {name} finished in {seconds:.1f} s")
        result = StageResult(name, run_id, seconds, ran=True)
        self.results.append(result)
        return result


# ----------------------------------------------------------------------------------------- stage bodies


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _build_model(config: DemoConfig, out_dir: Path) -> None:
    from roma.models import TinyQwen3VLSpec, build_tiny_qwen3vl

    _set_threads(config.num_threads)
    build_tiny_qwen3vl(out_dir, seed=config.base_seed, spec=TinyQwen3VLSpec(**config.model_spec))


def sft_settings(config: DemoConfig, root: Path) -> dict[str, Any]:
    """The keyword arguments of :class:`roma.sft.SFTRunConfig` for the warm-up."""
    return {**config.sft, "model_dir": str(root / "model"), "output_dir": str(root / "sft"),
            "seed": config.base_seed, "families": list(config.families), "image_size": config.image_size,
            "num_threads": config.num_threads}


def _run_sft(settings: dict[str, Any]) -> None:
    from roma.sft import SFTRunConfig, run_sft

    run_sft(SFTRunConfig(**settings))


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


def _train(recipe: dict[str, Any], out_dir: Path, num_threads: int) -> None:
    import yaml

    from roma.train_cli import parse_args, run

    _set_threads(num_threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe_file = out_dir / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    run(*parse_args(["--config", str(recipe_file)]))
    gc.collect()


def eval_dataset_name(config: DemoConfig) -> str:
    return "synthetic" if config.eval_split == "test" else f"synthetic-{config.eval_split}"


def eval_settings(config: DemoConfig) -> dict[str, Any]:
    """What an evaluation depends on besides the model."""
    return {"split": config.eval_split, "examples": config.eval_examples, "families": list(config.families),
            "image_size": config.image_size, "levels": list(config.eval_levels), "batch_size": config.eval_batch_size,
            "max_new_tokens": config.eval_max_new_tokens, "seed": config.eval_seed}


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


class _EvalData:
    """The evaluation split, generated once per demo run and only when an evaluation runs."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._dataset = None

    def get(self):
        if self._dataset is None:
            from roma.data.synthetic import load_split

            c = self.config
            self._dataset = load_split(c.eval_split, c.eval_examples, families=c.families, image_size=c.image_size)
        return self._dataset


def _evaluate(config: DemoConfig, data: _EvalData, model_dir: Path, out_dir: Path, label: str) -> None:
    from roma.eval import evaluate

    _set_threads(config.num_threads)
    evaluate(
        str(model_dir), [(eval_dataset_name(config), data.get())], settings=SETTINGS, levels=config.eval_levels,
        batch_size=config.eval_batch_size, out_dir=out_dir, seed=config.eval_seed,
        max_new_tokens=config.eval_max_new_tokens, backend="hf", model_name=label,
    )
    gc.collect()


# ---------------------------------------------------------------------------------------------- results


def read_eval(eval_dir: Path, level: int) -> dict[str, Any]:
    """Headline numbers of one evaluation (accuracies as fractions): clean, seen / unseen per level, gaps at
    ``level``, per-type accuracy at ``level``, and the standard errors of clean / seen / unseen at ``level``."""
    from roma.degrade import SEEN, UNSEEN

    summary = json.loads((eval_dir / "summary.json").read_text(encoding="utf-8"))
    avg = summary["average"]
    pools = {"seen": SEEN, "unseen": UNSEEN}
    lv = avg["levels"].get(str(level), {})
    out: dict[str, Any] = {
        "clean": avg["clean"]["acc"],
        "seen": {k: v["seen"]["acc"] for k, v in avg["levels"].items() if "seen" in v},
        "unseen": {k: v["unseen"]["acc"] for k, v in avg["levels"].items() if "unseen" in v},
        "gap_seen": lv["gap_seen"]["value"],
        "gap_unseen": lv["gap_unseen"]["value"],
        "se": {"clean": avg["clean"]["se"], "seen": lv["seen"]["se"], "unseen": lv["unseen"]["se"]},
        "types": {setting: {name: avg["types"][setting][name][str(level)]["acc"] for name in pools[setting]
                            if str(level) in avg["types"][setting].get(name, {})} for setting in ("seen", "unseen")},
        "examples": sum(b["n_examples"] for b in summary["benchmarks"].values()),
        "eval_seconds": summary.get("seconds"),
    }
    return out


def trainer_log_history(train_dir: Path) -> list[dict[str, Any]]:
    """The per-step logs of an RL run: ``trainer_state.json`` in the run folder, else in its newest checkpoint."""
    candidates = [train_dir / "trainer_state.json"]
    checkpoints = sorted(train_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    candidates += [p / "trainer_state.json" for p in reversed(checkpoints)]
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))["log_history"]
    raise FileNotFoundError(f"no trainer_state.json in {train_dir} or its checkpoint-* folders")


def training_curves(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` for the keys of :data:`TRAIN_CURVE_KEYS` a run logged."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for key in TRAIN_CURVE_KEYS:
        points = [(int(r["step"]), float(r[key])) for r in history if key in r and r[key] is not None]
        if points:
            curves[key] = points
    return curves


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "n"}``; ``std`` is the sample standard deviation (ddof 1), ``None`` for one value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


HEADLINE_KEYS: tuple[str, ...] = ("clean", "seen", "unseen", "gap_seen", "gap_unseen")


def headline(run: dict[str, Any], level: int) -> dict[str, float]:
    """Clean / seen / unseen / gaps at ``level`` of one :func:`read_eval` result."""
    return {"clean": run["clean"], "seen": run["seen"][str(level)], "unseen": run["unseen"][str(level)],
            "gap_seen": run["gap_seen"], "gap_unseen": run["gap_unseen"]}


def aggregate_runs(runs: dict[str, dict[int | None, dict[str, Any]]], level: int) -> dict[str, Any]:
    """Mean ± std over seeds per variant, and the deltas against :data:`REFERENCE` (GRPO).

    ``runs[label][seed]`` is a :func:`read_eval` result (seed ``None`` for the base). A delta pairs the runs
    of the same seed; a variant without seeds (the base) is paired with every seed of the reference.
    """
    table: dict[str, Any] = {}
    reference = runs.get(REFERENCE)
    for label, per_seed in runs.items():
        heads = {seed: headline(run, level) for seed, run in per_seed.items()}
        entry: dict[str, Any] = {key: mean_std([h[key] for h in heads.values()]) for key in HEADLINE_KEYS}
        entry["se"] = {k: mean_std([run["se"][k] for run in per_seed.values()])["mean"] for k in ("clean", "seen", "unseen")}
        entry["levels"] = {
            setting: {lv: mean_std([run[setting][lv] for run in per_seed.values()])
                      for lv in next(iter(per_seed.values()))[setting]}
            for setting in ("seen", "unseen")
        }
        entry["types"] = {
            setting: {name: mean_std([run["types"][setting][name] for run in per_seed.values()])
                      for name in next(iter(per_seed.values()))["types"][setting]}
            for setting in ("seen", "unseen")
        }
        if reference is not None and label != REFERENCE:
            ref = {seed: headline(run, level) for seed, run in reference.items()}
            pairs = [(heads[s], ref[s]) for s in heads if s in ref] or [(h, r) for h in heads.values() for r in ref.values()]
            entry["delta_vs_grpo"] = {key: mean_std([h[key] - r[key] for h, r in pairs])
                                      for key in ("clean", "seen", "unseen")}
        table[label] = entry
    return table


def _fmt(stat: dict[str, Any] | None, *, se: float | None = None, signed: bool = False) -> str:
    """``{"mean": 0.612, "std": 0.013}`` → ``61.2 ± 1.3`` (percent); ``se`` stands in when there is no std."""
    if stat is None:
        return "–"
    value = 100 * stat["mean"]
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    spread = stat.get("std")
    if spread is not None:
        return f"{text} ± {100 * spread:.1f}"
    if se is not None:
        return f"{text} ± {100 * se:.1f}*"
    return text


def main_table(table: dict[str, Any], level: int) -> list[str]:
    """The paper-style markdown table at ``level``: one row per variant."""
    has_delta = any("delta_vs_grpo" in e for e in table.values())
    header = ["Model", "runs", "Clean", f"Seen L{level}", f"Unseen L{level}", "Clean−Seen", "Clean−Unseen"]
    if has_delta:
        header += ["Δ Clean vs GRPO", "Δ Seen vs GRPO", "Δ Unseen vs GRPO"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for label, e in table.items():
        row = [label, str(e["clean"]["n"]), _fmt(e["clean"], se=e["se"]["clean"]),
               _fmt(e["seen"], se=e["se"]["seen"]), _fmt(e["unseen"], se=e["se"]["unseen"]),
               _fmt(e["gap_seen"]), _fmt(e["gap_unseen"])]
        if has_delta:
            delta = e.get("delta_vs_grpo")
            row += [_fmt(delta[k], signed=True) if delta else "–" for k in ("clean", "seen", "unseen")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def criterion(table: dict[str, Any]) -> dict[str, Any] | None:
    """ROMA − GRPO at the main level against the demo's target: ≥ +2 points seen and unseen, clean not more
    than 1 point below GRPO. ``None`` without both variants."""
    roma = table.get("roma", {}).get("delta_vs_grpo")
    if roma is None:
        return None
    seen, unseen, clean = (100 * roma[k]["mean"] for k in ("seen", "unseen", "clean"))
    return {"delta_seen": seen, "delta_unseen": unseen, "delta_clean": clean,
            "met": seen >= 2.0 and unseen >= 2.0 and clean >= -1.0}


def _stage_table(stages: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| stage | seconds | this run |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['seconds']:.1f} | {'ran' if s['ran'] else 'cached'} |" for s in stages]
    kinds: dict[str, float] = {}
    for s in stages:
        kind = s["name"].split("/")[0]
        kinds[kind] = kinds.get(kind, 0.0) + s["seconds"]
    lines += ["", "Total per kind of stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in kinds.items())
              + f"; all {sum(kinds.values()):.0f} s."]
    return lines


def render_report(summary: dict[str, Any]) -> str:
    """``report.md`` of a demo run from its ``demo-summary.json`` content."""
    config, table, level = summary["config"], summary["table"], summary["main_level"]
    train = config["train"]
    lines = [
        "# roma demo — base vs GRPO vs ROMA at CPU scale",
        "",
        f"Tiny Qwen3-VL (random weights, seed {config['base_seed']}) → SFT warm-up → RL from that base: "
        f"{train.get('max_steps')} RL steps of {train.get('per_device_train_batch_size')} completions "
        f"({train.get('num_generations')} per prompt), same data and seeds for every variant; "
        f"{config['seeds']} seed(s). Evaluated on {summary['eval']['examples']} examples of the synthetic "
        f"**{config['eval_split']}** split, clean and under the 4 seen and 5 unseen degradation types at "
        f"level(s) {', '.join(map(str, config['eval_levels']))}.",
        "",
        f"## Main results (Level {level})",
        "",
        *main_table(table, level),
        "",
        "Accuracy in %. Seen / Unseen: macro-average over the pool's types; Clean−Seen / Clean−Unseen: the "
        "clean→degraded gap; Δ vs GRPO: paired by seed. ± is the standard deviation over seeds; with a single "
        "run (*) it is one standard error of the evaluation instead.",
        "",
    ]
    check = summary.get("criterion")
    if check is not None:
        lines += [f"ROMA − GRPO at Level {level}: seen {check['delta_seen']:+.1f}, unseen {check['delta_unseen']:+.1f}, "
                  f"clean {check['delta_clean']:+.1f} points — the demo's target (≥ +2 on seen and unseen, clean "
                  f"no more than 1 point below GRPO) is **{'met' if check['met'] else 'not met'}**.", ""]
    lines += ["Paper (Qwen3-VL-8B, average of 7 benchmarks, Level 3): base 66.8 clean; GRPO 68.9 / 59.2 / 54.0 and "
              "ROMA 68.7 / 61.6 / 56.3 (clean / seen / unseen). Compare shapes, not numbers.", ""]

    files = summary["files"]
    lines += ["## Accuracy by level", "", f"![accuracy against level]({files['levels_png']})", ""]
    levels = [str(lv) for lv in config["eval_levels"]]
    header = ["Model", "Clean"] + [f"Seen L{lv}" for lv in levels] + [f"Unseen L{lv}" for lv in levels]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for label, e in table.items():
        row = [label, _fmt({"mean": e["clean"]["mean"]})]
        row += [_fmt({"mean": e["levels"][s][lv]["mean"]}) for s in ("seen", "unseen") for lv in levels]
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", f"## Per type (Level {level})", "", "Mean over seeds; (S) seen pool, (U) unseen pool.", ""]
    first = next(iter(table.values()))["types"]
    types = [("seen", t) for t in first["seen"]] + [("unseen", t) for t in first["unseen"]]
    header = ["Model"] + [f"{t} ({s[0].upper()})" for s, t in types]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for label, e in table.items():
        lines.append("| " + " | ".join([label] + [_fmt({"mean": e["types"][s][t]["mean"]}) for s, t in types]) + " |")

    lines += ["", "## Training", "", f"![training curves]({files['curves_png']})", ""]
    lines += ["| Run | steps | reward (first → last 5 steps) | success rate (first → last 5) | L_inv (mean) |",
              "|---|---|---|---|---|"]
    for run in summary["training"]:
        curves = run["curves"]

        def ends(key: str, curves: dict = curves) -> str:
            points = [v for _, v in curves.get(key, [])]
            if not points:
                return "–"
            head, tail = points[:5], points[-5:]
            return f"{sum(head) / len(head):.3f} → {sum(tail) / len(tail):.3f}"

        inv = [v for _, v in curves.get("roma/loss_inv", [])]
        inv_text = f"{sum(inv) / len(inv):.2e}" if inv else "–"
        steps = max((s for points in curves.values() for s, _ in points), default=0)
        lines.append(f"| {run['label']} seed {run['seed']} | {steps} | {ends('reward')} | "
                     f"{ends('roma/success_rate')} | {inv_text} |")
    sft = summary.get("sft")
    if sft:
        accuracy = sft.get("final_val_accuracy")
        lines += ["", f"SFT warm-up: stopped by {sft.get('stop_reason')} after {sft.get('steps')} steps; last "
                  f"validation accuracy {'–' if accuracy is None else f'{100 * accuracy:.1f} %'}."]

    lines += ["", "## Stage timings", "", *_stage_table(summary["stages"]), ""]
    lines += [f"Settings: `{files['config']}`; per-model reports: `{files['eval_dir']}/<model>/report.md`; RL recipes: "
              "`train/<variant>/seed<s>/recipe.yaml` (rerun one with `roma train --config`).", ""]
    return "\n".join(lines)


def _sft_summary(sft_dir: Path) -> dict[str, Any] | None:
    path = sft_dir / "metrics.json"
    if not path.exists():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    validation = metrics.get("validation") or []
    return {"stop_reason": metrics.get("stop_reason"), "steps": metrics.get("steps"),
            "final_val_accuracy": validation[-1]["val_accuracy"] if validation else None,
            "test_accuracy": metrics.get("test_accuracy"), "timings_s": metrics.get("timings_s")}


def write_report(config: DemoConfig, root: Path, evals: dict[str, dict[int | None, Path]],
                 trains: dict[str, dict[int, Path]], stages: Sequence[StageResult]) -> dict[str, Any]:
    """Read every evaluation and training log, write ``demo-summary.json``, ``report.md`` and the plots
    (names per :class:`Outputs`)."""
    from roma.demo_plots import plot_accuracy_vs_level, plot_training_curves

    level, files = config.main_level, Outputs.of(config)
    runs = {label: {seed: read_eval(path, level) for seed, path in per_seed.items()} for label, per_seed in evals.items()}
    table = aggregate_runs(runs, level)
    training = [{"label": label, "seed": seed, "curves": training_curves(trainer_log_history(path))}
                for label, per_seed in trains.items() for seed, path in per_seed.items()]
    summary = {
        "config": asdict(config),
        "main_level": level,
        "eval": {"split": config.eval_split, "examples": config.eval_examples, "levels": config.eval_levels},
        "table": table,
        "criterion": criterion(table),
        "runs": {label: {str(seed): run for seed, run in per_seed.items()} for label, per_seed in runs.items()},
        "training": training,
        "sft": _sft_summary(root / "sft"),
        "stages": [{"name": s.name, "seconds": round(s.seconds, 2), "ran": s.ran} for s in stages],
        "files": asdict(files),
    }
    (root / files.summary).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot_accuracy_vs_level(table, config.eval_levels, root / files.levels_png)
    plot_training_curves(training, root / files.curves_png)
    (root / files.report).write_text(render_report(summary), encoding="utf-8")
    return summary


# ------------------------------------------------------------------------------------------------ run


def count_stages(config: DemoConfig) -> int:
    variants = [parse_variant(v) for v in config.variants]
    trained = sum(v.trained for v in variants)
    return 2 + (len(variants) - trained) + 2 * trained * config.seeds + 1


def run_demo(config: DemoConfig, *, force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every stage of the demo; return the content of ``demo-summary.json``."""
    import yaml

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = Path(config.out)
    root.mkdir(parents=True, exist_ok=True)
    files = Outputs.of(config)
    (root / files.config).write_text(yaml.safe_dump(asdict(config), sort_keys=False), encoding="utf-8")
    cache = StageCache(root, force=force, total=count_stages(config), log=log)
    data = _EvalData(config)
    wall = time.perf_counter()

    model_dir = root / "model"
    model = cache.run("model", {"seed": config.base_seed, "model_spec": config.model_spec},
                      lambda: _build_model(config, model_dir), out_dir=model_dir, outputs=[model_dir / "config.json"])
    sft = sft_settings(config, root)
    base_model = root / "sft" / "model"
    sft_stage = cache.run("sft", {"sft": sft, "model": model.run_id}, lambda: _run_sft(sft), out_dir=root / "sft",
                          outputs=[base_model / "model.safetensors"])

    evaluation = eval_settings(config)
    evals: dict[str, dict[int | None, Path]] = {}
    trains: dict[str, dict[int, Path]] = {}
    upstream: dict[str, str] = {}
    for variant in (parse_variant(v) for v in config.variants):
        if not variant.trained:
            out_dir = root / files.eval_dir / variant.slug
            stage = cache.run(
                f"{files.eval_dir}/{variant.slug}", {"eval": evaluation, "model": sft_stage.run_id, "label": variant.label},
                lambda out_dir=out_dir, variant=variant: _evaluate(config, data, base_model, out_dir, variant.label),
                out_dir=out_dir, outputs=[out_dir / "summary.json"], resumable=True,
            )
            evals[variant.label] = {None: out_dir}
            upstream[stage.name] = stage.run_id
            continue
        for seed in range(config.seeds):
            train_dir = root / "train" / variant.slug / f"seed{seed}"
            recipe = train_recipe(config, variant, seed, base_model=base_model, out_dir=train_dir)
            trained = cache.run(
                f"train/{variant.slug}/seed{seed}", {"recipe": recipe, "base": sft_stage.run_id},
                lambda recipe=recipe, train_dir=train_dir: _train(recipe, train_dir, config.num_threads),
                out_dir=train_dir, outputs=[train_dir / "model.safetensors"],
            )
            eval_dir = root / files.eval_dir / variant.slug / f"seed{seed}"
            evaluated = cache.run(
                f"{files.eval_dir}/{variant.slug}/seed{seed}",
                {"eval": evaluation, "model": trained.run_id, "label": variant.label},
                lambda eval_dir=eval_dir, train_dir=train_dir, variant=variant: _evaluate(
                    config, data, train_dir, eval_dir, variant.label),
                out_dir=eval_dir, outputs=[eval_dir / "summary.json"], resumable=True,
            )
            evals.setdefault(variant.label, {})[seed] = eval_dir
            trains.setdefault(variant.label, {})[seed] = train_dir
            upstream[trained.name] = trained.run_id
            upstream[evaluated.name] = evaluated.run_id

    summary_holder: dict[str, Any] = {}

    def report() -> None:
        summary_holder["summary"] = write_report(config, root, evals, trains, cache.results)

    cache.run(files.report.removesuffix(".md"), {"upstream": upstream, "variants": config.variants, "eval": evaluation},
              report, outputs=[root / files.report, root / files.summary])
    summary = summary_holder.get("summary")
    if summary is None:
        summary = json.loads((root / files.summary).read_text(encoding="utf-8"))
    log(f"\nDemo finished in {time.perf_counter() - wall:.0f} s (stages: "
        f"{sum(r.ran for r in cache.results)} ran, {sum(not r.ran for r in cache.results)} cached).\n")
    log("\n".join(main_table(summary["table"], summary["main_level"])))
    check = summary.get("criterion")
    if check is not None:
        log(f"\nROMA − GRPO at Level {summary['main_level']}: seen {check['delta_seen']:+.1f}, unseen "
            f"{check['delta_unseen']:+.1f}, clean {check['delta_clean']:+.1f} points (target ≥ +2 / ≥ +2 / ≥ −1: "
            f"{'met' if check['met'] else 'not met'}).")
    log(f"\nReport: {root / files.report}")
    return summary


# ------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roma demo",
        description="The whole ROMA experiment at CPU scale: tiny model → SFT → base / GRPO / naive augmentation / "
                    "ROMA → clean / seen / unseen evaluation → report. Stages are cached in the output folder.",
        epilog="Variants: " + "; ".join(f"{k}: {v.help}" for k, v in VARIANTS.items()),
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets everywhere, Level 3 only: a smoke run of every stage (< 2 minutes)")
    parser.add_argument("--config", metavar="FILE", help="YAML file of DemoConfig fields (e.g. configs/demo/matrix.yaml)")
    parser.add_argument("--seeds", type=int, help="RL seeds per variant (default 1)")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT",
                        help="variants, each NAME or NAME:key=value[,key=value] (default: base grpo naive-aug roma)")
    parser.add_argument("--out", help="output folder (default runs/demo; --quick: runs/demo-quick)")
    parser.add_argument("--eval-split", choices=EVAL_SPLITS, help="synthetic split to compare on (default test)")
    parser.add_argument("--eval-examples", type=int, help="examples of the evaluation split (default 200)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    parser.add_argument("--force", action="store_true", help="rerun every stage, cached or not")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {"seeds": args.seeds, "variants": args.variants, "out": args.out, "eval_split": args.eval_split,
             "eval_examples": args.eval_examples, "num_threads": args.threads}
    try:
        config = build_config(quick=args.quick, config_file=args.config,
                              overrides={k: v for k, v in flags.items() if v is not None})
    except (ValueError, TypeError, OSError) as error:
        print(f"roma demo: {error}", file=sys.stderr)
        return 2
    run_demo(config, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
