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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roma.demo.config import DemoConfig
from roma.eval.protocol import SETTINGS


def fingerprint(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class StageResult:
    """What a stage left behind: its run id (changes whenever it runs), wall time, whether it ran now, and
    what its body returned when it did (``None`` for a stage skipped as done)."""

    name: str
    run_id: str
    seconds: float
    ran: bool
    value: Any = None


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
        """Run ``body()`` unless stage ``name`` is done with this ``config``; return its :class:`StageResult`
        (with the body's return value when it ran).

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
        value = body()
        seconds = time.perf_counter() - start
        record.update(status="done", seconds=round(seconds, 2), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self._write_marker(name, record)
        self.log(f"    {name} finished in {seconds:.1f} s")
        result = StageResult(name, run_id, seconds, ran=True, value=value)
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


def run_sft_stage(settings: dict[str, Any]) -> None:
    from roma.sft import SFTRunConfig, run_sft

    run_sft(SFTRunConfig(**settings))


def run_train(recipe: dict[str, Any], out_dir: Path, num_threads: int) -> None:
    import yaml

    from roma.train.cli import parse_args, run

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
