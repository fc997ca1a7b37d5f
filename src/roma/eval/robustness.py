"""Robustness metrics of the field, as pure functions of evaluation records (one per example × condition).

A *corruption* is a ``(type, level)`` pair. Records of the same example, type and level under two
settings (``seen`` and ``imagenet-c`` both hold ``gaussian_noise``) show the same pixels (the view seed
depends on the type and level only), so each is counted once, the first record read. Accuracies are
fractions in [0, 1]; errors are ``1 − accuracy``.

- **Relative robustness** (:func:`relative_robustness`): degraded accuracy / clean accuracy, per
  corruption and its mean over corruptions (``1 − (A_clean − A_degraded) / A_clean`` of Schiappa et
  al. 2022, "Robustness Analysis of Video-Language Models Due to Distribution Shift"; 1 means no loss).
- **Corruption error** (:func:`corruption_errors`), ImageNet-C (Hendrycks & Dietterich, ICLR 2019,
  §3): per type ``c``, ``CE_c = Σ_s E_{s,c} / Σ_s E^ref_{s,c}`` over the levels ``s`` both runs have,
  ``mCE`` the mean over types; relative ``CE_c = Σ_s (E_{s,c} − E_clean) / Σ_s (E^ref_{s,c} − E^ref_clean)``
  and its mean, relative mCE. Values are ratios (ImageNet-C prints them ×100); a type whose reference
  denominator is 0 gets ``nan`` and is left out of the mean.
- **Answer flips** (:func:`answer_flips`): per corruption, the examples answered right on the clean
  image and wrong on the degraded one, and the reverse, as counts and as fractions of the paired
  examples (and of the clean-right / clean-wrong ones).
- **Worst-type accuracy** (:func:`worst_type`): the lowest per-type accuracy at each level.
- **Paired bootstrap** (:func:`paired_bootstrap`): a confidence interval for the accuracy difference
  of two runs on the same examples, resampling examples (all conditions of an example together) with
  a seeded generator; percentile interval (Efron & Tibshirani 1993, §13).

:func:`robustness_summary` gathers the per-run ones for ``summary.json`` and ``report.md``;
:func:`compare_runs` adds the two-run ones (mCE and Δ intervals against a reference run) for
``roma report --reference``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Corruption = tuple[str, int]  # (type, level)
Outcomes = dict[str, dict[str, Any]]  # benchmark -> {"clean", "degraded", "settings"}


def outcomes(records: Iterable[dict[str, Any]]) -> Outcomes:
    """Per benchmark: ``clean`` ``{id: 0/1}``, ``degraded`` ``{(type, level): {id: 0/1}}`` (first record
    wins) and ``settings`` ``{setting: {types run under it}}``."""
    out: Outcomes = {}
    for r in records:
        entry = out.setdefault(r["benchmark"], {"clean": {}, "degraded": defaultdict(dict), "settings": {}})
        value = 1 if r["correct"] else 0
        if r["setting"] == "clean":
            entry["clean"].setdefault(str(r["id"]), value)
        else:
            entry["degraded"][(str(r["type"]), int(r["level"]))].setdefault(str(r["id"]), value)
            entry["settings"].setdefault(str(r["setting"]), set()).add(str(r["type"]))
    return out


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def accuracies(entry: dict[str, Any]) -> tuple[float, dict[Corruption, float]]:
    """``(clean accuracy, {(type, level): accuracy})`` of one benchmark's outcomes (``nan`` when absent)."""
    return _mean(entry["clean"].values()), {c: _mean(v.values()) for c, v in sorted(entry["degraded"].items())}


def relative_robustness(clean: float, degraded: dict[Corruption, float]) -> dict[str, Any]:
    """``{"per_corruption": {"type@level": acc / clean}, "mean": mean of those}``; ``nan`` when clean is 0."""
    per = {f"{t}@{lv}": (acc / clean if clean > 0 else float("nan")) for (t, lv), acc in degraded.items()}
    finite = [v for v in per.values() if not math.isnan(v)]
    return {"per_corruption": per, "mean": _mean(finite)}


def corruption_errors(
    clean: float, degraded: dict[Corruption, float], ref_clean: float, ref_degraded: dict[Corruption, float]
) -> dict[str, Any]:
    """ImageNet-C's CE and relative CE per type against a reference, and their means (mCE, relative mCE).

    Each type sums its errors over the levels present in both ``degraded`` and ``ref_degraded``; types
    the reference lacks are skipped. Returns ``{"ce": {type: ...}, "relative_ce": {type: ...}, "mce",
    "relative_mce", "types": [...]}``.
    """
    by_type: dict[str, list[int]] = defaultdict(list)
    for name, level in degraded:
        if (name, level) in ref_degraded:
            by_type[name].append(level)
    ce, rel = {}, {}
    for name, levels in sorted(by_type.items()):
        err = [1 - degraded[(name, lv)] for lv in levels]
        ref = [1 - ref_degraded[(name, lv)] for lv in levels]
        ce[name] = sum(err) / sum(ref) if sum(ref) > 0 else float("nan")
        ref_gap = sum(e - (1 - ref_clean) for e in ref)
        rel[name] = sum(e - (1 - clean) for e in err) / ref_gap if ref_gap > 0 else float("nan")
    return {
        "ce": ce, "relative_ce": rel, "types": sorted(by_type),
        "mce": _mean(v for v in ce.values() if not math.isnan(v)),
        "relative_mce": _mean(v for v in rel.values() if not math.isnan(v)),
    }  # fmt: skip


def answer_flips(entry: dict[str, Any]) -> dict[str, dict[str, float | int]]:
    """Per ``"type@level"``: clean-right → degraded-wrong and clean-wrong → degraded-right, on paired examples.

    Each value holds ``n`` (examples with both records), ``right_to_wrong``, ``wrong_to_right`` (counts),
    ``right_to_wrong_rate`` / ``wrong_to_right_rate`` (over ``n``), ``right_to_wrong_of_right`` (over the
    clean-right examples) and ``wrong_to_right_of_wrong`` (over the clean-wrong ones; ``nan`` if none).
    """
    clean = entry["clean"]
    out = {}
    for (name, level), per_id in sorted(entry["degraded"].items()):
        ids = [i for i in per_id if i in clean]
        right = sum(clean[i] for i in ids)
        r2w = sum(1 for i in ids if clean[i] == 1 and per_id[i] == 0)
        w2r = sum(1 for i in ids if clean[i] == 0 and per_id[i] == 1)
        n = len(ids)
        out[f"{name}@{level}"] = {
            "n": n, "right_to_wrong": r2w, "wrong_to_right": w2r,
            "right_to_wrong_rate": r2w / n if n else float("nan"),
            "wrong_to_right_rate": w2r / n if n else float("nan"),
            "right_to_wrong_of_right": r2w / right if right else float("nan"),
            "wrong_to_right_of_wrong": w2r / (n - right) if n - right else float("nan"),
        }  # fmt: skip
    return out


def worst_type(degraded: dict[Corruption, float]) -> dict[str, dict[str, Any]]:
    """Per level: ``{"type": name, "acc": lowest accuracy}`` over the types evaluated at that level."""
    out: dict[str, dict[str, Any]] = {}
    for (name, level), acc in sorted(degraded.items(), key=lambda item: (item[0][1], item[1], item[0][0])):
        out.setdefault(str(level), {"type": name, "acc": acc})
    return out


def paired_bootstrap(
    a: dict[Any, float],
    b: dict[Any, float],
    *,
    cluster: Any = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int]:
    """Δ = mean(a) − mean(b) over the keys both have, with a percentile bootstrap interval.

    ``a`` and ``b`` map item keys (e.g. ``(benchmark, id, type, level)``) to outcomes; ``cluster(key)``
    names the unit resampled together (default: the key itself — pass the example, so that all its
    conditions move together, as they are correlated). Each resample draws the clusters with
    replacement from ``np.random.default_rng(seed)`` and recomputes Δ over their items. Returns
    ``{"delta", "low", "high", "n" (items), "clusters", "resamples", "confidence"}``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    keys = [k for k in a if k in b]
    if not keys:
        return {"delta": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0, "clusters": 0,
                "resamples": resamples, "confidence": confidence}  # fmt: skip
    group = (lambda k: k) if cluster is None else cluster
    index: dict[Any, int] = {}
    sums: list[float] = []
    counts: list[int] = []
    for k in keys:
        g = index.setdefault(group(k), len(index))
        if g == len(sums):
            sums.append(0.0)
            counts.append(0)
        sums[g] += float(a[k]) - float(b[k])
        counts[g] += 1
    diff_sum, count = np.asarray(sums), np.asarray(counts, dtype=np.float64)  # (G,) each
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))  # (R, G) cluster indices
    deltas = diff_sum[draws].sum(axis=1) / count[draws].sum(axis=1)  # (R,)
    tail = (1 - confidence) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    return {"delta": float(diff_sum.sum() / count.sum()), "low": float(low), "high": float(high), "n": len(keys),
            "clusters": len(sums), "resamples": resamples, "confidence": confidence}  # fmt: skip


# ------------------------------------------------------------------------------------ per run, per pair


def _average(values: Sequence[dict[Corruption, float]]) -> dict[Corruption, float]:
    keys = sorted({k for v in values for k in v})
    return {k: _mean(v[k] for v in values if k in v) for k in keys}


def family_accuracy(degraded: dict[Corruption, float], settings: dict[str, set[str]]) -> dict[str, dict[str, float]]:
    """Per pool run (a setting): ``{level: mean accuracy over its types}``; the ``all`` pool is shown as
    its families (``imagenet-c``, ``geometric``, ``capture``, ``document``: the types of each that ran)."""
    from roma.degrade import POOLS

    groups: dict[str, set[str]] = {}
    for setting, names in settings.items():
        if setting == "all":
            for family in ("imagenet-c", "geometric", "capture", "document"):
                if names & set(POOLS[family]):
                    groups.setdefault(family, set()).update(names & set(POOLS[family]))
        else:
            groups.setdefault(setting, set()).update(names)
    out: dict[str, dict[str, float]] = {}
    for pool, names in groups.items():
        per_level: dict[int, list[float]] = defaultdict(list)
        for (name, level), acc in degraded.items():
            if name in names:
                per_level[level].append(acc)
        if per_level:
            out[pool] = {str(lv): _mean(v) for lv, v in sorted(per_level.items())}
    return out


def robustness_summary(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The per-run metrics for ``summary.json["robustness"]``, per benchmark and averaged over benchmarks.

    Each benchmark holds ``clean``, ``accuracy`` (``"type@level"`` → accuracy), ``relative_robustness``,
    ``worst_type``, ``families`` (pool → level → accuracy), ``flips`` (per corruption) and
    ``flip_totals`` (summed over corruptions). ``average`` holds the macro average over benchmarks
    of the clean and per-corruption accuracies, the metrics computed from those, and the flip totals
    summed over benchmarks.
    """
    per_benchmark, cleans, tables, settings = {}, [], [], {}
    for name, entry in sorted(outcomes(records).items()):
        clean, degraded = accuracies(entry)
        flips = answer_flips(entry)
        totals = {k: sum(f[k] for f in flips.values()) for k in ("n", "right_to_wrong", "wrong_to_right")}
        per_benchmark[name] = {
            "clean": clean, "accuracy": {f"{t}@{lv}": acc for (t, lv), acc in degraded.items()},
            "relative_robustness": relative_robustness(clean, degraded), "worst_type": worst_type(degraded),
            "families": family_accuracy(degraded, entry["settings"]), "flips": flips, "flip_totals": totals,
        }  # fmt: skip
        for setting, names in entry["settings"].items():
            settings.setdefault(setting, set()).update(names)
        if not math.isnan(clean):
            cleans.append(clean)
        tables.append(degraded)
    clean, degraded = _mean(cleans), _average(tables)
    average = {
        "clean": clean, "accuracy": {f"{t}@{lv}": acc for (t, lv), acc in degraded.items()},
        "relative_robustness": relative_robustness(clean, degraded), "worst_type": worst_type(degraded),
        "families": family_accuracy(degraded, settings),
        "flip_totals": {k: sum(b["flip_totals"][k] for b in per_benchmark.values())
                        for k in ("n", "right_to_wrong", "wrong_to_right")},
    }  # fmt: skip
    return {"benchmarks": per_benchmark, "average": average}


def _item_outcomes(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, int], float]:
    """``{(benchmark, id, type, level): 0/1}`` with clean as ``("none", 0)`` (first record of a key wins)."""
    out: dict[tuple[str, str, str, int], float] = {}
    for r in records:
        name, level = ("none", 0) if r["setting"] == "clean" else (str(r["type"]), int(r["level"]))
        out.setdefault((str(r["benchmark"]), str(r["id"]), name, level), 1.0 if r["correct"] else 0.0)
    return out


def compare_runs(
    records: Iterable[dict[str, Any]],
    reference: Iterable[dict[str, Any]],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """A run against a reference run: mCE / relative mCE (on benchmark-averaged accuracies, and per
    benchmark) and paired bootstrap intervals of Δ accuracy (run − reference) on clean, on all degraded
    items, and per degraded level, resampling examples (``(benchmark, id)``)."""
    records, reference = list(records), list(reference)
    mine, ref = outcomes(records), outcomes(reference)
    per_benchmark = {}
    tables, ref_tables, cleans, ref_cleans = [], [], [], []
    for name in sorted(set(mine) & set(ref)):
        clean, degraded = accuracies(mine[name])
        ref_clean, ref_degraded = accuracies(ref[name])
        per_benchmark[name] = corruption_errors(clean, degraded, ref_clean, ref_degraded)
        tables.append(degraded)
        ref_tables.append(ref_degraded)
        cleans.append(clean)
        ref_cleans.append(ref_clean)
    average = corruption_errors(_mean(cleans), _average(tables), _mean(ref_cleans), _average(ref_tables))

    a, b = _item_outcomes(records), _item_outcomes(reference)
    example = lambda key: key[:2]  # noqa: E731 — resample whole examples

    def delta(select: Any) -> dict[str, float | int]:
        return paired_bootstrap({k: v for k, v in a.items() if select(k)}, {k: v for k, v in b.items() if select(k)},
                                cluster=example, resamples=resamples, confidence=confidence, seed=seed)  # fmt: skip

    intervals = {"clean": delta(lambda k: k[3] == 0), "degraded": delta(lambda k: k[3] != 0)}
    for level in sorted({k[3] for k in a if k[3] != 0}):
        intervals[f"level_{level}"] = delta(lambda k, lv=level: k[3] == lv)
    return {"mce": {"benchmarks": per_benchmark, "average": average}, "delta": intervals}
