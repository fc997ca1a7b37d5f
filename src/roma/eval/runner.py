"""``evaluate``: clean / seen / unseen evaluation of one model on several datasets, resumable.

For each dataset, every example is scored under every condition of :func:`roma.eval.protocol.conditions`
(clean, and each seen / unseen degradation type at each level). Work runs in batches of
``batch_size`` (example × condition) items; each batch's records are appended to
``<out_dir>/records.jsonl`` before the next one starts, and a rerun with the same ``out_dir`` reuses
every record already there that the same run identity wrote for an unchanged row (records are stamped
with both, :mod:`roma.eval.runlock`); a record of a changed row is generated again. A run holds an
exclusive lock on ``out_dir``: a second run into it fails at once. The degraded image of an item
depends only on ``(seed, example id, type, level)``, never on the model, the batch or the order, so
different models are compared on identical pixels.

Outputs in ``out_dir``: ``run.json`` (the resolved configuration), ``records.jsonl``,
``summary.json`` (:func:`roma.eval.protocol.aggregate` plus bookkeeping) and, with ``report=True``,
``report.md`` and PNG plots (:mod:`roma.eval.report`).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import datasets as hf_datasets
from PIL import Image
from tqdm.auto import tqdm

from roma.data.benchmarks import parse_data_arg, read_benchmark, resolve_benchmark
from roma.data.images import ImageError, check_image_fit, prepare_row_images, undecoded_column
from roma.data.schema import unique_ids
from roma.eval import official
from roma.eval.generation import Backend, Completion, Generator, build_generator, training_length
from roma.eval.judge import RuleJudge, Verdict
from roma.eval.protocol import (
    MAIN_LEVEL,
    SETTINGS,
    Condition,
    aggregate,
    conditions,
    main_level_of,
    make_view,
)
from roma.eval.records import append_records, read_records, record_key, write_records
from roma.eval.robustness import robustness_summary
from roma.eval.runlock import identity_digest, locked_out_dir, model_fingerprint, row_digest
from roma.preflight import check_model_folder, check_writable_dir
from roma.provenance import provenance

SYNTHETIC = "synthetic"
SYNTHETIC_DEFAULT_N = 500
"""Examples of the synthetic test split when no ``limit`` is given (about ±2 points of standard error)."""

RESUME_KEYS: tuple[str, ...] = ("model", "model_hash", "seed", "max_new_tokens", "judge")
"""The run's identity: what must match for a run to resume into an existing ``records.jsonl``. Its digest
is stamped on every record (``run``); ``model_hash`` is :func:`roma.eval.runlock.model_fingerprint` of a
model folder (``None`` for a model given in memory or a bare generator)."""


@dataclass
class EvalData:
    """One dataset of a run, in roma's schema, with the rows the loader skipped and where it came from."""

    name: str
    dataset: hf_datasets.Dataset
    skipped: list[dict[str, str]]
    """``{"id", "reason"}`` of every source row that was not loaded."""
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per example id, what the benchmark's official metric needs (:mod:`roma.eval.official`)."""
    source: dict[str, Any] = field(default_factory=dict)
    """``{"origin", "split", "rows", "loaded"}`` for a benchmark; empty for in-memory data."""


def load_eval_data(
    spec: str | tuple[str, hf_datasets.Dataset], *, limit: int | None, split: str | None = None
) -> EvalData:
    """``"synthetic"`` (its test split), ``"NAME=PATH"``, a benchmark name / hub id / local path, or
    ``(name, Dataset)``; ``split`` picks a benchmark's split (default: the registry's)."""
    if isinstance(spec, tuple):
        name, dataset = spec
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        return EvalData(name, dataset, [])
    if spec == SYNTHETIC:
        from roma.data.synthetic import load_split

        return EvalData(SYNTHETIC, load_split("test", SYNTHETIC_DEFAULT_N if limit is None else limit), [])
    benchmark, source = parse_data_arg(spec)
    loaded = read_benchmark(source, split=split, limit=limit, benchmark=benchmark)
    skipped = [{"id": s.id, "reason": s.reason} for s in loaded.skipped]
    if skipped:
        shown = "; ".join(f"{s['id']} ({s['reason']})" for s in skipped[:10])
        print(f"roma eval: {loaded.spec.name}: skipped {len(skipped)} of {loaded.n_rows} row(s): {shown}"
              f"{' ...' if len(skipped) > 10 else ''}", file=sys.stderr)
    info = {"origin": loaded.origin, "split": loaded.split, "rows": loaded.n_rows, "loaded": len(loaded.dataset)}
    return EvalData(loaded.spec.name, loaded.dataset, skipped, loaded.meta, info)


class View(NamedTuple):
    """One work item ready for generation: the example, its condition, the sampled parameters (one dict per
    image), the images of the prompt (RGB, in prompt order)."""

    example: dict[str, Any]
    condition: Condition
    params: list[dict[str, Any]]
    images: list[Image.Image]


class _Examples:
    """A dataset's examples, each row's images prepared once (work is example-major) and broken rows skipped.

    Ids are made unique first (a repeated id gets ``#2``, ``#3``, …: records and seeds are keyed by it).
    Images go through :func:`roma.data.images.prepare_row_images` (decoded, upright, RGB, capped at the
    processor's ``max_pixels``; padded with ``image_fit="pad"``). Skips are appended to ``skipped``
    (``{"id", "reason"}``): a row without an image, with an image that cannot be decoded or converted, that
    the processor would refuse, or whose prompt has another number of image placeholders skips the example;
    a degradation that fails on an image skips that one view.
    """

    def __init__(
        self, dataset: hf_datasets.Dataset, skipped: list[dict[str, str]], image_processor: Any = None,
        image_fit: str = "reject",
    ) -> None:
        self.dataset, self.skipped = dataset, skipped
        for column in ("image", "images"):
            if column in dataset.column_names:
                self.dataset = undecoded_column(self.dataset, column)
        self.ids: list[str] = unique_ids([str(i) for i in self.dataset["id"]])
        self.image_processor, self.image_fit = image_processor, image_fit
        self._cached: tuple[int, dict[str, Any], list[Image.Image]] | None = None
        self._broken: set[int] = set()

    def digests(self) -> list[str]:
        """:func:`~roma.eval.runlock.row_digest` of every example, in order (images as stored, not decoded)."""
        return [row_digest(self.dataset[index]) for index in range(len(self.ids))]

    def _load(self, index: int) -> tuple[dict[str, Any], list[Image.Image]] | None:
        if index in self._broken:
            return None
        if self._cached is None or self._cached[0] != index:
            example = {**self.dataset[index], "id": self.ids[index]}
            try:
                images = prepare_row_images(example, self.image_processor, image_fit=self.image_fit)
                placeholders = _image_placeholders(example["prompt"])
                if placeholders != len(images):
                    raise ImageError(f"the prompt has {placeholders} image placeholder(s) for {len(images)} image(s)")
            except ImageError as error:
                self._broken.add(index)
                self.skipped.append({"id": example["id"], "reason": str(error)})
                return None
            self._cached = (index, example, images)
        return self._cached[1], self._cached[2]

    def view(self, index: int, condition: Condition, *, seed: int) -> View | None:
        loaded = self._load(index)
        if loaded is None:
            return None
        example, images = loaded
        try:
            made = [make_view(image, condition, seed=seed, example_id=example["id"], image_index=j)
                    for j, image in enumerate(images)]
        except (ValueError, TypeError) as error:
            self.skipped.append({"id": example["id"], "reason": f"{condition.type} L{condition.level}: {error}"})
            return None
        return View(example, condition, [params for _, params in made], [pixels for pixels, _ in made])


def _max_images(dataset: hf_datasets.Dataset) -> int:
    """The most images a row of ``dataset`` holds (1 for an ``image`` column), from the Arrow list lengths."""
    if "images" not in dataset.column_names:
        return 1
    import pyarrow.compute as pc

    longest = pc.max(pc.list_value_length(dataset.data.column("images"))).as_py()
    return max(1, int(longest or 1))


def _image_placeholders(prompt: Any) -> int:
    """The number of ``{"type": "image"}`` parts of a conversational prompt."""
    return sum(
        1 for message in prompt if isinstance(message.get("content"), list)
        for part in message["content"] if isinstance(part, dict) and part.get("type") == "image"
    )


def _record(name: str, view: View, completion: Completion, verdict: Verdict) -> dict[str, Any]:
    example, condition = view.example, view.condition
    completion, finish_reason = completion
    record = {
        "benchmark": name, "id": example["id"], "task": example["task"], "setting": condition.setting,
        "type": condition.type, "level": condition.level, "n_images": len(view.images),
        "params": view.params[0] if len(view.params) == 1 else view.params, "answer": example["answer"],
        "answer_type": example["answer_type"], "completion": completion, "extracted": verdict.extracted,
        "correct": bool(verdict.correct), "judge": verdict.judge,
        # "length": generation hit max_new_tokens (a cut chain of thought); None: the generator did not say.
        "finish_reason": finish_reason, "truncated": finish_reason == "length",
    }
    if verdict.error is not None:
        record["judge_error"] = verdict.error
    return record


def _check_resume(out_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to append to records made with a different model (path or weights), seed, generation length or
    judge. A ``run.json`` written before a key existed is not compared on it (its unstamped records are
    generated again anyway)."""
    run_file = out_dir / "run.json"
    if run_file.exists():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        changed = {k: (previous[k], config[k]) for k in RESUME_KEYS if k in previous and previous[k] != config[k]}
        if changed and (out_dir / "records.jsonl").exists():
            raise ValueError(
                f"{out_dir} holds records of a different run ({changed} as (before, now)); resuming would mix "
                "them: use another --out or delete the folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def evaluate(
    model_or_path: str | Path | tuple[Any, Any] | None,
    datasets: Sequence[str | tuple[str, hf_datasets.Dataset]],
    *,
    splits: Sequence[str | None] | None = None,
    settings: Sequence[str] = SETTINGS,
    levels: Sequence[int] = (MAIN_LEVEL,),
    limit: int | None = None,
    batch_size: int = 8,
    out_dir: str | Path | None = None,
    seed: int = 0,
    max_new_tokens: int | None = None,
    judge: Any = None,
    generator: Generator | None = None,
    backend: Backend = "auto",
    model_name: str | None = None,
    progress: bool = True,
    report: bool = True,
    image_fit: str = "reject",
    engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a model under the clean / seen / unseen protocol and return the summary.

    Args:
        model_or_path: a model folder, a loaded ``(model, processor)`` pair, or ``None`` with ``generator``.
        datasets: dataset names (``"synthetic"``, a benchmark name / hub id / local path,
            ``"NAME=PATH"`` naming the benchmark a path holds) or ``(name, Dataset)`` pairs already in
            roma's schema.
        splits: the source split of each dataset (one value for all, or one per dataset; ``None``: each
            benchmark's default split).
        settings: subset of ``("clean", "seen", "unseen")``.
        levels: degradation levels (subset of 1, 2, 3); the paper's main results use 3.
        limit: first ``limit`` (>= 1) examples of each dataset (synthetic: its size, default 500).
        batch_size: (example × condition) items per ``generate`` call.
        out_dir: where records, summary and report go; ``None`` keeps everything in memory (no resume).
        seed: run seed; with the example id, type and level it fixes every degraded view.
        max_new_tokens: generation length limit; ``None``: the training length of the model folder
            (:func:`~roma.eval.generation.training_length`: its ``roma train`` ``max_completion_length``, else 2048).
        judge: ``judge(completion, example) -> Verdict``; default :class:`~roma.eval.judge.RuleJudge`.
        generator: ``generator(prompts, images) -> completions``; default built from ``model_or_path``.
        backend: ``"auto"`` (vLLM if installed and a GPU is present, else Hugging Face), ``"hf"``, ``"vllm"``.
        model_name: label of the model in reports (default: the folder name).
        progress: show tqdm progress bars.
        report: also write ``report.md`` and the plots (needs ``out_dir``).
        image_fit: an image the model's processor would refuse (Qwen-VL: aspect ratio above 200):
            ``"reject"`` skips and lists its row, ``"pad"`` pads it with white until it is accepted.
        engine: further :func:`~roma.eval.generation.build_generator` arguments (``max_model_len``,
            ``tensor_parallel_size``, ``min_pixels``, ``max_pixels``).

    Returns:
        :func:`~roma.eval.protocol.aggregate`'s summary plus ``config``, ``data`` (per benchmark: where
        it was read from, its split, rows read and loaded), ``skipped`` (``{"id", "reason"}`` per dataset:
        rows the loader could not use, images that could not be degraded), ``official`` (each
        benchmark's official metric, :func:`roma.eval.official.summarize`), ``judge_errors``, ``counts``
        (records generated now / reused from an earlier run / ``regenerated``: dropped because another run
        identity wrote them or their row changed since), ``truncated`` (completions cut at
        ``max_new_tokens``, per dataset) and ``versions``.

    Raises:
        ValueError: before any model is loaded, for a bad argument, a model folder that does not exist, an
            output folder that cannot be written or is in use by another run (:class:`~roma.eval.runlock.
            OutDirLockedError`), a dataset without a usable row, or an ``out_dir`` holding another model's
            records; after generation, when every row was skipped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an int >= 1 (or unset: every row), got {limit!r}; a run of 0 rows "
                         "measures nothing")
    check_image_fit(image_fit)
    if not datasets:
        raise ValueError("give at least one dataset")
    if generator is None and model_or_path is None:
        raise ValueError("give model_or_path or a generator")
    split_list = list(splits) if splits is not None else [None]
    if len(split_list) == 1:
        split_list = split_list * len(datasets)
    if len(split_list) != len(datasets):
        raise ValueError(f"give one split for all datasets or one per dataset: {len(split_list)} splits for "
                         f"{len(datasets)} datasets")
    if generator is None and isinstance(model_or_path, (str, Path)):
        check_model_folder(model_or_path)
    for spec in datasets:
        if isinstance(spec, str) and spec != SYNTHETIC:
            benchmark, source = parse_data_arg(spec)
            resolve_benchmark(source, benchmark)  # neither a benchmark nor a path: fails before any folder is made
    if max_new_tokens is None:
        max_new_tokens = training_length(model_or_path if isinstance(model_or_path, (str, Path)) else None)
    out = check_writable_dir(out_dir) if out_dir is not None else None
    with locked_out_dir(out) if out is not None else contextlib.nullcontext():
        return _evaluate(
            model_or_path, datasets, splits=split_list, settings=settings, levels=levels, limit=limit,
            batch_size=batch_size, out=out, seed=seed, max_new_tokens=max_new_tokens, judge=judge,
            generator=generator, backend=backend, model_name=model_name, progress=progress, report=report,
            image_fit=image_fit, engine=engine,
        )


def _evaluate(
    model_or_path: str | Path | tuple[Any, Any] | None,
    datasets: Sequence[str | tuple[str, hf_datasets.Dataset]],
    *,
    splits: list[str | None],
    settings: Sequence[str],
    levels: Sequence[int],
    limit: int | None,
    batch_size: int,
    out: Path | None,
    seed: int,
    max_new_tokens: int,
    judge: Any,
    generator: Generator | None,
    backend: Backend,
    model_name: str | None,
    progress: bool,
    report: bool,
    image_fit: str,
    engine: dict[str, Any] | None,
) -> dict[str, Any]:
    """:func:`evaluate` once its arguments are checked and its output folder (if any) is locked."""
    judge = RuleJudge() if judge is None else judge
    conds = conditions(settings, levels)
    config = _run_config(model_or_path, datasets, model_name=model_name, splits=splits, settings=settings,
                         levels=levels, limit=limit, batch_size=batch_size, seed=seed,
                         max_new_tokens=max_new_tokens, judge=judge)
    run_id = config["run_id"]
    records_path = out / "records.jsonl" if out is not None else None
    start = time.perf_counter()
    data = [load_eval_data(spec, limit=limit, split=split) for spec, split in zip(datasets, splits)]
    empty = [f"{item.name} ({len(item.skipped)} row(s) skipped)" for item in data if len(item.dataset) == 0]
    if empty:
        raise ValueError(f"nothing to evaluate: no usable row in {', '.join(empty)}")
    if out is not None:
        _check_resume(out, config)
    existing = read_records(records_path) if records_path is not None else []
    if generator is None:
        generator, config["backend"] = build_generator(
            model_or_path, backend=backend, max_new_tokens=max_new_tokens,
            max_images=max(_max_images(item.dataset) for item in data), **(engine or {}),
        )

    # the model's image processor, whose pixel budget caps the images and whose limits decide what is skipped
    image_processor = getattr(getattr(generator, "processor", None), "image_processor", None)
    plan = _plan_work(data, conds, existing, run_id=run_id, image_processor=image_processor, image_fit=image_fit)
    if records_path is not None and (plan.dropped["other_run"] or plan.dropped["changed_row"]):
        write_records(records_path, [r for r in existing if r.get("run") == run_id and record_key(r) not in plan.stale])
    results = list(plan.reused)
    generated = 0
    for item, examples, digests, work in plan.work:
        records = _generate(item, examples, digests, work, n_conditions=len(conds), generator=generator,
                            judge=judge, run_id=run_id, seed=seed, batch_size=batch_size,
                            records_path=records_path, progress=progress)
        results.extend(records)
        generated += len(records)
    if not results:
        reasons = sorted({s["reason"] for v in plan.skipped.values() for s in v})
        raise ValueError(f"nothing was evaluated: every row was skipped ({'; '.join(reasons) or 'no row'})")

    summary = _summarize(results, config, data, plan, generated=generated, seconds=time.perf_counter() - start)
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if report:
            from roma.eval.report import write_report

            write_report(summary, out)
    return summary


def _run_config(
    model_or_path: str | Path | tuple[Any, Any] | None,
    datasets: Sequence[str | tuple[str, hf_datasets.Dataset]],
    *,
    model_name: str | None,
    splits: list[str | None],
    settings: Sequence[str],
    levels: Sequence[int],
    limit: int | None,
    batch_size: int,
    seed: int,
    max_new_tokens: int,
    judge: Any,
) -> dict[str, Any]:
    """The run's configuration as ``summary.json`` records it, with ``run_id``: the digest of its
    :data:`RESUME_KEYS` (model fingerprint included) that every record of this run is stamped with."""
    if model_name is None:
        model_name = Path(str(model_or_path)).name if isinstance(model_or_path, (str, Path)) else "model"
    from_folder = isinstance(model_or_path, (str, Path)) and Path(model_or_path).is_dir()
    config = {
        "model": str(model_or_path) if isinstance(model_or_path, (str, Path)) else model_name,
        "model_hash": model_fingerprint(model_or_path) if from_folder else None,
        "model_name": model_name, "datasets": [d if isinstance(d, str) else d[0] for d in datasets],
        "splits": list(splits), "settings": list(settings), "levels": sorted(set(levels)), "limit": limit, "batch_size": batch_size,
        "seed": seed, "max_new_tokens": max_new_tokens, "judge": getattr(judge, "name", type(judge).__name__),
    }
    config["run_id"] = identity_digest({k: config[k] for k in RESUME_KEYS})
    return config


@dataclass
class _WorkPlan:
    """What a run reuses and what it generates: per benchmark ``(item, examples, row digests, work)``
    where ``work`` lists the ``(row index, condition)`` pairs to generate; ``reused`` the records
    kept; ``stale`` the keys of records whose row changed; ``skipped`` the rows left out, per benchmark."""

    work: list[tuple[EvalData, _Examples, list[str], list[tuple[int, Condition]]]]
    reused: list[dict[str, Any]]
    stale: set[tuple[Any, ...]]
    skipped: dict[str, list[dict[str, str]]]
    dropped: dict[str, int]


def _plan_work(
    data: list[EvalData],
    conds: list[Condition],
    existing: list[dict[str, Any]],
    *,
    run_id: str,
    image_processor: Any,
    image_fit: str,
) -> _WorkPlan:
    """Split every (row, condition) into reused (a record of this run for the same row content) and to
    generate; a record of another run or of a changed row is never reused."""
    done = {record_key(r): r for r in existing if r.get("run") == run_id}
    plan = _WorkPlan(work=[], reused=[], stale=set(), skipped={},
                     dropped={"other_run": len(existing) - len(done), "changed_row": 0})
    for item in data:
        plan.skipped[item.name] = list(item.skipped)
        examples = _Examples(item.dataset, plan.skipped[item.name], image_processor, image_fit)
        digests = examples.digests()
        work: list[tuple[int, Condition]] = []
        for index, example_id in enumerate(examples.ids):
            for condition in conds:
                key = (item.name, example_id, condition.setting, condition.type, condition.level)
                previous = done.get(key)
                if previous is not None and previous.get("row") == digests[index]:
                    plan.reused.append(previous)
                else:
                    if previous is not None:
                        plan.stale.add(key)
                    work.append((index, condition))
        plan.work.append((item, examples, digests, work))
    plan.dropped["changed_row"] = len(plan.stale)
    return plan


def _generate(
    item: EvalData,
    examples: _Examples,
    digests: list[str],
    work: list[tuple[int, Condition]],
    *,
    n_conditions: int,
    generator: Generator,
    judge: Any,
    run_id: str,
    seed: int,
    batch_size: int,
    records_path: Path | None,
    progress: bool,
) -> list[dict[str, Any]]:
    """Generate, judge and append (to ``records_path``) the records of one benchmark's ``work``, in
    batches of ``batch_size`` views."""
    out: list[dict[str, Any]] = []
    total = len(examples.ids) * n_conditions
    with tqdm(total=total, initial=total - len(work), desc=f"eval {item.name}", disable=not progress,
              unit="item") as bar:
        for begin in range(0, len(work), batch_size):
            chunk = work[begin : begin + batch_size]
            views = [(v, digests[i]) for v, i in ((examples.view(i, c, seed=seed), i) for i, c in chunk)
                     if v is not None]
            if views:
                images = [v.images[0] if len(v.images) == 1 else v.images for v, _ in views]
                completions = generator([v.example["prompt"] for v, _ in views], images)
                if len(completions) != len(views):
                    raise RuntimeError(
                        f"the generator returned {len(completions)} completions for {len(views)} prompts"
                    )
                completions = [c if isinstance(c, Completion) else Completion(c, None) for c in completions]
                records = [{**_record(item.name, v, completion, judge(completion.text, v.example)), "run": run_id,
                            "row": digest} for (v, digest), completion in zip(views, completions)]
                if records_path is not None:
                    append_records(records_path, records)
                out.extend(records)
            bar.update(len(chunk))
    return out


def _summarize(
    results: list[dict[str, Any]],
    config: dict[str, Any],
    data: list[EvalData],
    plan: _WorkPlan,
    *,
    generated: int,
    seconds: float,
) -> dict[str, Any]:
    """``summary.json``: accuracy per condition (:func:`aggregate`), robustness and official metrics,
    the run's configuration, what was skipped, judge errors, truncations and record counts."""
    skipped = plan.skipped
    summary = aggregate(results)
    summary["robustness"] = robustness_summary(results)
    judge_errors = [{"benchmark": r["benchmark"], "id": r["id"], "type": r["type"], "level": r["level"],
                     "error": r["judge_error"]} for r in results if "judge_error" in r]
    summary.update(
        config=config,
        data={item.name: item.source for item in data if item.source},
        official=official.summarize(results, {item.name: item.meta for item in data}),
        main_level=main_level_of(config["levels"]),
        skipped=skipped,
        judge_errors=judge_errors,
        truncated={name: sum(1 for r in results if r["benchmark"] == name and r.get("truncated"))
                   for name in skipped},
        counts={"records": len(results), "generated": generated, "reused": len(plan.reused),
                "skipped_examples": {k: len({s["id"] for s in v}) for k, v in skipped.items()},
                "regenerated": plan.dropped},
        seconds=round(seconds, 2),
        **provenance(),
    )
    return summary
