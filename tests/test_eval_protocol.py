"""The protocol's aggregation (method.md §9) on hand-made records with hand-computed numbers, and the
records file (append-only, resume, interrupted tail)."""

from __future__ import annotations

import json
import math

import pytest

from roma.eval.protocol import CLEAN, Condition, aggregate, conditions
from roma.eval.records import append_records, read_records, record_key, repair_tail


def rec(bench, ex, setting, typ, level, correct, task="t"):
    return {"benchmark": bench, "id": ex, "task": task, "setting": setting, "type": typ, "level": level,
            "params": {}, "answer": "1", "answer_type": "number", "completion": "", "extracted": None,
            "correct": bool(correct), "judge": "rule"}


def make_records():
    r = []
    # Benchmark A, 4 examples. clean: 1 1 1 0
    for ex, c in zip("1234", [1, 1, 1, 0]):
        r.append(rec("A", f"a{ex}", "clean", "none", 0, c))
    # seen L3: t1 on a1..a4 = 1 0 1 0; t2 on a1..a3 only = 1 1 0 (a4 missing, so macro != micro)
    for ex, c in zip("1234", [1, 0, 1, 0]):
        r.append(rec("A", f"a{ex}", "seen", "t1", 3, c))
    for ex, c in zip("123", [1, 1, 0]):
        r.append(rec("A", f"a{ex}", "seen", "t2", 3, c))
    # seen L1: t1 all correct
    for ex in "1234":
        r.append(rec("A", f"a{ex}", "seen", "t1", 1, 1))
    # unseen L3: u1 0000, u2 1111, u3 1000
    for typ, outs in (("u1", [0, 0, 0, 0]), ("u2", [1, 1, 1, 1]), ("u3", [1, 0, 0, 0])):
        for ex, c in zip("1234", outs):
            r.append(rec("A", f"a{ex}", "unseen", typ, 3, c))
    # Benchmark B, 2 examples. clean 1 0; seen t1 0 0, t2 1 0; unseen u1 0 1, u2 0 0, u3 0 0
    for ex, c in zip("12", [1, 0]):
        r.append(rec("B", f"b{ex}", "clean", "none", 0, c, task="x" if ex == "1" else "y"))
    for typ, setting, outs in (("t1", "seen", [0, 0]), ("t2", "seen", [1, 0]), ("u1", "unseen", [0, 1]),
                               ("u2", "unseen", [0, 0]), ("u3", "unseen", [0, 0])):
        for ex, c in zip("12", outs):
            r.append(rec("B", f"b{ex}", setting, typ, 3, c, task="x" if ex == "1" else "y"))
    return r


def test_aggregate_by_hand():
    s = aggregate(make_records())
    a, b = s["benchmarks"]["A"], s["benchmarks"]["B"]

    # A clean: mean 3/4; sample std of (1,1,1,0) is 0.5 -> se 0.5 / sqrt(4) = 0.25
    assert a["clean"] == {"acc": 0.75, "se": pytest.approx(0.25), "n": 4}
    # A seen L3: t1 = 2/4, t2 = 2/3 -> macro (1/2 + 2/3) / 2 = 7/12 (pooling all 7 records would give 4/7)
    seen = a["levels"]["3"]["seen"]
    assert seen["acc"] == pytest.approx(7 / 12) and seen["types"] == 2
    # se over the 3 examples scored under both types: per-example means (1, 1/2, 1/2), std sqrt(1/12)
    assert seen["n"] == 3 and seen["se"] == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
    # gap = 3/4 - 7/12 = 1/6; paired differences (0, 1/2, 1/2) have std sqrt(1/12)
    gap = a["levels"]["3"]["gap_seen"]
    assert gap["value"] == pytest.approx(1 / 6) and gap["se"] == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
    # A unseen L3: (0 + 1 + 1/4) / 3 = 5/12; per-example means (2/3, 1/3, 1/3, 1/3)
    unseen = a["levels"]["3"]["unseen"]
    assert unseen["acc"] == pytest.approx(5 / 12) and unseen["types"] == 3 and unseen["n"] == 4
    # deviations from 5/12: (1/4, -1/12, -1/12, -1/12); squares sum to 1/12; / (n-1) = 1/36 -> std 1/6
    assert unseen["se"] == pytest.approx((1 / 6) / math.sqrt(4))
    assert a["levels"]["3"]["gap_unseen"]["value"] == pytest.approx(0.75 - 5 / 12)
    # A seen L1 has a single type
    assert a["levels"]["1"]["seen"]["acc"] == 1.0 and a["levels"]["1"]["seen"]["types"] == 1
    assert "unseen" not in a["levels"]["1"]
    # per-type breakdown
    assert a["types"]["seen"]["t2"]["3"] == {"acc": pytest.approx(2 / 3), "se": pytest.approx(math.sqrt(1 / 3) / math.sqrt(3)), "n": 3}
    assert a["types"]["seen"]["t1"]["1"]["acc"] == 1.0

    # B: clean 1/2 (se = std(1,0)/sqrt 2 = 0.5); seen (0 + 1/2)/2 = 1/4; unseen (1/2 + 0 + 0)/3 = 1/6
    assert b["clean"]["acc"] == 0.5 and b["clean"]["se"] == pytest.approx(0.5)
    assert b["levels"]["3"]["seen"]["acc"] == pytest.approx(0.25)
    assert b["levels"]["3"]["unseen"]["acc"] == pytest.approx(1 / 6)
    assert b["levels"]["3"]["gap_seen"]["value"] == pytest.approx(0.25)
    assert b["tasks"]["x"]["clean"]["acc"] == 1.0 and b["tasks"]["y"]["clean"]["acc"] == 0.0

    # headline: plain mean over benchmarks; se = sqrt(se_A^2 + se_B^2) / 2
    avg = s["average"]
    assert avg["clean"]["acc"] == pytest.approx((0.75 + 0.5) / 2)
    assert avg["clean"]["se"] == pytest.approx(math.sqrt(0.25**2 + 0.5**2) / 2) and avg["clean"]["n"] == 2
    assert avg["levels"]["3"]["seen"]["acc"] == pytest.approx((7 / 12 + 1 / 4) / 2)
    assert avg["levels"]["3"]["unseen"]["acc"] == pytest.approx((5 / 12 + 1 / 6) / 2)
    assert avg["levels"]["3"]["gap_seen"]["value"] == pytest.approx((1 / 6 + 1 / 4) / 2)
    assert avg["levels"]["3"]["gap_unseen"]["value"] == pytest.approx(((0.75 - 5 / 12) + (0.5 - 1 / 6)) / 2)
    assert avg["levels"]["1"]["seen"] == {"acc": 1.0, "se": 0.0, "n": 1}  # only A has level 1
    assert avg["types"]["seen"]["t1"]["3"]["acc"] == pytest.approx((0.5 + 0.0) / 2)
    assert avg["types"]["unseen"]["u1"]["3"]["acc"] == pytest.approx((0.0 + 0.5) / 2)


def test_conditions_pools_and_errors():
    from roma.degrade import SEEN, UNSEEN

    conds = conditions(("clean", "seen", "unseen"), (3,))
    assert conds[0] == CLEAN == Condition("clean", "none", 0)
    assert [c.type for c in conds[1:]] == list(SEEN) + list(UNSEEN)
    assert {c.level for c in conds[1:]} == {3}
    assert len(conditions(("seen",), (1, 3))) == 2 * len(SEEN)
    with pytest.raises(ValueError, match=r"settings must be a non-empty subset of \['clean', 'seen', 'unseen'\]"):
        conditions(("dirty",), (3,))
    with pytest.raises(ValueError, match=r"levels must be a non-empty subset of \[1, 2, 3\], got \[4\]"):
        conditions(("seen",), (4,))


def test_records_roundtrip_resume_and_interrupted_tail(tmp_path):
    path = tmp_path / "records.jsonl"
    recs = make_records()[:5]
    assert append_records(path, recs[:3]) == 3
    assert append_records(path, recs[3:]) == 2
    back = read_records(path)
    assert back == recs and [record_key(r) for r in back][0] == ("A", "a1", "clean", "none", 0)

    # a write cut in the middle of a line is removed on the next read (and only that line)
    with path.open("a") as f:
        f.write(json.dumps(make_records()[5])[:20])
    with pytest.warns(UserWarning, match="removed a partial last record"):
        assert read_records(path) == recs
    assert repair_tail(path) == 0 and path.read_text().endswith("\n")

    # a malformed line that is not the last, or a repeated key, is an error
    append_records(path, [recs[0]])
    with pytest.raises(ValueError, match=r"records.jsonl:6: repeated record key \('A', 'a1', 'clean', 'none', 0\)"):
        read_records(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{oops", *lines[1:5]]) + "\n")
    with pytest.raises(ValueError, match=r"records.jsonl:2: not a JSON record"):
        read_records(path)
