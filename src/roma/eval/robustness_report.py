"""The robustness sections of ``report.md`` and ``comparison.md``, and the per-family plot.

:func:`markdown_section` renders ``summary["robustness"]`` (:func:`roma.eval.robustness.robustness_summary`)
of one run; :func:`plot_families` draws accuracy against level per degradation family (pool), the
benchmark average, level 0 being the clean image; :func:`comparison_section` renders
:func:`roma.eval.robustness.compare_runs` of several runs against a reference run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def markdown_section(summary: dict[str, Any]) -> list[str]:
    """``## Robustness`` of one run: relative robustness, worst type, families, answer flips."""
    robustness = summary.get("robustness")
    if not robustness or not robustness["average"]["accuracy"]:
        return []
    lines = ["## Robustness", "",
             "Relative robustness = degraded / clean accuracy (mean over the corruptions run); worst type = "
             "the lowest per-type accuracy at a level; flips = clean-right → degraded-wrong (R→W) and back "
             "(W→R), summed over corruptions, in % of the paired (example, corruption) items.", ""]  # fmt: skip
    levels = sorted({lv for b in [robustness["average"], *robustness["benchmarks"].values()]
                     for lv in b["worst_type"]}, key=int)  # fmt: skip
    rows = []
    for name, b in [*robustness["benchmarks"].items(), ("**Average**", robustness["average"])]:
        worst = [f"{b['worst_type'][lv]['type']} {_pct(b['worst_type'][lv]['acc'])}" if lv in b["worst_type"] else "–"
                 for lv in levels]  # fmt: skip
        totals = b.get("flip_totals")
        flips = ("–", "–") if not totals or not totals["n"] else (
            _pct(totals["right_to_wrong"] / totals["n"]), _pct(totals["wrong_to_right"] / totals["n"]))
        rows.append([name, _pct(b["clean"]), _ratio(b["relative_robustness"]["mean"]), *worst, *flips])
    lines += _table(["Benchmark", "Clean", "Rel. robustness", *(f"Worst type L{lv}" for lv in levels),
                     "R→W %", "W→R %"], rows)  # fmt: skip
    families = robustness["average"]["families"]
    if families:
        lines += ["", "Accuracy (%) per degradation family (mean over its types run; benchmark average):", ""]
        lines += _table(["Family", "Clean", *(f"L{lv}" for lv in levels)],
                        [[pool, _pct(robustness["average"]["clean"]), *(_pct(acc.get(lv)) for lv in levels)]
                         for pool, acc in families.items()])  # fmt: skip
    accuracy = robustness["average"]["accuracy"]  # "type@level" -> accuracy
    names = list(dict.fromkeys(key.rsplit("@", 1)[0] for key in accuracy))
    lines += ["", "Accuracy (%) and relative robustness per type (benchmark average):", ""]
    rel = robustness["average"]["relative_robustness"]["per_corruption"]
    lines += _table(["Type", *(f"L{lv}" for lv in levels), *(f"rel. L{lv}" for lv in levels)],
                    [[name, *(_pct(accuracy.get(f"{name}@{lv}")) for lv in levels),
                      *(_ratio(rel.get(f"{name}@{lv}")) for lv in levels)] for name in names])  # fmt: skip
    lines += ["", "Flips per corruption are in `summary.json` (`robustness`); the plot `eval-families.png` "
              "shows accuracy against level per family.", ""]  # fmt: skip
    return lines


def plot_families(summary: dict[str, Any], path: Path) -> bool:
    """Accuracy (%) against level, one line per family (benchmark average); return False if nothing to plot."""
    robustness = summary.get("robustness")
    families = robustness["average"]["families"] if robustness else {}
    if not families:
        return False
    clean = robustness["average"]["clean"]
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=110)
    for pool, per_level in families.items():
        xs = [int(lv) for lv in sorted(per_level, key=int)]
        ys = [100 * per_level[str(x)] for x in xs]
        if not math.isnan(clean):
            xs, ys = [0, *xs], [100 * clean, *ys]
        ax.plot(xs, ys, marker="o", label=pool)
    ax.set_xticks([0, 1, 2, 3], ["clean", "L1", "L2", "L3"])
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{summary.get('config', {}).get('model_name', 'model')}: accuracy by level per family")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def comparison_section(results: Sequence[dict[str, Any]], names: Sequence[str], reference: str) -> list[str]:
    """``## Robustness against <reference>``: mCE, relative mCE and Δ accuracy with bootstrap intervals."""
    if not results:
        return []
    confidence = results[0]["delta"]["clean"]["confidence"]
    levels = sorted({k for r in results for k in r["delta"] if k.startswith("level_")}, key=lambda k: int(k[6:]))
    lines = [f"## Robustness against `{reference}`", "",
             "mCE and relative mCE: ImageNet-C's corruption errors normalised by the reference run's, averaged "
             "over types (benchmark-averaged accuracies; 1.000 = as robust as the reference, lower is better). "
             f"Δ = accuracy − reference's on the same items, in points, with a {100 * confidence:.0f}% paired "
             "bootstrap interval (examples resampled).", ""]  # fmt: skip

    def delta(d: dict[str, Any]) -> str:
        if not d["n"]:
            return "–"
        return f"{100 * d['delta']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"

    rows = [[name, _ratio(r["mce"]["average"]["mce"]), _ratio(r["mce"]["average"]["relative_mce"]),
             delta(r["delta"]["clean"]), delta(r["delta"]["degraded"]), *(delta(r["delta"][k]) for k in levels)]
            for name, r in zip(names, results)]  # fmt: skip
    lines += _table(["Model", "mCE", "Rel. mCE", "Δ clean", "Δ degraded", *(f"Δ L{k[6:]}" for k in levels)], rows)
    return [*lines, ""]
