"""Official benchmark metrics (roma.eval.official): each rule on hand-worked cases, and the run summary."""

from __future__ import annotations

import pytest

from roma.eval.official import (
    levenshtein,
    logicvista_correct,
    mathvista_correct,
    mmstar_correct,
    realworldqa_correct,
    relaxed_correct,
    report_lines,
    summarize,
    visualpuzzles_correct,
    wemath_correct,
    wemath_scores,
)


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3 and levenshtein("102", "102") == 0


def test_mathvista_answer_type_and_precision_rules():
    choice = {"question_type": "multi_choice", "answer_type": "text", "choices": ["97", "102", "107", "122"],
              "answer": "102"}
    assert mathvista_correct("B", "B", choice)
    assert mathvista_correct("(B) 102", "B", choice)  # "(B)" -> B -> "102"
    assert not mathvista_correct("(C) 102", "B", choice)  # the letter wins over the text
    assert mathvista_correct("103", "B", choice)  # not a letter: the most similar option (edit distance 1)
    integer = {"question_type": "free_form", "answer_type": "integer", "answer": "1000"}
    assert mathvista_correct("1000.0", "1000", integer) and mathvista_correct("1000.9", "1000", integer)  # int()
    assert not mathvista_correct("1,000", "1000", integer)  # float("1,000") fails: wrong
    float1 = {"question_type": "free_form", "answer_type": "float", "precision": 1, "answer": "1.2"}
    assert mathvista_correct("1.24", "1.2", float1) and not mathvista_correct("1.26", "1.2", float1)
    float2 = {"question_type": "free_form", "answer_type": "float", "precision": 2, "answer": "51.04"}
    assert mathvista_correct("51.039", "51.04", float2) and not mathvista_correct("51.0", "51.04", float2)
    listed = {"question_type": "free_form", "answer_type": "list", "answer": "[1, 2]"}
    assert mathvista_correct("[1, 2]", "[1, 2]", listed) and not mathvista_correct("[1,2]", "[1, 2]", listed)
    assert not mathvista_correct(None, "1000", integer)


def test_chartqa_relaxed_accuracy():
    assert relaxed_correct("14.5", "14")  # 3.6 % off
    assert not relaxed_correct("15", "14")  # 7.1 % off
    assert relaxed_correct("no", "No") and not relaxed_correct("green", "green line")
    assert relaxed_correct("80.2%", "0.8") and not relaxed_correct("80.2%", "80.2")  # "%" divides by 100
    assert relaxed_correct("0", "0") and not relaxed_correct("0.0", "0")  # a zero gold is compared as text
    assert not relaxed_correct(None, "14")


def test_wemath_row_rule_and_four_dimensions():
    assert wemath_correct("B", "B", {}) and wemath_correct("Answer: B.", "B", {}) and not wemath_correct("b", "B", {})
    assert not wemath_correct("", "B", {}) and not wemath_correct(None, "B", {})

    def rows(problem, steps, subs, multi):
        out = [(ok, {"ID": problem, "key": f"{steps}steps_{i + 1}"}) for i, ok in enumerate(subs)]
        return out + [(multi, {"ID": problem, "key": f"{steps}steps_multi"})]

    items = (rows("p1", 2, [True, True], True)  # complete mastery (strict and loose)
             + rows("p2", 2, [True, False], True)  # rote memorisation (strict); complete mastery (loose)
             + rows("p3", 2, [False, False], False)  # insufficient knowledge
             + rows("p4", 3, [True, True, True], False)  # inadequate generalisation
             + rows("p5", 3, [False, False, False], True)  # rote memorisation (strict and loose)
             + [(True, {"ID": "p6", "key": "2steps_1"})])  # no multi-step row: left out
    score, parts = wemath_scores(items)
    assert parts == {"score_loose": pytest.approx((5 - 0.5 - 1 - 1) / 5), "IK": 1, "IG": 1, "CM_strict": 1,
                     "CM_loose": 2, "RM_strict": 2, "RM_loose": 1, "n_problems": 5, "incomplete": 1}
    assert score == pytest.approx((5 - 0.5 * 1 - 2 - 1) / 5)  # (N - 0.5 IG - RM - IK) / N = 0.3


def test_letter_benchmarks():
    assert mmstar_correct("B", "B", {}) and mmstar_correct("(b) 74", "B", {})
    assert mmstar_correct("the answer is c", "C", {}) and mmstar_correct("Option D", "D", {})
    assert not mmstar_correct("74 (B)", "B", {}) and not mmstar_correct(None, "B", {})
    assert realworldqa_correct("(C)", "C", {}) and realworldqa_correct("C. Right", "C", {})
    assert realworldqa_correct("Two.", "two", {}) and not realworldqa_correct("2 pedestrians", "2", {})
    options = {"choices": ["32", "35", "37", "40"]}
    assert visualpuzzles_correct("C", "C", options) and visualpuzzles_correct("37", "C", options)
    assert not visualpuzzles_correct("I cannot tell", "C", options)  # never a random letter
    assert logicvista_correct("C, A", "A, C", {}) and logicvista_correct("A and C", "A, C", {})
    assert not logicvista_correct("A", "A, C", {}) and logicvista_correct("3", "3", {})
    assert logicvista_correct("Insufficient Information", "C", {"choices": ["True", "False",
                                                                           "Insufficient Information"]})


def record(benchmark, example_id, extracted, answer, correct, setting="clean", kind="none", level=0, task="t"):
    return {"benchmark": benchmark, "id": example_id, "task": task, "setting": setting, "type": kind,
            "level": level, "answer": answer, "extracted": extracted, "correct": correct}


def test_summarize_per_condition_and_pool():
    meta = {"chartqa": {"a": {"task": "human"}, "b": {"task": "augmented"}}}
    records = [record("chartqa", "a", "14.5", "14", False), record("chartqa", "b", "No", "no", True),
               record("chartqa", "a", "20", "14", False, "seen", "jpeg", 3),
               record("chartqa", "b", "no", "no", True, "seen", "jpeg", 3),
               record("chartqa", "a", "14", "14", True, "seen", "blur", 3),
               record("chartqa", "b", "yes", "no", False, "seen", "blur", 3),
               record("chartqa", "a", "14", "14", True, "unseen", "pixelate", 3),
               record("chartqa", "b", "no", "no", True, "unseen", "pixelate", 3),
               record("synthetic", "s", "1", "1", True)]  # no official metric
    out = summarize(records, meta)
    assert list(out) == ["chartqa"]
    entry = out["chartqa"]
    assert entry["clean"] == {"score": 1.0, "n": 2, "parts": {"relaxed_augmented": 1.0, "relaxed_human": 1.0}}
    assert entry["disagree_clean"] == 1  # roma's judge said wrong for "14.5", the relaxed rule right
    assert entry["levels"]["3"]["jpeg"]["score"] == 0.5 and entry["levels"]["3"]["blur"]["score"] == 0.5
    assert entry["levels"]["3"]["seen"] == 0.5 and entry["levels"]["3"]["unseen"] == 1.0
    summary = {"official": out, "main_level": 3, "benchmarks": {"chartqa": {"clean": {"acc": 0.5}}}}
    table = "\n".join(report_lines(summary))
    assert "| chartqa | relaxed accuracy (5 %) | 50.0 | 100.0 | 50.0 | 100.0 | 1 |" in table
    assert report_lines({"official": {}}) == []
