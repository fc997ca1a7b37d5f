"""``evaluate``: clean / seen / unseen evaluation of one model on several datasets, resumable.

For each dataset, every example is scored under every condition of :func:`roma.eval.protocol.conditions`
(clean, and each seen / unseen degradation type at each level). Work runs in batches of
``batch_size`` (example × condition) items; each batch's records are appended to
``<out_dir>/records.jsonl`` before the next one starts, and a rerun with the same ``out_dir`` skips
every record already there. The degraded image of an item depends only on ``(seed, example id,
type, level)``, never on the model, the batch or the order, so different models are compared on
identical pixels.

Outputs in ``out_dir``: ``run.json`` (the resolved configuration), ``records.jsonl``,
``summary.json`` (:func:`roma.eval.protocol.aggregate` plus bookkeeping) and, with ``report=True``,
``report.md`` and PNG plots (:mod:`roma.eval.report`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from tqdm.auto import tqdm

from roma.data.benchmarks import decode_image, load_benchmark_with_skips, resolve_benchmark
from roma.eval.generation import Backend, Generator, build_generator
from roma.eval.judge import RuleJudge, Verdict
from roma.eval.protocol import MAIN_LEVEL, SETTINGS, Condition, aggregate, conditions, make_view
from roma.eval.records import append_records, read_records, record_key

SYNTHETIC = "synthetic"
SYNTHETIC_DEFAULT_N = 500
"""Examples of the synthetic test split when no ``limit`` is given (about ±2 points of standard error)."""

RESUME_KEYS: tuple[str, ...] = ("model", "seed", "max_new_tokens", "judge")
"""Configuration that must match for a run to resume into an existing ``records.jsonl``."""


@dataclass
class EvalData:
    """One dataset of a run, in roma's schema, with the ids of rows skipped for a broken image."""

    name: str
    dataset: datasets.Dataset
    skipped: list[str]


def load_eval_data(spec: str | tuple[str, datasets.Dataset], *, limit: int | None) -> EvalData:
    """``"synthetic"`` (the synthetic test split), a benchmark name / hub id / local path, or ``(name, Dataset)``."""
    if isinstance(spec, tuple):
        name, dataset = spec
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        return EvalData(name, dataset, [])
    if spec == SYNTHETIC:
        from roma.data.synthetic import load_split

        return EvalData(SYNTHETIC, load_split("test", SYNTHETIC_DEFAULT_N if limit is None else limit), [])
    benchmark, _ = resolve_benchmark(spec)
    dataset, skipped = load_benchmark_with_skips(spec, limit=limit, benchmark=benchmark.name)
    return EvalData(benchmark.name, dataset, skipped)


def _undecoded_images(dataset: datasets.Dataset) -> datasets.Dataset:
    feature = dataset.features.get("image")
    if isinstance(feature, datasets.Image) and feature.decode:
        enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            return dataset.cast_column("image", datasets.Image(decode=False))
        finally:
            if enabled:
                datasets.enable_progress_bars()
    return dataset


def _record(name: str, example: dict[str, Any], condition: Condition, params: dict, completion: str,
            verdict: Verdict) -> dict[str, Any]:
    record = {
        "benchmark": name, "id": example["id"], "task": example["task"], "setting": condition.setting,
        "type": condition.type, "level": condition.level, "params": params, "answer": example["answer"],
        "answer_type": example["answer_type"], "completion": completion, "extracted": verdict.extracted,
        "correct": bool(verdict.correct), "judge": verdict.judge,
    }
    if verdict.error is not None:
        record["judge_error"] = verdict.error
    return record


def _check_resume(out_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to append to records made with a different model, seed, generation length or judge."""
    run_file = out_dir / "run.json"
    if run_file.exists():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        changed = {k: (previous.get(k), config[k]) for k in RESUME_KEYS if previous.get(k) != config[k]}
        if changed and (out_dir / "records.jsonl").exists():
            raise ValueError(
                f"{out_dir} holds records of a different run ({changed} as (before, now)); resuming would mix "
                "them: use another --out or delete the folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _versions() -> dict[str, str]:
    import torch
    import transformers

    import roma

    return {"roma": roma.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "datasets": datasets.__version__}


def evaluate(
    model_or_path: str | Path | tuple[Any, Any] | None,
    datasets_: Sequence[str | tuple[str, datasets.Dataset]],
    *,
    settings: Sequence[str] = SETTINGS,
    levels: Sequence[int] = (MAIN_LEVEL,),
    limit: int | None = None,
    batch_size: int = 8,
    out_dir: str | Path | None = None,
    seed: int = 0,
    max_new_tokens: int = 256,
    judge: Any = None,
    generator: Generator | None = None,
    backend: Backend = "auto",
    model_name: str | None = None,
    progress: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Evaluate a model under the clean / seen / unseen protocol and return the summary.

    Args:
        model_or_path: a model folder, a loaded ``(model, processor)`` pair, or ``None`` with ``generator``.
        datasets_: dataset names (``"synthetic"``, a benchmark name / hub id / local path) or
            ``(name, Dataset)`` pairs already in roma's schema.
        settings: subset of ``("clean", "seen", "unseen")``.
        levels: degradation levels (subset of 1, 2, 3); the paper's main results use 3.
        limit: first ``limit`` examples of each dataset (synthetic: its size, default 500).
        batch_size: (example × condition) items per ``generate`` call.
        out_dir: where records, summary and report go; ``None`` keeps everything in memory (no resume).
        seed: run seed; with the example id, type and level it fixes every degraded view.
        max_new_tokens: generation length limit.
        judge: ``judge(completion, example) -> Verdict``; default :class:`~roma.eval.judge.RuleJudge`.
        generator: ``generator(prompts, images) -> completions``; default built from ``model_or_path``.
        backend: ``"auto"`` (vLLM if installed and a GPU is present, else Hugging Face), ``"hf"``, ``"vllm"``.
        model_name: label of the model in reports (default: the folder name).
        progress: show tqdm progress bars.
        report: also write ``report.md`` and the plots (needs ``out_dir``).

    Returns:
        :func:`~roma.eval.protocol.aggregate`'s summary plus ``config``, ``skipped`` (ids per dataset
        whose image was missing/corrupt or could not be degraded), ``judge_errors``, ``counts``
        (records generated now / reused from an earlier run) and ``versions``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not datasets_:
        raise ValueError("give at least one dataset")
    judge = RuleJudge() if judge is None else judge
    conds = conditions(settings, levels)
    if model_name is None:
        model_name = Path(str(model_or_path)).name if isinstance(model_or_path, (str, Path)) else "model"
    config = {
        "model": str(model_or_path) if isinstance(model_or_path, (str, Path)) else model_name,
        "model_name": model_name, "datasets": [d if isinstance(d, str) else d[0] for d in datasets_],
        "settings": list(settings), "levels": sorted(set(levels)), "limit": limit, "batch_size": batch_size,
        "seed": seed, "max_new_tokens": max_new_tokens, "judge": getattr(judge, "name", type(judge).__name__),
    }
    out = Path(out_dir) if out_dir is not None else None
    records_path = out / "records.jsonl" if out is not None else None
    if out is not None:
        _check_resume(out, config)
    start = time.perf_counter()

    data = [load_eval_data(spec, limit=limit) for spec in datasets_]
    existing = read_records(records_path) if records_path is not None else []
    done = {record_key(r): r for r in existing}
    if generator is None:
        if model_or_path is None:
            raise ValueError("give model_or_path or a generator")
        generator, config["backend"] = build_generator(model_or_path, backend=backend, max_new_tokens=max_new_tokens)

    results: list[dict[str, Any]] = []
    skipped: dict[str, list[dict[str, str]]] = {}
    generated = reused = 0
    for item in data:
        skipped[item.name] = [{"id": i, "reason": "missing or corrupt image"} for i in item.skipped]
        dataset = _undecoded_images(item.dataset)
        work: list[tuple[int, Condition]] = []
        for index, example_id in enumerate(dataset["id"]):
            for condition in conds:
                key = (item.name, example_id, condition.setting, condition.type, condition.level)
                if key in done:
                    results.append(done[key])
                    reused += 1
                else:
                    work.append((index, condition))
        bar = tqdm(total=len(dataset) * len(conds), initial=len(dataset) * len(conds) - len(work),
                   desc=f"eval {item.name}", disable=not progress, unit="item")
        cache: dict[int, tuple[dict[str, Any], Any]] = {}
        broken: set[int] = set()
        for begin in range(0, len(work), batch_size):
            batch, prompts, images, views = [], [], [], []
            for index, condition in work[begin : begin + batch_size]:
                if index in broken:
                    bar.update(1)
                    continue
                if index not in cache:
                    cache.clear()
                    example = dataset[index]
                    decoded = decode_image(example["image"])
                    if decoded is None:
                        broken.add(index)
                        skipped[item.name].append({"id": example["id"], "reason": "missing or corrupt image"})
                        bar.update(1)
                        continue
                    cache[index] = (example, decoded[0])
                example, image = cache[index]
                try:
                    view, params = make_view(image, condition, seed=seed, example_id=example["id"])
                except (ValueError, TypeError) as error:
                    skipped[item.name].append(
                        {"id": example["id"], "reason": f"{condition.type} L{condition.level}: {error}"}
                    )
                    bar.update(1)
                    continue
                batch.append((example, condition, params))
                prompts.append(example["prompt"])
                images.append(view)
            if not batch:
                continue
            completions = generator(prompts, images)
            if len(completions) != len(batch):
                raise RuntimeError(f"the generator returned {len(completions)} completions for {len(batch)} prompts")
            records = [_record(item.name, example, condition, params, completion, judge(completion, example))
                       for (example, condition, params), completion in zip(batch, completions)]
            if records_path is not None:
                append_records(records_path, records)
            results.extend(records)
            generated += len(records)
            bar.update(len(batch))
        bar.close()

    summary = aggregate(results)
    judge_errors = [{"benchmark": r["benchmark"], "id": r["id"], "type": r["type"], "level": r["level"],
                     "error": r["judge_error"]} for r in results if "judge_error" in r]
    summary.update(
        config=config,
        main_level=MAIN_LEVEL if MAIN_LEVEL in config["levels"] else max(config["levels"]),
        skipped=skipped,
        judge_errors=judge_errors,
        counts={"records": len(results), "generated": generated, "reused": reused,
                "skipped_examples": {k: len({s["id"] for s in v}) for k, v in skipped.items()}},
        seconds=round(time.perf_counter() - start, 2),
        versions=_versions(),
    )
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if report:
            from roma.eval.report import write_report

            write_report(summary, out)
    return summary
