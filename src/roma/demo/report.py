"""``roma demo``'s results: read each evaluation and training log, aggregate over seeds, and write
``demo-summary.json``, ``report.md`` and the plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from roma.demo.config import REFERENCE, DemoConfig, Outputs
from roma.demo.stages import StageResult
from roma.eval.protocol import pools
from roma.eval.report import load_summary, markdown_table

TRAIN_CURVE_KEYS: tuple[str, ...] = ("reward", "roma/success_rate", "roma/loss_inv")
"""Per-step logs of the RL trainer that the report plots (when a run logged them)."""


def read_eval(eval_dir: Path, level: int) -> dict[str, Any]:
    """Headline numbers of one evaluation (accuracies as fractions): clean, seen / unseen per level, gaps at
    ``level``, per-type accuracy at ``level``, and the standard errors of clean / seen / unseen at ``level``."""
    summary = load_summary(eval_dir)
    avg = summary["average"]
    pool = pools()
    lv = avg["levels"].get(str(level), {})
    out: dict[str, Any] = {
        "clean": avg["clean"]["acc"],
        "seen": {k: v["seen"]["acc"] for k, v in avg["levels"].items() if "seen" in v},
        "unseen": {k: v["unseen"]["acc"] for k, v in avg["levels"].items() if "unseen" in v},
        "gap_seen": lv["gap_seen"]["value"],
        "gap_unseen": lv["gap_unseen"]["value"],
        "se": {"clean": avg["clean"]["se"], "seen": lv["seen"]["se"], "unseen": lv["unseen"]["se"]},
        "types": {setting: {name: avg["types"][setting][name][str(level)]["acc"] for name in pool[setting]
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
    rows = []
    for label, e in table.items():
        row = [label, str(e["clean"]["n"]), _fmt(e["clean"], se=e["se"]["clean"]),
               _fmt(e["seen"], se=e["se"]["seen"]), _fmt(e["unseen"], se=e["se"]["unseen"]),
               _fmt(e["gap_seen"]), _fmt(e["gap_unseen"])]
        if has_delta:
            delta = e.get("delta_vs_grpo")
            row += [_fmt(delta[k], signed=True) if delta else "–" for k in ("clean", "seen", "unseen")]
        rows.append(row)
    return markdown_table(header, rows)


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
    lines = markdown_table(["stage", "seconds", "this run"],
                           [[s["name"], f"{s['seconds']:.1f}", "ran" if s["ran"] else "cached"] for s in stages])
    kinds: dict[str, float] = {}
    for s in stages:
        kind = s["name"].split("/")[0]
        kinds[kind] = kinds.get(kind, 0.0) + s["seconds"]
    lines += ["", "Total per kind of stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in kinds.items())
              + f"; all {sum(kinds.values()):.0f} s."]
    return lines


def _ends(curves: dict[str, list[tuple[int, float]]], key: str) -> str:
    """Mean of the first 5 → mean of the last 5 logged values of ``key``; ``–`` when not logged."""
    points = [v for _, v in curves.get(key, [])]
    if not points:
        return "–"
    head, tail = points[:5], points[-5:]
    return f"{sum(head) / len(head):.3f} → {sum(tail) / len(tail):.3f}"


def _training_table(training: Sequence[dict[str, Any]]) -> list[str]:
    """One row per RL run: steps, reward and success rate (first → last 5 steps), mean L_inv."""
    rows = []
    for run in training:
        curves = run["curves"]
        inv = [v for _, v in curves.get("roma/loss_inv", [])]
        inv_text = f"{sum(inv) / len(inv):.2e}" if inv else "–"
        steps = max((s for points in curves.values() for s, _ in points), default=0)
        rows.append([f"{run['label']} seed {run['seed']}", str(steps), _ends(curves, "reward"),
                     _ends(curves, "roma/success_rate"), inv_text])
    header = ["Run", "steps", "reward (first → last 5 steps)", "success rate (first → last 5)", "L_inv (mean)"]
    return markdown_table(header, rows)


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
    rows = [[label, _fmt({"mean": e["clean"]["mean"]})]
            + [_fmt({"mean": e["levels"][s][lv]["mean"]}) for s in ("seen", "unseen") for lv in levels]
            for label, e in table.items()]
    lines += markdown_table(header, rows)

    lines += ["", f"## Per type (Level {level})", "", "Mean over seeds; (S) seen pool, (U) unseen pool.", ""]
    first = next(iter(table.values()))["types"]
    types = [("seen", t) for t in first["seen"]] + [("unseen", t) for t in first["unseen"]]
    header = ["Model"] + [f"{t} ({s[0].upper()})" for s, t in types]
    lines += markdown_table(header, [[label] + [_fmt({"mean": e["types"][s][t]["mean"]}) for s, t in types]
                                     for label, e in table.items()])

    lines += ["", "## Training", "", f"![training curves]({files['curves_png']})", ""]
    lines += _training_table(summary["training"])
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
    from roma.demo.plots import plot_accuracy_vs_level, plot_training_curves

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
