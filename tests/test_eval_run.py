"""End-to-end evaluation with the tiny Qwen3-VL: identical degraded pixels across models and batch sizes,
resume without recomputation, skipped corrupt rows, the LLM judge inside a run, ``roma eval`` and
``roma report``."""

from __future__ import annotations

import hashlib
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from roma.degrade import SEEN, UNSEEN, degrade, derive_seed
from roma.eval import JudgeUnavailableError, OpenAIJudge, evaluate, make_view
from roma.eval.cli import main as eval_main
from roma.eval.generation import HFGenerator
from roma.eval.protocol import Condition
from roma.eval.records import read_records
from roma.eval.report import main as report_main
from roma.models import build_tiny_qwen3vl, load_model_and_processor

N_CONDITIONS = 1 + len(SEEN) + len(UNSEEN)  # clean + every type at one level


class Spy:
    """Wraps a generator; records a hash of every image it is given and counts the items."""

    def __init__(self, inner, fail_after_batches=None):
        self.inner, self.fail_after, self.hashes, self.batches = inner, fail_after_batches, [], 0

    def __call__(self, prompts, images):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.batches += 1
        self.hashes += [hashlib.sha256(np.asarray(im).tobytes()).hexdigest() for im in images]
        return self.inner(prompts, images)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, processor = load_model_and_processor(tiny_model_dir)
    return HFGenerator(model, processor, max_new_tokens=8)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A second tiny model (different weights and tokenizer seed), to compare the pixels two models see."""
    from roma.data.synthetic import tokenizer_corpus

    folder = build_tiny_qwen3vl(tmp_path_factory.mktemp("other"), seed=1, corpus=tokenizer_corpus(seed=1, n=100))
    model, processor = load_model_and_processor(folder)
    return HFGenerator(model, processor, max_new_tokens=8)


def test_make_view_is_the_seeded_degradation():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    view, params = make_view(image, Condition("seen", "jpeg", 3), seed=7, example_id="ex-1")
    expected = degrade(image, "jpeg", 3, seed=derive_seed(7, "ex-1", "jpeg", 3))
    assert np.array_equal(np.asarray(view), expected) and params == {"quality": 7}
    noisy_a, _ = make_view(image, Condition("seen", "gaussian_noise", 3), seed=7, example_id="ex-1")
    noisy_b, _ = make_view(image, Condition("seen", "gaussian_noise", 3), seed=7, example_id="ex-2")
    assert not np.array_equal(np.asarray(noisy_a), np.asarray(noisy_b))  # the example id enters the seed
    clean, params = make_view(image, Condition("clean", "none", 0), seed=7, example_id="ex-1")
    assert np.array_equal(np.asarray(clean), np.asarray(image)) and params == {}


def test_same_pixels_for_every_model_and_batch_size(tiny, other_model, tmp_path):
    spies = [Spy(tiny), Spy(other_model), Spy(tiny)]
    runs = [evaluate(None, ["synthetic"], limit=3, batch_size=bs, generator=spy, out_dir=tmp_path / f"r{i}",
                     progress=False, report=False, seed=5)
            for i, (spy, bs) in enumerate(zip(spies, (4, 3, 1)))]
    assert spies[0].hashes == spies[1].hashes == spies[2].hashes
    assert len(spies[0].hashes) == 3 * N_CONDITIONS and len(set(spies[0].hashes)) == 3 * N_CONDITIONS
    assert (spies[0].batches, spies[1].batches, spies[2].batches) == (8, 10, 30)  # ceil(30 / bs)
    params = [[(r["id"], r["type"], r["params"]) for r in read_records(tmp_path / f"r{i}" / "records.jsonl")]
              for i in range(3)]
    assert params[0] == params[1] == params[2]
    assert all(run["counts"] == {"records": 30, "generated": 30, "reused": 0, "skipped_examples": {"synthetic": 0},
                                "regenerated": {"other_run": 0, "changed_row": 0}}
               for run in runs)


def test_interrupted_run_resumes_without_recomputing(tiny, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        evaluate(None, ["synthetic"], limit=2, batch_size=3, generator=Spy(tiny, fail_after_batches=4),
                 out_dir=out, progress=False, report=False)
    assert len(read_records(out / "records.jsonl")) == 12  # 4 batches of 3 were written before the stop
    spy = Spy(tiny)
    summary = evaluate(None, ["synthetic"], limit=2, batch_size=3, generator=spy, out_dir=out, progress=False,
                       report=False)
    assert len(spy.hashes) == 2 * N_CONDITIONS - 12  # only the missing 8 items were generated
    assert summary["counts"]["reused"] == 12 and summary["counts"]["generated"] == 8
    records = read_records(out / "records.jsonl")
    assert len(records) == 2 * N_CONDITIONS
    spy = Spy(tiny)  # a third run has nothing left to do
    evaluate(None, ["synthetic"], limit=2, batch_size=3, generator=spy, out_dir=out, progress=False, report=False)
    assert spy.batches == 0
    with pytest.raises(ValueError, match=r"holds records of a different run \(\{'seed': \(0, 1\)\}"):
        evaluate(None, ["synthetic"], limit=2, generator=spy, out_dir=out, seed=1, progress=False)


def test_corrupt_rows_are_skipped_and_counted(tiny, tmp_path):
    def png(c):
        import io

        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (c, 0, 0)).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    rows = [{"image": png(10), "question": "How many cars?", "answer": "2"},
            {"image": {"bytes": b"\x89PNG broken", "path": None}, "question": "Is it red?", "answer": "Yes"},
            {"image": png(200), "question": "Is it red?", "answer": "Yes"},
            {"image": png(90), "question": "Is it blue?", "answer": "No"},
            {"image": png(120), "question": "", "answer": "No"},  # no question: skipped by the loader
            {"image": png(150), "question": "Is it green?", "answer": "No"}]
    rows += [{"image": png(c), "question": "How many cars?", "answer": "1"} for c in (20, 30, 40, 50)]
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "realworldqa"))
    summary = evaluate(None, [str(tmp_path / "realworldqa")], settings=("clean", "seen"), generator=tiny,
                       out_dir=tmp_path / "out", progress=False, report=False)
    assert summary["skipped"]["realworldqa"] == [{"id": "realworldqa-1", "reason": "missing or corrupt image"},
                                                 {"id": "realworldqa-4", "reason": "question: field 'question' is empty"}]
    assert summary["counts"]["skipped_examples"] == {"realworldqa": 2}  # 2 of 10 rows: within the 20 % allowed
    assert summary["benchmarks"]["realworldqa"]["n_examples"] == 8
    assert summary["counts"]["records"] == 8 * (1 + len(SEEN))
    assert summary["data"]["realworldqa"] == {"origin": str(tmp_path / "realworldqa"), "split": "test", "rows": 10,
                                              "loaded": 8}
    assert summary["official"]["realworldqa"]["clean"]["n"] == 8


def test_llm_judge_in_a_run_keeps_records_when_the_judge_dies(tiny, tmp_path):
    from test_eval_judge import FakeServer, reply

    out = tmp_path / "judged"
    verdict = reply('{"extracted": "3", "correct": true}')
    # 1 clean + 4 seen items in batches of 4: the first batch gets its 4 verdicts, then the server only
    # answers 503, so the second batch (1 item) fails after the retries
    with FakeServer([verdict] * 4 + [(503, {"error": "gone"})]) as server:
        judge = OpenAIJudge(server.url, "judge-model", max_retries=2, backoff=0.0)
        with pytest.raises(JudgeUnavailableError, match="failed 3 time"):
            evaluate(None, ["synthetic"], limit=1, settings=("clean", "seen"), batch_size=4, generator=tiny,
                     judge=judge, out_dir=out, progress=False, report=False)
    kept = read_records(out / "records.jsonl")
    assert len(kept) == 4 and all(r["correct"] and r["judge"] == "openai:judge-model" for r in kept)
    with FakeServer([verdict]) as server:
        summary = evaluate(None, ["synthetic"], limit=1, settings=("clean", "seen"), batch_size=4, generator=tiny,
                           judge=OpenAIJudge(server.url, "judge-model"), out_dir=out, progress=False, report=False)
    assert len(server.requests) == 1  # only the one missing record was judged
    assert summary["counts"] == {"records": 5, "generated": 1, "reused": 4, "skipped_examples": {"synthetic": 0},
                                  "regenerated": {"other_run": 0, "changed_row": 0}}
    assert summary["average"]["clean"]["acc"] == 1.0


def test_roma_eval_and_roma_report_end_to_end(tiny_model_dir, tmp_path, capsys):
    runs = []
    for name, seed in (("base", 0), ("other", 1)):
        out = tmp_path / name
        code = eval_main(["--model", str(tiny_model_dir), "--data", "synthetic", "--limit", "8", "--levels", "3",
                          "--batch-size", "8", "--max-new-tokens", "12", "--out", str(out), "--seed", str(seed),
                          "--name", name, "--no-progress"])
        assert code == 0
        for f in ("run.json", "records.jsonl", "summary.json", "report.md", "eval-levels.png", "eval-settings.png"):
            assert (out / f).stat().st_size > 0, f
        records = read_records(out / "records.jsonl")
        assert len(records) == 8 * N_CONDITIONS
        assert set(records[0]) >= {"id", "benchmark", "task", "setting", "type", "level", "params", "completion",
                                   "extracted", "correct"}
        summary = json.loads((out / "summary.json").read_text())
        level3 = summary["benchmarks"]["synthetic"]["levels"]["3"]
        assert level3["seen"]["types"] == len(SEEN) and level3["unseen"]["types"] == len(UNSEEN)
        report = (out / "report.md").read_text()
        assert "| synthetic | 8 |" in report and "**Average** (1)" in report and "posterize (U)" in report
        with Image.open(out / "eval-levels.png") as im:
            assert im.size[0] > 300
        runs.append(out)
    assert "average over 1 dataset(s), level 3: clean" in capsys.readouterr().out

    assert report_main([str(runs[0]), str(runs[1]), "--out", str(tmp_path / "cmp")]) == 0
    comparison = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| base | 1 |" in comparison and "| other | 1 |" in comparison and "## Unseen" in comparison
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 0
    assert report_main([str(runs[0]), "--names", "a", "b", "--out", str(tmp_path / "x")]) == 2
    assert report_main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


def test_cli_argument_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--model", "m", "--data", "synthetic", "--judge", "openai"])
    assert exit_info.value.code == 2 and "--judge openai needs --judge-url and --judge-model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_main(["--model", "m", "--data", "synthetic", "--judge-url", "http://x/v1"])
    assert "need --judge openai" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_main(["--model", "m", "--data", "synthetic", "--levels", "4"])
    out = tmp_path / "never"
    assert eval_main(["--model", str(tmp_path), "--data", "nonexistent-benchmark", "--out", str(out), "--no-progress"]) == 2
    assert not out.exists()
    assert "is neither a benchmark name" in capsys.readouterr().err


def test_roma_eval_names_the_benchmark_and_split_of_a_local_copy(tiny_model_dir, tmp_path, capsys):
    """``--data NAME=PATH --split S`` on the HuggingFaceM4 ChartQA folder (train / val / test shards)."""
    from test_bench_fixtures import FIXTURES

    out = tmp_path / "m4"
    assert eval_main(["--model", str(tiny_model_dir), "--data", f"chartqa={FIXTURES / 'chartqa' / 'ChartQA-M4'}",
                      "--split", "val", "--settings", "clean", "--max-new-tokens", "4", "--out", str(out),
                      "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["splits"] == ["val"]
    assert summary["data"]["chartqa"]["split"] == "val" and summary["data"]["chartqa"]["rows"] == 2
    assert summary["benchmarks"]["chartqa"]["n_examples"] == 2
    assert summary["official"]["chartqa"]["metric"] == "relaxed accuracy (5 %)"
    assert summary["official"]["chartqa"]["clean"]["n"] == 2
    report = (out / "report.md").read_text()
    assert "## Official metrics" in report and "| chartqa | relaxed accuracy (5 %) |" in report
    capsys.readouterr()
    # a row without a question is skipped, listed on the console and in the report, and the run goes on
    empty = tmp_path / "lv"
    assert eval_main(["--model", str(tiny_model_dir), "--data",
                      f"logicvista={FIXTURES / 'logicvista' / 'logicvista-with-empty-row.parquet'}", "--limit", "9",
                      "--settings", "clean", "--max-new-tokens", "2", "--out", str(empty), "--no-progress"]) == 0
    assert ("roma eval: logicvista: skipped 1 of 9 row(s): logicvista-v1_382 (question: field 'question' is empty)"
            in capsys.readouterr().err)
    assert "- logicvista: 1 example(s) skipped of 9 rows: `logicvista-v1_382` (question: field 'question' is empty)" \
        in (empty / "report.md").read_text()
    assert eval_main(["--model", "m", "--data", "synthetic", "mathvista", "--split", "a", "b", "c"]) == 2
    assert "give one split for all datasets or one per dataset: 3 splits for 2 datasets" in capsys.readouterr().err
