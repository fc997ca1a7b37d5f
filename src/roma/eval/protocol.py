"""The evaluation protocol of the paper (method.md §9): conditions, degraded views, aggregation.

Conditions
    ``clean`` (the image as is), ``seen`` (each of the seen pool's types: noise, blur, JPEG,
    downscale) and ``unseen`` (each held-out type: motion blur, salt-and-pepper, speckle, posterize,
    pixelate), each degradation at the requested levels; the paper's main results use Level 3, which lies
    outside the training range. A condition is ``(setting, type, level)``; clean is ``("clean", "none", 0)``.
    Any other pool of :data:`roma.degrade.POOLS` (``imagenet-c``, ``geometric``, ``capture``,
    ``document``, ``all``) is a setting too, named after the pool.

Degraded views
    The view of example ``id`` under ``(type, level)`` is drawn from ``derive_seed(seed, id, type, level)``
    only, so every model, batch size and resumed run sees the same pixels (:func:`make_view`).

Aggregation (:func:`aggregate`)
    Per benchmark: clean accuracy; per (type, level) accuracy; the seen (unseen) score at a level is the
    **macro-average over the pool's types**, each type's accuracy first averaged over examples; the gap
    is clean minus the pool score. The headline is the plain average over benchmarks.

    Standard errors: a clean or per-type accuracy has ``std(x, ddof=1) / sqrt(n)`` over its 0/1 outcomes.
    A pool score uses the per-example mean over the pool's types (the same examples are scored under
    every type, so their outcomes are correlated; averaging per example first keeps that correlation in
    the error), and a gap the paired per-example difference ``clean_i - pool_mean_i``. Over benchmarks
    (independent samples) the average's error is ``sqrt(sum se_b^2) / B``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

SETTINGS: tuple[str, ...] = ("clean", "seen", "unseen")
LEVELS: tuple[int, ...] = (1, 2, 3)
CLEAN_TYPE = "none"
MAIN_LEVEL = 3


class Condition(NamedTuple):
    """One evaluation condition: ``("clean", "none", 0)`` or ``("seen" | "unseen", type, level)``."""

    setting: str
    type: str
    level: int


CLEAN = Condition("clean", CLEAN_TYPE, 0)


def pools() -> dict[str, tuple[str, ...]]:
    """Every named pool of :mod:`roma.degrade` (``seen``, ``unseen``, ``imagenet-c``, …, ``all``) and its types."""
    from roma.degrade import POOLS

    return dict(POOLS)


def main_level_of(levels: Sequence[int]) -> int:
    """The level of a run's headline numbers: :data:`MAIN_LEVEL` (the paper's) when evaluated, else the
    highest evaluated one."""
    return MAIN_LEVEL if MAIN_LEVEL in levels else max(levels)


def known_settings() -> tuple[str, ...]:
    """``("clean", *pool names)``: what ``conditions`` accepts as settings."""
    return ("clean", *pools())


def conditions(settings: Sequence[str] = SETTINGS, levels: Sequence[int] = (MAIN_LEVEL,)) -> list[Condition]:
    """The conditions of a run, clean first, then each pool's types (in pool order) at each level."""
    valid = known_settings()
    unknown = [s for s in settings if s not in valid]
    if unknown or not settings:
        raise ValueError(
            f"settings must be a non-empty subset of {list(SETTINGS)} and the other pools "
            f"{[s for s in valid if s not in SETTINGS]}, got {list(settings)}"
        )
    bad = [lv for lv in levels if isinstance(lv, bool) or lv not in LEVELS]
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty subset of {list(LEVELS)}, got {list(levels)}")
    out = [CLEAN] if "clean" in settings else []
    pool = pools()
    for setting in pool:
        if setting in settings:
            out += [Condition(setting, name, int(level)) for level in sorted(set(levels)) for name in pool[setting]]
    return out


def view_seed(seed: int, example_id: str, condition: Condition, image_index: int = 0) -> int:
    """The seed of one degraded view: a stable function of (run seed, example id, type, level), extended by
    ``("image", j)`` for image ``j > 0`` of a prompt with several images."""
    from roma.degrade import derive_seed

    extra = () if image_index == 0 else ("image", image_index)
    return derive_seed(seed, example_id, condition.type, condition.level, *extra)


def make_view(
    image: Image.Image, condition: Condition, *, seed: int, example_id: str, image_index: int = 0
) -> tuple[Image.Image, dict]:
    """``(RGB image of the input's size, logged parameters)`` of ``image`` under ``condition``.

    The parameters are sampled from ``np.random.default_rng(view_seed(...))`` and then applied, so the
    result depends only on the image, the condition, ``seed``, ``example_id`` and ``image_index`` (the
    image's position in its prompt: every image of a prompt gets the condition's type, each its own
    parameters and noise).
    """
    from roma.degrade import apply, sample_params, to_rgb

    if condition.setting == "clean":
        # The same RGB conversion as the degradations apply (alpha over white), so clean and degraded
        # views of an RGBA or palette image show the same picture.
        return Image.fromarray(to_rgb(image)), {}

    rng = np.random.default_rng(view_seed(seed, example_id, condition, image_index))
    params = sample_params(condition.type, condition.level, rng)
    pixels = apply(image, condition.type, params)
    if pixels.shape[:2] != (image.height, image.width):
        raise ValueError(
            f"degradation {condition.type!r} changed the image size from {(image.height, image.width)} to "
            f"{pixels.shape[:2]}; views must keep the pixel size"
        )
    return Image.fromarray(pixels), _jsonable(params)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# ------------------------------------------------------------------------------------------ aggregation


def _stat(values: Sequence[float]) -> dict[str, float | int]:
    """``{"acc", "se", "n"}`` of 0/1 outcomes; ``se = std(ddof=1) / sqrt(n)`` (0 for n < 2)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"acc": float(x.mean()) if n else float("nan"), "se": se, "n": n}


def _mean_stat(stats: Sequence[dict[str, Any]]) -> dict[str, float | int]:
    """Average of independent estimates: mean of ``acc``, ``sqrt(sum se^2) / k`` (``n`` = their count)."""
    k = len(stats)
    acc = float(np.mean([s["acc"] for s in stats]))
    se = float(math.sqrt(sum(s["se"] ** 2 for s in stats)) / k)
    return {"acc": acc, "se": se, "n": k}


def _benchmark_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    clean: dict[str, float] = {}
    by_type: dict[tuple[str, int], dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    tasks: dict[str, str] = {}
    for r in records:
        outcome = 1.0 if r["correct"] else 0.0
        tasks[r["id"]] = r.get("task", "")
        if r["setting"] == "clean":
            clean[r["id"]] = outcome
        else:
            by_type[(r["setting"], int(r["level"]))][r["type"]][r["id"]] = outcome

    settings = dict.fromkeys(["seen", "unseen", *(setting for setting, _ in sorted(by_type))])
    out: dict[str, Any] = {"n_examples": len(tasks), "types": {s: {} for s in settings}, "levels": {}}
    if clean:
        out["clean"] = _stat(list(clean.values()))
    for (setting, level), per_type in sorted(by_type.items()):
        for name, outcomes in per_type.items():
            out["types"][setting].setdefault(name, {})[str(level)] = _stat(list(outcomes.values()))
        type_accs = [float(np.mean(list(o.values()))) for o in per_type.values()]
        common = set.intersection(*(set(o) for o in per_type.values()))
        example_means = {i: float(np.mean([o[i] for o in per_type.values()])) for i in sorted(common)}
        pool = _stat(list(example_means.values()))
        pool.update(acc=float(np.mean(type_accs)), types=len(per_type))
        entry = out["levels"].setdefault(str(level), {})
        entry[setting] = pool
        paired = [clean[i] - m for i, m in example_means.items() if i in clean]
        if clean and paired:
            gap = _stat(paired)
            entry[f"gap_{setting}"] = {"value": out["clean"]["acc"] - pool["acc"], "se": gap["se"], "n": gap["n"]}
    out["tasks"] = _task_summary(records, tasks)
    return out


def _task_summary(records: list[dict[str, Any]], tasks: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per task: accuracy per setting over all its records of that setting (levels pooled), and counts."""
    outcomes: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        outcomes[tasks[r["id"]]][r["setting"]].append(1.0 if r["correct"] else 0.0)
    return {
        task: {"n_examples": sum(1 for t in tasks.values() if t == task),
               **{setting: _stat(values) for setting, values in per_setting.items()}}
        for task, per_setting in sorted(outcomes.items())
    }


def aggregate(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Summary of evaluation records (one per example × condition): per benchmark and averaged.

    Returns ``{"benchmarks": {name: ...}, "average": ...}`` where each benchmark holds ``clean``
    (``acc, se, n``), ``types[setting][type][level]`` (``acc, se, n``), ``levels[level]`` with the
    ``seen`` / ``unseen`` pool scores (``acc, se, n, types``) and the gaps ``gap_seen`` / ``gap_unseen``
    (``value, se, n``), and ``tasks`` (per-task accuracy per setting). ``average`` holds the same
    entries averaged over the benchmarks that have them (``n`` = number of benchmarks) and the per-type
    accuracy averaged over benchmarks. Accuracies are fractions in [0, 1].
    """
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        grouped[r["benchmark"]].append(r)
    benchmarks = {name: _benchmark_summary(rs) for name, rs in grouped.items()}

    settings = list(dict.fromkeys(["seen", "unseen", *(s for b in benchmarks.values() for s in b["types"])]))
    average: dict[str, Any] = {"types": {s: {} for s in settings}, "levels": {}}
    cleans = [b["clean"] for b in benchmarks.values() if "clean" in b]
    if cleans:
        average["clean"] = _mean_stat(cleans)
    levels = sorted({lv for b in benchmarks.values() for lv in b["levels"]}, key=int)
    for level in levels:
        entry: dict[str, Any] = {}
        for setting in settings:
            scores = [b["levels"][level][setting] for b in benchmarks.values() if setting in b["levels"].get(level, {})]
            if scores:
                entry[setting] = _mean_stat(scores)
            gaps = [b["levels"][level][f"gap_{setting}"] for b in benchmarks.values()
                    if f"gap_{setting}" in b["levels"].get(level, {})]
            if gaps:
                stat = _mean_stat([{"acc": g["value"], "se": g["se"]} for g in gaps])
                entry[f"gap_{setting}"] = {"value": stat["acc"], "se": stat["se"], "n": stat["n"]}
        average["levels"][level] = entry
    for setting in settings:
        names = sorted({t for b in benchmarks.values() for t in b["types"].get(setting, {})})
        for name in names:
            per_level: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for b in benchmarks.values():
                for level, stat in b["types"].get(setting, {}).get(name, {}).items():
                    per_level[level].append(stat)
            average["types"][setting][name] = {lv: _mean_stat(s) for lv, s in sorted(per_level.items())}
    return {"benchmarks": dict(sorted(benchmarks.items())), "average": average}
