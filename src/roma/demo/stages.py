"""``roma demo``'s stages: the cache that skips a stage already done with the same configuration, and
the stage bodies (build the model, SFT warm-up, RL training, evaluation)."""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from roma.demo.config import SETTINGS, DemoConfig, Variant, variant_recipe


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


def build_model(config: DemoConfig, out_dir: Path) -> None:
    from roma.models import TinyQwen3VLSpec, build_tiny_qwen3vl

    _set_threads(config.num_threads)
    build_tiny_qwen3vl(out_dir, seed=config.base_seed, spec=TinyQwen3VLSpec(**config.model_spec))


def sft_settings(config: DemoConfig, root: Path) -> dict[str, Any]:
    """The keyword arguments of :class:`roma.sft.SFTRunConfig` for the warm-up."""
    return {**config.sft, "model_dir": str(root / "model"), "output_dir": str(root / "sft"),
            "seed": config.base_seed, "families": list(config.families), "image_size": config.image_size,
            "num_threads": config.num_threads}


def run_sft_stage(settings: dict[str, Any]) -> None:
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


def run_train(recipe: dict[str, Any], out_dir: Path, num_threads: int) -> None:
    import yaml

    from roma.train.cli import parse_args, run

    _set_threads(num_threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe_file = out_dir / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    run(*parse_args(["--config", str(recipe_file)]))
    gc.collect()


def check_recipes(config: DemoConfig) -> None:
    """Resolve the SFT settings and every trained variant's ``roma train`` recipe against the real config
    classes (:class:`roma.sft.SFTRunConfig`; ``RomaConfig`` / ``ModelConfig`` / ``DataArguments`` through
    :func:`roma.train.cli.parse_args`, as the training stage does), without building or loading anything.

    The ``roma`` block is resolved even when no ``roma*`` variant is chosen. Raises ``ValueError`` naming the
    block or the variant and the bad key (``roma: {lamda_kl: 0.3}``, ``roma:roma_veiws=2``) — in the first
    second, not after the SFT stage.
    """
    import tempfile

    import yaml

    from roma.demo.config import VARIANTS, parse_variant
    from roma.preflight import check_writable_dir
    from roma.sft import SFTRunConfig
    from roma.train.cli import check_budget, check_data_args, parse_args

    check_writable_dir(config.out, what="output folder")
    root = Path(config.out)
    settings = sft_settings(config, root)
    accepted = [f.name for f in fields(SFTRunConfig)]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ValueError(f"sft: unknown setting(s) {unknown}; accepted: {accepted}")
    try:
        SFTRunConfig(**settings)
    except (TypeError, ValueError) as error:
        raise ValueError(f"sft: {error}") from None
    checks = [(parse_variant(v), f"variant {v!r}") for v in config.variants]
    checks = [(variant, label) for variant, label in checks if variant.trained]
    if not any(VARIANTS[variant.name].uses_roma for variant, _ in checks):
        checks.append((parse_variant("roma"), "the roma block"))
    with tempfile.TemporaryDirectory(prefix="roma-demo-check-") as tmp:
        for variant, label in checks:
            recipe = train_recipe(config, variant, 0, base_model=root / "sft" / "model",
                                  out_dir=root / "train" / variant.slug / "seed0")
            recipe_file = Path(tmp) / "recipe.yaml"
            recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
            try:
                training_args, _, data_args = parse_args(["--config", str(recipe_file)])
                check_data_args(data_args)
                check_budget(training_args)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{label}: {' '.join(str(error).split())}") from None


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


class EvalData:
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


def run_eval(config: DemoConfig, data: EvalData, model_dir: Path, out_dir: Path, label: str) -> None:
    from roma.eval import evaluate

    _set_threads(config.num_threads)
    evaluate(
        str(model_dir), [(eval_dataset_name(config), data.get())], settings=SETTINGS, levels=config.eval_levels,
        batch_size=config.eval_batch_size, out_dir=out_dir, seed=config.eval_seed,
        max_new_tokens=config.eval_max_new_tokens, backend="hf", model_name=label,
    )
    gc.collect()
