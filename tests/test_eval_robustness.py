"""roma.eval.robustness on hand-made records (hand-computed values), and its hooks in eval / report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roma.eval.protocol import aggregate, conditions
from roma.eval.records import append_records
from roma.eval.report import main as report_main
from roma.eval.robustness import (
    accuracies,
    answer_flips,
    compare_runs,
    corruption_errors,
    outcomes,
    paired_bootstrap,
    relative_robustness,
    robustness_summary,
    worst_type,
)


def _records(table, benchmark="b", setting="imagenet-c"):
    """``{(type, level): [0/1 per example e1..eN]}`` with ``("none", 0)`` for clean -> records."""
    out = []
    for (name, level), values in table.items():
        for i, value in enumerate(values, start=1):
            out.append({"benchmark": benchmark, "id": f"e{i}", "task": "t", "setting": "clean" if level == 0 else setting,
                        "type": name, "level": level, "params": {}, "answer": "A", "answer_type": "choice",
                        "completion": "", "extracted": "", "correct": bool(value), "judge": "rule"})  # fmt: skip
    return out


RUN = {("none", 0): [1, 1, 0, 1], ("fog", 1): [1, 0, 1, 1], ("fog", 3): [0, 0, 0, 1], ("jpeg", 3): [1, 1, 0, 0]}
REFERENCE = {("none", 0): [1, 1, 0, 0], ("fog", 1): [1, 0, 1, 0], ("fog", 3): [0, 0, 0, 0], ("jpeg", 3): [0, 0, 0, 0]}


def test_accuracies_relative_robustness_and_worst_type():
    clean, degraded = accuracies(outcomes(_records(RUN))["b"])
    assert clean == 0.75 and degraded == {("fog", 1): 0.75, ("fog", 3): 0.25, ("jpeg", 3): 0.5}
    rel = relative_robustness(clean, degraded)
    assert rel["per_corruption"] == pytest.approx({"fog@1": 1.0, "fog@3": 1 / 3, "jpeg@3": 2 / 3})
    assert rel["mean"] == pytest.approx(2 / 3)  # (1 + 1/3 + 2/3) / 3
    assert worst_type(degraded) == {"1": {"type": "fog", "acc": 0.75}, "3": {"type": "fog", "acc": 0.25}}
    assert np.isnan(relative_robustness(0.0, degraded)["mean"])


def test_the_same_pixels_under_two_settings_count_once():
    records = _records(RUN) + _records({("fog", 1): [0, 1, 0, 0]}, setting="all")  # read after: ignored
    assert accuracies(outcomes(records)["b"])[1][("fog", 1)] == 0.75


def test_answer_flips_by_hand():
    flips = answer_flips(outcomes(_records(RUN))["b"])
    # clean 1 1 0 1; fog@1 1 0 1 1: e2 right→wrong, e3 wrong→right
    assert flips["fog@1"] == {"n": 4, "right_to_wrong": 1, "wrong_to_right": 1, "right_to_wrong_rate": 0.25,
                              "wrong_to_right_rate": 0.25, "right_to_wrong_of_right": pytest.approx(1 / 3),
                              "wrong_to_right_of_wrong": 1.0}  # fmt: skip
    assert (flips["fog@3"]["right_to_wrong"], flips["fog@3"]["wrong_to_right"]) == (2, 0)  # e1, e2
    assert (flips["jpeg@3"]["right_to_wrong"], flips["jpeg@3"]["wrong_to_right"]) == (1, 0)  # e4


def test_mce_and_relative_mce_against_a_reference_by_hand():
    clean, degraded = accuracies(outcomes(_records(RUN))["b"])
    ref_clean, ref_degraded = accuracies(outcomes(_records(REFERENCE))["b"])
    result = corruption_errors(clean, degraded, ref_clean, ref_degraded)
    # fog: errors (0.25 + 0.75) / reference (0.5 + 1.0) = 2/3; jpeg: 0.5 / 1.0
    assert result["ce"] == pytest.approx({"fog": 2 / 3, "jpeg": 0.5})
    assert result["mce"] == pytest.approx(7 / 12)
    # relative: fog ((0.25 − 0.25) + (0.75 − 0.25)) / ((0.5 − 0.5) + (1.0 − 0.5)) = 1; jpeg (0.5 − 0.25) / (1 − 0.5)
    assert result["relative_ce"] == pytest.approx({"fog": 1.0, "jpeg": 0.5})
    assert result["relative_mce"] == pytest.approx(0.75)
    # against itself every CE is 1; a reference without errors leaves the type out (nan)
    assert corruption_errors(clean, degraded, clean, degraded)["mce"] == pytest.approx(1.0)
    perfect = corruption_errors(clean, degraded, 1.0, {c: 1.0 for c in degraded})
    assert np.isnan(perfect["ce"]["fog"]) and np.isnan(perfect["mce"])


def test_paired_bootstrap_matches_a_plain_loop_and_is_seeded():
    rng = np.random.default_rng(0)
    a = {(f"e{i}", c): float(rng.random() < 0.7) for i in range(30) for c in ("x", "y")}
    b = {(f"e{i}", c): float(rng.random() < 0.5) for i in range(30) for c in ("x", "y")}
    result = paired_bootstrap(a, b, cluster=lambda k: k[0], resamples=500, seed=3)
    assert result["delta"] == pytest.approx(np.mean([a[k] - b[k] for k in a]))
    assert (result["n"], result["clusters"]) == (60, 30)
    # the same resampling by a loop: clusters drawn with replacement, Δ over their items
    ids = list(dict.fromkeys(k[0] for k in a))
    draws = np.random.default_rng(3).integers(0, len(ids), size=(500, len(ids)))
    deltas = []
    for row in draws:
        diffs = [a[(ids[g], c)] - b[(ids[g], c)] for g in row for c in ("x", "y")]
        deltas.append(np.mean(diffs))
    assert [result["low"], result["high"]] == pytest.approx(list(np.quantile(deltas, [0.025, 0.975])))
    assert paired_bootstrap(a, b, cluster=lambda k: k[0], resamples=500, seed=3) == result
    assert paired_bootstrap(a, b, cluster=lambda k: k[0], resamples=500, seed=4) != result
    same = paired_bootstrap({1: 1.0, 2: 0.0}, {1: 0.0, 2: -1.0})  # every item differs by 1
    assert (same["delta"], same["low"], same["high"]) == (1.0, 1.0, 1.0)
    assert paired_bootstrap({1: 1.0}, {2: 1.0})["n"] == 0
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 1.5"):
        paired_bootstrap(a, b, confidence=1.5)


def test_summary_and_comparison_on_hand_made_runs():
    summary = robustness_summary(_records(RUN) + _records(RUN, benchmark="c"))
    avg = summary["average"]
    assert avg["clean"] == 0.75 and avg["relative_robustness"]["mean"] == pytest.approx(2 / 3)
    assert avg["families"] == {"imagenet-c": {"1": 0.75, "3": pytest.approx(0.375)}}  # fog 0.25 and jpeg 0.5
    assert summary["benchmarks"]["b"]["flip_totals"] == {"n": 12, "right_to_wrong": 4, "wrong_to_right": 1}
    assert avg["flip_totals"] == {"n": 24, "right_to_wrong": 8, "wrong_to_right": 2}
    versus = compare_runs(_records(RUN), _records(REFERENCE), resamples=200)
    assert versus["mce"]["average"]["mce"] == pytest.approx(7 / 12)
    assert versus["delta"]["clean"]["delta"] == pytest.approx(0.25)  # 0.75 − 0.5
    assert versus["delta"]["degraded"]["delta"] == pytest.approx((6 - 2) / 12)  # 6 vs 2 right of 12
    assert versus["delta"]["level_3"]["delta"] == pytest.approx((3 - 0) / 8)


def _write_run(folder, table, name):
    records = _records(table)
    folder.mkdir()
    append_records(folder / "records.jsonl", records)
    summary = aggregate(records)
    summary.update(robustness=robustness_summary(records), config={"model_name": name}, main_level=3)
    (folder / "summary.json").write_text(json.dumps(summary))


def test_roma_report_with_a_reference(tmp_path, capsys):
    _write_run(tmp_path / "base", REFERENCE, "base")
    _write_run(tmp_path / "roma", RUN, "roma")
    argv = [str(tmp_path / "base"), str(tmp_path / "roma"), "--out", str(tmp_path / "cmp"), "--reference",
            str(tmp_path / "base")]  # fmt: skip
    assert report_main(argv) == 0
    text = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Robustness against `base`" in text
    assert "| base | 1.000 | 1.000 | +0.0 [+0.0, +0.0] |" in text
    assert "| roma | 0.583 | 0.750 | +25.0 [" in text
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert data["roma"]["versus_reference"]["mce"]["average"]["relative_mce"] == pytest.approx(0.75)
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "summary.json").write_text((tmp_path / "base" / "summary.json").read_text())
    assert report_main([str(tmp_path / "roma"), "--out", str(tmp_path / "x"), "--reference", str(tmp_path / "bare")]) == 2
    assert "records.jsonl does not exist" in capsys.readouterr().err  # errors go to stderr


def test_eval_runs_any_pool_and_reports_robustness(tmp_path):
    from roma.eval.runner import evaluate

    assert [c.setting for c in conditions(("clean", "geometric"), (1,))] == ["clean"] + ["geometric"] * 3
    summary = evaluate(None, ["synthetic"], limit=2, settings=("clean", "geometric"), levels=(1, 3),
                       generator=lambda prompts, images: ["A"] * len(prompts), out_dir=tmp_path, progress=False)  # fmt: skip
    types = summary["benchmarks"]["synthetic"]["types"]
    assert sorted(types["geometric"]) == ["perspective", "resample", "rotate"]
    assert set(summary["robustness"]["average"]["families"]) == {"geometric"}
    assert set(summary["robustness"]["average"]["worst_type"]) == {"1", "3"}
    assert "## Robustness" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "eval-families.png").stat().st_size > 0
