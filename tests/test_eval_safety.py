"""A result on disk is the result of the command that wrote it: the output folder's lock (two real processes),
records stamped with the run's identity and their row's content, zero-work runs refused, skipped and
regenerated rows said on the console."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import datasets
import pytest
from PIL import Image

from roma.data.synthetic import load_split
from roma.eval import evaluate
from roma.eval.cli import console_notes
from roma.eval.cli import main as eval_main
from roma.eval.records import read_records
from roma.eval.runlock import LOCK_FILE, model_fingerprint, row_digest

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from roma.eval import evaluate

    release = Path(sys.argv[2])

    def generator(prompts, images):  # holds the run (and its lock) until the test releases it
        while not release.exists():
            time.sleep(0.05)
        return ["\\\\boxed{1}"] * len(prompts)

    evaluate(None, ["synthetic"], limit=1, settings=["clean"], generator=generator, out_dir=sys.argv[1],
             progress=False, report=False)
    """
)


def _start_holder(out: Path, release: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(release)], env=dict(os.environ),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lock = out / LOCK_FILE
        if lock.exists() and lock.read_text().strip() == f"pid {process.pid}":
            return process
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the first run never took the lock")


def _stub(prompts, images):
    return ["<think>x</think>\\boxed{1}"] * len(prompts)


SECOND = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import roma.cli, roma.eval.cli, roma.eval.runner  # imported while the first run starts

    go = Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.05)
    sys.exit(roma.cli.main(sys.argv[2:]))
    """
)


def test_second_run_into_a_locked_out_dir_fails_and_a_killed_run_frees_it(tmp_path):
    out, release, go = tmp_path / "out", tmp_path / "release", tmp_path / "go"
    model = tmp_path / "model"
    model.mkdir()
    argv = ["eval", "--model", str(model), "--data", "synthetic", "--limit", "1", "--settings", "clean", "--out",
            str(out), "--no-progress"]
    second = subprocess.Popen([sys.executable, "-c", SECOND, str(go), *argv], env=dict(os.environ),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = _start_holder(out, release)
    try:
        go.touch()
        _, err = second.communicate(timeout=300)
        assert first.poll() is None  # the first run still holds the folder
        assert second.returncode == 2
        assert err.strip() == (f"roma eval: {out} is in use by another run (pid {first.pid}); wait for it to finish or "
                               "use another --out")
    finally:
        second.kill()
        first.send_signal(signal.SIGKILL)  # kill -9 while holding the lock: the kernel releases it
        first.wait(timeout=60)
    summary = evaluate(None, ["synthetic"], limit=1, settings=["clean"], generator=_stub, out_dir=out,
                       progress=False, report=False)
    assert summary["counts"]["generated"] == 1
    assert len(read_records(out / "records.jsonl")) == 1  # written once


def test_records_carry_the_run_identity_and_another_model_is_refused(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "out"
    run = dict(limit=2, settings=["clean"], generator=_stub, out_dir=out, progress=False, report=False)
    summary = evaluate(model, ["synthetic"], **run)
    run_id, model_hash = summary["config"]["run_id"], summary["config"]["model_hash"]
    assert model_hash == model_fingerprint(model) and len(model_hash) == 16
    records = read_records(out / "records.jsonl")
    assert len(records) == 2 and {r["run"] for r in records} == {run_id}
    assert evaluate(model, ["synthetic"], **run)["counts"]["reused"] == 2

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    with pytest.raises(ValueError, match=r"holds records of a different run \(\{'model': "):
        evaluate(other, ["synthetic"], **run)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")  # retrained in place: same path, other weights
    with pytest.raises(ValueError, match=rf"\{{'model_hash': \('{model_hash}', '[0-9a-f]{{16}}'\)\}}"):
        evaluate(model, ["synthetic"], **run)
    assert (tmp_path / "other" / "model.safetensors").exists() and len(read_records(out / "records.jsonl")) == 2


def test_unstamped_records_are_regenerated(tmp_path):
    out = tmp_path / "out"
    run = dict(limit=2, settings=["clean"], generator=_stub, out_dir=out, progress=False, report=False)
    evaluate(None, ["synthetic"], **run)
    lines = (out / "records.jsonl").read_text().splitlines()
    legacy = json.loads(lines[0])
    del legacy["run"]  # written by another run (or before records were stamped)
    (out / "records.jsonl").write_text("\n".join([json.dumps(legacy), lines[1]]) + "\n")
    summary = evaluate(None, ["synthetic"], **run)
    assert summary["counts"]["regenerated"] == {"other_run": 1, "changed_row": 0}
    assert (summary["counts"]["generated"], summary["counts"]["reused"]) == (1, 1)
    assert console_notes(summary, "OUT") == ["1 record(s) of an earlier run without this run's identity dropped and "
                                             "generated again"]
    assert all("run" in r for r in read_records(out / "records.jsonl"))


def test_changed_rows_are_regenerated(tmp_path):
    data = load_split("test", 3)
    out = tmp_path / "out"
    calls = []

    def counting(prompts, images):
        calls.append(len(prompts))
        return _stub(prompts, images)

    run = dict(settings=["clean", "seen"], levels=[3], generator=counting, out_dir=out, progress=False, report=False)
    first = evaluate(None, [("toy", data)], **run)
    per_example = first["counts"]["records"] // 3
    rows = data.to_list()
    rows[1]["answer"] = rows[1]["answer"] + "0"  # a corrected answer
    image = Image.open(io.BytesIO(rows[2]["image"]["bytes"])).convert("RGB")  # one pixel of the image changed
    image.putpixel((0, 0), tuple(255 - v for v in image.getpixel((0, 0))))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    rows[2]["image"] = {"bytes": encoded.getvalue(), "path": None}
    changed = datasets.Dataset.from_list(rows, features=data.features)
    before, after = [row_digest(r) for r in data.to_list()], [row_digest(r) for r in changed.to_list()]
    assert before[0] == after[0] and before[1] != after[1] and before[2] != after[2]
    calls.clear()
    summary = evaluate(None, [("toy", changed)], **run)
    assert sum(calls) == 2 * per_example
    assert summary["counts"]["regenerated"] == {"other_run": 0, "changed_row": 2 * per_example}
    assert (summary["counts"]["generated"], summary["counts"]["reused"]) == (2 * per_example, per_example)
    records = read_records(out / "records.jsonl")  # no repeated key: the stale records were dropped
    assert len(records) == 3 * per_example
    assert {r["answer"] for r in records if r["id"] == rows[1]["id"]} == {rows[1]["answer"]}
    assert console_notes(summary, "OUT") == [f"{2 * per_example} record(s) generated again: their rows changed "
                                             "since they were written"]


def test_zero_work_runs_are_errors(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for limit in ("0", "-2"):
        assert eval_main(["--model", str(model), "--data", "synthetic", "--limit", limit, "--out", str(tmp_path / "o"),
                          "--no-progress"]) == 2
        assert capsys.readouterr().err == (f"roma eval: limit must be an int >= 1 (or unset: every row), got {limit}; a "
                                           "run of 0 rows measures nothing\n")
    empty = load_split("test", 2).select([])
    with pytest.raises(ValueError, match=r"nothing to evaluate: no usable row in toy \(0 row\(s\) skipped"):
        evaluate(None, [("toy", empty)], generator=_stub, progress=False)


def test_missing_model_folder(tmp_path, capsys):
    assert eval_main(["--model", str(tmp_path / "runs" / "final"), "--data", "synthetic", "--out",
                      str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"roma eval: model folder '{tmp_path / 'runs' / 'final'}' does not exist\n"


def test_console_says_skipped_and_changed_rows(tiny_model_dir, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(images / "red.png")
    (images / "broken.png").write_bytes(b"\x89PNG broken")
    rows = [{"query": f"How many bars are there in chart {i}?", "label": str(i), "image": str(images / "red.png")}
            for i in range(4)]  # 1 unusable row in 5: within the loader's 20 % allowance
    rows.append({"query": "Which is tallest?", "label": "B", "image": str(images / "broken.png")})
    data = tmp_path / "chartqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model_dir), "--data", str(data), "--settings", "clean", "--max-new-tokens", "4",
            "--out", str(out), "--no-progress"]
    assert eval_main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"1 row(s) skipped (see {out}/report.md and {out}/summary.json)"
    rows[0]["label"] = "3"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert eval_main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == ["1 record(s) generated again: their rows changed since they were written",
                           f"1 row(s) skipped (see {out}/report.md and {out}/summary.json)"]
