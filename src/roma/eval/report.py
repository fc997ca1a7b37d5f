"""Tables and plots of evaluation runs, and the ``roma report`` command.

:func:`write_report` turns one run's summary into ``report.md`` (a table shaped like the paper's
Tables 1/2 — rows: benchmarks and their average; columns: clean, seen, unseen and the clean→degraded
gaps — then the per-type breakdown, other levels, per-task scores, skipped rows) and two plots:
``eval-levels.png`` (accuracy against degradation level for every type, averaged over benchmarks;
level 0 is the clean image) and ``eval-settings.png`` (clean / seen / unseen bars per benchmark).

``roma report RUN_DIR [RUN_DIR ...] [--names ...] --out DIR`` puts several runs (say base, GRPO and
ROMA) side by side: ``comparison.md`` (headline table per model, then per-benchmark tables) and
``comparison.png`` (headline bars and per-type accuracy per model). Accuracies are shown in percent
with ± one standard error. The robustness metrics (:mod:`roma.eval.robustness`) add a section to
``report.md`` and the plot ``eval-families.png``; ``--reference RUN_DIR`` adds mCE, relative mCE and
paired bootstrap intervals of Δ accuracy against that run to ``comparison.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from roma.eval import robustness_report  # noqa: E402

SETTING_COLOURS = {"clean": "#4c72b0", "seen": "#dd8452", "unseen": "#c44e52"}


def pct(stat: dict[str, Any] | None, *, key: str = "acc", se: bool = True) -> str:
    """``{"acc": 0.6875, "se": 0.0123}`` -> ``"68.8 ± 1.2"``; ``"–"`` when missing."""
    if not stat or key not in stat or stat[key] != stat[key]:  # missing or NaN
        return "–"
    text = f"{100 * stat[key]:.1f}"
    return f"{text} ± {100 * stat['se']:.1f}" if se and "se" in stat else text


def _gap(stat: dict[str, Any] | None) -> str:
    return pct(stat, key="value")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table: the header row, the separator, one line per row (cells as str)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def main_table(summary: dict[str, Any], level: str) -> list[str]:
    """The paper-shaped table at one level: one row per benchmark plus the average."""
    header = ["Benchmark", "n", "Clean", "Seen", "Unseen", "Δ seen", "Δ unseen"]
    rows = []
    for name, b in summary["benchmarks"].items():
        lv = b["levels"].get(level, {})
        rows.append([name, b["n_examples"], pct(b.get("clean")), pct(lv.get("seen")), pct(lv.get("unseen")),
                     _gap(lv.get("gap_seen")), _gap(lv.get("gap_unseen"))])
    avg = summary["average"]
    lv = avg["levels"].get(level, {})
    rows.append([f"**Average** ({len(summary['benchmarks'])})", "", pct(avg.get("clean")), pct(lv.get("seen")),
                 pct(lv.get("unseen")), _gap(lv.get("gap_seen")), _gap(lv.get("gap_unseen"))])
    return markdown_table(header, rows)


def type_table(summary: dict[str, Any], level: str) -> list[str]:
    """Per-type accuracy at one level: one row per benchmark plus the average, seen types then unseen."""
    seen = sorted({t for b in summary["benchmarks"].values() for t in b["types"]["seen"]})
    unseen = sorted({t for b in summary["benchmarks"].values() for t in b["types"]["unseen"]})
    seen, unseen = _pool_order(summary, "seen", seen), _pool_order(summary, "unseen", unseen)
    header = ["Benchmark", "clean"] + [f"{t} (S)" for t in seen] + [f"{t} (U)" for t in unseen]
    rows = []
    for name, b in summary["benchmarks"].items():
        rows.append([name, pct(b.get("clean"), se=False)]
                    + [pct(b["types"]["seen"].get(t, {}).get(level), se=False) for t in seen]
                    + [pct(b["types"]["unseen"].get(t, {}).get(level), se=False) for t in unseen])
    avg = summary["average"]
    rows.append(["**Average**", pct(avg.get("clean"), se=False)]
                + [pct(avg["types"]["seen"].get(t, {}).get(level), se=False) for t in seen]
                + [pct(avg["types"]["unseen"].get(t, {}).get(level), se=False) for t in unseen])
    return markdown_table(header, rows)


def _pool_order(summary: dict[str, Any], setting: str, names: list[str]) -> list[str]:
    """Types in the degradation module's pool order when it is importable, else alphabetical."""
    try:
        from roma.eval.protocol import pools

        order = pools()[setting]
    except ImportError:
        return names
    return sorted(names, key=lambda t: order.index(t) if t in order else len(order))


def levels_of(summary: dict[str, Any]) -> list[str]:
    return sorted(summary["average"]["levels"], key=int)


def main_level(summary: dict[str, Any]) -> str:
    levels = levels_of(summary)
    wanted = str(summary.get("main_level", 3))
    return wanted if wanted in levels else (levels[-1] if levels else wanted)


def render_markdown(summary: dict[str, Any]) -> str:
    """``report.md`` of one run."""
    config, counts = summary.get("config", {}), summary.get("counts", {})
    level = main_level(summary)
    lines = [f"# Evaluation report — {config.get('model_name', 'model')}", ""]
    if config:
        lines += [
            f"Model `{config.get('model')}`; datasets {', '.join(config.get('datasets', []))}; settings "
            f"{', '.join(config.get('settings', []))}; levels {config.get('levels')}; seed {config.get('seed')}; "
            f"judge `{config.get('judge')}`; max_new_tokens {config.get('max_new_tokens')}; limit {config.get('limit')}.",
            "",
        ]
    if counts:
        lines += [f"{counts.get('records')} records ({counts.get('generated')} generated in this run, "
                  f"{counts.get('reused')} reused from an earlier one); {summary.get('seconds', '?')} s.", ""]
    truncated = sum(summary.get("truncated", {}).values())
    if truncated:
        lines += [f"{truncated} completion(s) hit max_new_tokens ({config.get('max_new_tokens')}) and were cut "
                  "(`truncated` in records.jsonl): a cut chain of thought has no final answer and scores wrong; "
                  "per dataset: " + ", ".join(f"{k} {v}" for k, v in summary["truncated"].items() if v) + ".", ""]
    lines += [f"## Main results (Level {level})", ""]
    lines += main_table(summary, level)
    lines += ["", "Accuracy in %, ± one standard error. Seen / Unseen: macro-average over the types of the pool "
              "(each type's accuracy averaged over examples first); Δ = clean − degraded (paired standard error); "
              "the average row is the plain mean over benchmarks.", ""]
    lines += [f"## Per-type accuracy (Level {level})", "", "(S) seen pool, (U) unseen pool.", ""]
    lines += type_table(summary, level)
    other = [lv for lv in levels_of(summary) if lv != level]
    for lv in other:
        lines += ["", f"## Level {lv}", ""] + main_table(summary, lv)
    lines += ["", *robustness_report.markdown_section(summary)]
    lines += ["", "## Per task", "", "All records of a setting pooled (every type and level).", ""]
    rows = []
    for name, b in summary["benchmarks"].items():
        for task, t in b.get("tasks", {}).items():
            rows.append([name, task, t["n_examples"], pct(t.get("clean")), pct(t.get("seen")), pct(t.get("unseen"))])
    lines += markdown_table(["Benchmark", "Task", "n", "Clean", "Seen", "Unseen"], rows)
    from roma.eval.official import report_lines

    lines += [""] + report_lines(summary)
    skipped = {k: v for k, v in summary.get("skipped", {}).items() if v}
    lines += ["", "## Skipped rows and judge errors", ""]
    if not skipped and not summary.get("judge_errors"):
        lines.append("None.")
    for name, items in skipped.items():
        reasons: dict[str, str] = {}
        for s in items:
            reasons.setdefault(s["id"], s["reason"])
        rows = summary.get("data", {}).get(name, {}).get("rows")
        lines.append(f"- {name}: {len(reasons)} example(s) skipped" + (f" of {rows} rows" if rows else "") + ": "
                     + "; ".join(f"`{i}` ({r})" for i, r in list(reasons.items())[:20])
                     + (" ..." if len(reasons) > 20 else ""))
    if summary.get("judge_errors"):
        lines.append(f"- {len(summary['judge_errors'])} record(s) without a readable LLM verdict (scored wrong).")
    lines += ["", "Plots: `eval-levels.png` (accuracy against level per type), `eval-settings.png` "
              "(clean / seen / unseen per benchmark).", ""]
    return "\n".join(lines)


def _top(values: Sequence[float]) -> float:
    """Upper y limit (%) that leaves room above the highest value: at least 10, at most 100."""
    return min(100.0, max(10.0, max(values, default=0.0) * 1.15 + 2))


def plot_levels(summary: dict[str, Any], path: Path) -> None:
    """Accuracy against degradation level for every type (benchmark average); level 0 = clean."""
    avg = summary["average"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    clean = avg.get("clean")
    markers = "osD^vP*X"
    highest: list[float] = []
    for setting in avg["types"]:  # seen solid, the other pools dashed
        style = "-" if setting == "seen" else "--"
        names = _pool_order(summary, setting, sorted(avg["types"][setting]))
        for i, name in enumerate(names):
            per_level = avg["types"][setting][name]
            xs = [int(lv) for lv in sorted(per_level, key=int)]
            ys = [100 * per_level[str(x)]["acc"] for x in xs]
            if clean is not None:
                xs, ys = [0, *xs], [100 * clean["acc"], *ys]
            ax.plot(xs, ys, style, marker=markers[i % len(markers)], label=f"{name} ({setting})")
            highest += ys
    if clean is not None:
        ax.axhline(100 * clean["acc"], color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, _top(highest))
    ax.set_xticks([0, 1, 2, 3], ["clean", "L1", "L2", "L3"])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{summary.get('config', {}).get('model_name', 'model')}: accuracy by degradation level")
    if highest:
        ax.legend(fontsize=7, ncol=2, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _settings_stats(entry: dict[str, Any], level: str) -> list[dict[str, Any] | None]:
    lv = entry.get("levels", {}).get(level, {})
    return [entry.get("clean"), lv.get("seen"), lv.get("unseen")]


def plot_settings(summary: dict[str, Any], path: Path) -> None:
    """Grouped bars: clean / seen / unseen at the main level for each benchmark and the average."""
    level = main_level(summary)
    groups = [(name, _settings_stats(b, level)) for name, b in summary["benchmarks"].items()]
    groups.append(("average", _settings_stats(summary["average"], level)))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(groups) + 2), 4), dpi=120)
    width = 0.26
    highest: list[float] = []
    for j, setting in enumerate(("clean", "seen", "unseen")):
        xs = [i + (j - 1) * width for i in range(len(groups))]
        stats = [g[1][j] for g in groups]
        ys = [100 * s["acc"] if s else 0.0 for s in stats]
        errs = [100 * s["se"] if s else 0.0 for s in stats]
        ax.bar(xs, ys, width, yerr=errs, capsize=2, label=setting, color=SETTING_COLOURS[setting])
        highest += [y + e for y, e in zip(ys, errs)]
    ax.set_ylim(0, _top(highest))
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], rotation=20)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{summary.get('config', {}).get('model_name', 'model')}: clean / seen / unseen (Level {level})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``report.md``, ``eval-levels.png`` and ``eval-settings.png`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.md", out / "eval-levels.png", out / "eval-settings.png"]
    paths[0].write_text(render_markdown(summary), encoding="utf-8")
    plot_levels(summary, paths[1])
    plot_settings(summary, paths[2])
    if robustness_report.plot_families(summary, out / "eval-families.png"):
        paths.append(out / "eval-families.png")
    return paths


# ------------------------------------------------------------------------------------ comparing runs


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} an output folder of 'roma eval'?")
    return json.loads(path.read_text(encoding="utf-8"))


def render_comparison(summaries: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """``comparison.md``: headline per model, then one table per setting with a column per model."""
    level = main_level(summaries[0])
    lines = [f"# Model comparison (Level {level})", "",
             "Average over benchmarks; accuracy in %, ± one standard error; Δ = clean − degraded.", ""]
    rows = []
    for name, s in zip(names, summaries):
        avg = s["average"]
        lv = avg["levels"].get(level, {})
        rows.append([name, len(s["benchmarks"]), pct(avg.get("clean")), pct(lv.get("seen")), pct(lv.get("unseen")),
                     _gap(lv.get("gap_seen")), _gap(lv.get("gap_unseen"))])
    lines += markdown_table(["Model", "Benchmarks", "Clean", "Seen", "Unseen", "Δ seen", "Δ unseen"], rows)
    benchmarks = sorted({b for s in summaries for b in s["benchmarks"]})
    for setting in ("clean", "seen", "unseen"):
        lines += ["", f"## {setting.capitalize()}", ""]
        rows = []
        for bench in [*benchmarks, None]:
            row = [bench or "**Average**"]
            for s in summaries:
                entry = s["average"] if bench is None else s["benchmarks"].get(bench)
                stat = None
                if entry is not None:
                    stat = entry.get("clean") if setting == "clean" else entry["levels"].get(level, {}).get(setting)
                row.append(pct(stat))
            rows.append(row)
        lines += markdown_table(["Benchmark", *names], rows)
    mismatched = [n for n, s in zip(names, summaries) if sorted(s["benchmarks"]) != benchmarks]
    if mismatched:
        lines += ["", f"Note: {', '.join(mismatched)} did not run every benchmark; averages cover different sets."]
    return "\n".join(lines) + "\n"


def plot_comparison(summaries: Sequence[dict[str, Any]], names: Sequence[str], path: Path) -> None:
    """Left: clean / seen / unseen averages per model; right: per-type accuracy at the main level."""
    level = main_level(summaries[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=120, gridspec_kw={"width_ratios": [1, 1.6]})
    width = 0.8 / len(summaries)
    for k, (name, s) in enumerate(zip(names, summaries)):
        stats = _settings_stats(s["average"], level)
        xs = [i - 0.4 + (k + 0.5) * width for i in range(3)]
        left.bar(xs, [100 * st["acc"] if st else 0 for st in stats], width,
                 yerr=[100 * st["se"] if st else 0 for st in stats], capsize=2, label=name)
    left.set_xticks(range(3), ["clean", "seen", "unseen"])
    left.set_ylabel("accuracy (%)")
    left.set_title(f"average over benchmarks (Level {level})")
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)
    types = []
    for setting in ("seen", "unseen"):
        names_in = sorted({t for s in summaries for t in s["average"]["types"][setting]})
        types += [(setting, t) for t in _pool_order(summaries[0], setting, names_in)]
    for name, s in zip(names, summaries):
        ys = [100 * s["average"]["types"][st].get(t, {}).get(level, {}).get("acc", float("nan")) for st, t in types]
        right.plot(range(len(types)), ys, marker="o", label=name)
    if types:
        right.axvline(sum(1 for st, _ in types if st == "seen") - 0.5, color="grey", lw=0.8, ls=":")
    right.set_xticks(range(len(types)), [t for _, t in types], rotation=30, ha="right", fontsize=8)
    right.set_title("per type (left of the dotted line: seen pool)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compare(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    reference: str | Path | None = None,
    seed: int = 0,
) -> list[Path]:
    """Side-by-side table and plot of several ``roma eval`` runs; return the written paths.

    With ``reference`` (a run folder), ``comparison.md`` / ``.json`` also get each run's mCE, relative
    mCE and paired bootstrap intervals (seeded by ``seed``) of Δ accuracy against it
    (:func:`roma.eval.robustness.compare_runs`, from the runs' ``records.jsonl``).
    """
    if not run_dirs:
        raise ValueError("give at least one run folder")
    summaries = [load_summary(d) for d in run_dirs]
    if names is None:
        names = [s.get("config", {}).get("model_name") or Path(d).name for s, d in zip(summaries, run_dirs)]
    if len(names) != len(run_dirs):
        raise ValueError(f"got {len(names)} names for {len(run_dirs)} run folders")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "comparison.md", out / "comparison.png", out / "comparison.json"]
    markdown = render_comparison(summaries, names)
    versus = _against_reference(run_dirs, reference, seed=seed) if reference is not None else None
    if versus is not None:
        markdown += "\n" + "\n".join(robustness_report.comparison_section(versus, names, Path(reference).name))
    paths[0].write_text(markdown, encoding="utf-8")
    plot_comparison(summaries, names, paths[1])
    headline = {n: {"clean": s["average"].get("clean"), "levels": s["average"]["levels"],
                    "run": str(d)} for n, s, d in zip(names, summaries, run_dirs)}
    if versus is not None:
        for n, v in zip(names, versus):
            headline[n]["versus_reference"] = {"reference": str(reference), **v}
    paths[2].write_text(json.dumps(headline, indent=2) + "\n", encoding="utf-8")
    return paths


def _against_reference(run_dirs: Sequence[str | Path], reference: str | Path, *, seed: int) -> list[dict[str, Any]]:
    from roma.eval.records import read_records
    from roma.eval.robustness import compare_runs

    def records(run: str | Path) -> list[dict[str, Any]]:
        path = Path(run) / "records.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; mCE and Δ intervals need each run's records")
        return read_records(path)

    ref = records(reference)
    return [compare_runs(records(run), ref, seed=seed) for run in run_dirs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="roma report", description="Put several 'roma eval' runs side by side: one table and one plot."
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output folders of 'roma eval'")
    parser.add_argument("--names", nargs="+", help="label per run (default: each run's model name)")
    parser.add_argument("--out", required=True, help="folder for comparison.md / .png / .json")
    parser.add_argument("--reference", metavar="RUN_DIR",
                        help="run to normalise by: adds mCE, relative mCE and paired bootstrap Δ intervals per run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    args = parser.parse_args(argv)
    from roma.preflight import check_writable_dir

    try:
        check_writable_dir(args.out)
        paths = compare(args.runs, args.out, names=args.names, reference=args.reference, seed=args.seed)
    except (FileNotFoundError, ValueError) as error:
        print(f"roma report: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
