"""The two plots of ``roma demo``'s report: accuracy against degradation level, and the RL training curves.

Both read plain data (the demo's aggregated table and the per-step logs of each run) and write one PNG;
``roma.eval.report`` draws the plots of a single evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

CURVE_TITLES: dict[str, str] = {
    "reward": "reward (accuracy + format)",
    "roma/success_rate": "success rate (accuracy reward > 0)",
    "roma/loss_inv": "invariance penalty L_inv (worst view)",
}


def plot_accuracy_vs_level(table: dict[str, Any], levels: Sequence[int], path: str | Path) -> None:
    """Two panels (seen pool, unseen pool): accuracy (%) against level, level 0 being the clean image.

    ``table[label]`` holds ``clean`` (``{"mean", "std"}``) and ``levels[setting][str(level)]`` (same form),
    as built by :func:`roma.demo.report.aggregate_runs`; error bars are the std over seeds when there is one.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120, sharey=True)
    xs = [0, *levels]
    highest = 0.0
    for ax, setting in zip(axes, ("seen", "unseen")):
        for label, entry in table.items():
            stats = [entry["clean"]] + [entry["levels"][setting][str(lv)] for lv in levels]
            ys = [100 * s["mean"] for s in stats]
            errs = [100 * s["std"] if s.get("std") is not None else 0.0 for s in stats]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=label)
            highest = max(highest, *(y + e for y, e in zip(ys, errs)))
        ax.set_xticks(xs, ["clean"] + [f"L{lv}" for lv in levels])
        ax.set_title(f"{setting} degradations (macro-average over types)")
        ax.set_xlabel("degradation level")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(0, min(100.0, max(10.0, 1.1 * highest + 2)))
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start): ``[1, 2, 3, 4]``, 2 → ``[1, 1.5, 2.5, 3.5]``."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return [sum(values[max(0, i + 1 - window) : i + 1]) / (i + 1 - max(0, i + 1 - window)) for i in range(len(values))]


def plot_training_curves(runs: Sequence[dict[str, Any]], path: str | Path) -> None:
    """One panel per logged quantity (:data:`CURVE_TITLES`); per (variant, seed) run, the raw per-step values
    (faint) and their trailing mean over a sixth of the run (a colour per variant, a line style per seed).

    ``runs`` items: ``{"label", "seed", "curves": {key: [(step, value), ...]}}``. A quantity no run logged
    (e.g. ``roma/loss_inv`` without a ROMA run) gets a panel saying so, so the figure's layout is fixed.
    """
    keys = list(CURVE_TITLES)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(run["label"] for run in runs))
    seeds = list(dict.fromkeys(run["seed"] for run in runs))
    styles = ["-", "--", ":", "-."]
    for ax, key in zip(axes, keys):
        drawn = False
        for run in runs:
            points = run["curves"].get(key)
            if not points:
                continue
            steps, values = zip(*points)
            colour = colours[labels.index(run["label"]) % len(colours)]
            style = styles[seeds.index(run["seed"]) % len(styles)]
            window = max(1, len(values) // 6)
            ax.plot(steps, values, color=colour, alpha=0.2, lw=0.8)
            ax.plot(steps, moving_average(values, window), style, color=colour,
                    label=f"{run['label']} (seed {run['seed']})")
            drawn = True
        ax.set_title(CURVE_TITLES[key], fontsize=10)
        ax.set_xlabel("RL step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged by these runs", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
