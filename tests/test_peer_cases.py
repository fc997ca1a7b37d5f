"""roma.rewards against other projects' own grading tests (tests/data/peer_cases, see its README).

Every case runs. Where roma deliberately follows another convention, the case id is listed below with the
reason, and the test asserts that roma gives the *opposite* of the peer's expectation, so the list
cannot silently rot: if roma starts agreeing, the test fails and the entry must go. docs/rewards.md
carries the same table.

How a case is run depends on what the peer's test exercised:
- Math-Verify and lmms-eval test *judges* that read a raw response: ``is_correct(completion, gold)``.
- TRL and MathRuler test *reward functions* (TRL's accuracy rewards; MathRuler's
  ``grade_answer(extract_boxed_content(solution), answer)``): ``accuracy_reward([completion], [gold])``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roma.rewards import accuracy_reward, answer_part, format_reward, is_correct

PEER_DIR = Path(__file__).parent / "data" / "peer_cases"
ANSWER_CASES = json.loads((PEER_DIR / "answer_cases.json").read_text(encoding="utf-8"))
FORMAT_CASES = json.loads((PEER_DIR / "format_cases.json").read_text(encoding="utf-8"))
for _index, _case in enumerate(FORMAT_CASES):  # format cases carry no id: number them in file order
    _case["id"] = f"format_{_index:02d}"

JUDGE_SOURCES = {"huggingface/Math-Verify", "EvolvingLMMs-Lab/lmms-eval"}
REWARD_SOURCES = {"huggingface/trl", "hiyouga/MathRuler"}

ANSWER_DEVIATIONS: dict[str, str] = {
    "case_014": "Math-Verify's test restricts extraction to LaTeX to check that `$…$` does not span lines; "
    "roma also reads plain numbers, so 'Answer $ 9 $' over three lines is read as 9 and is correct",
    "case_043": "the Math-Verify test compares at precision=2 (2.6667 = 8/3); roma compares interval ends "
    "through Math-Verify at 6 decimals, and 2.6667 (five significant digits) is no rounding of 8/3 by roma's "
    "number rule either",
    "case_108": "kaleidoscope reads a bare digit as a 1-based option number ('2' -> B); roma reads numbers as "
    "numbers (option texts are often numbers, so the reading would be ambiguous)",
    "case_113": "kaleidoscope maps Cyrillic option letters ('Б' -> B); roma accepts Latin letters only: "
    "Cyrillic 'В' looks like Latin B but is the third letter, so script mapping would misgrade homoglyphs",
    "case_114": "kaleidoscope maps Arabic option letters ('د' -> D); roma accepts Latin letters only (as "
    "for case_113)",
    "case_119": "kaleidoscope's strict direct mode rejects an answer in a sentence; roma is lenient and "
    "reads 'The correct answer is (C) because …' as C (kaleidoscope's own lenient mode does too)",
    "case_121": "physical_conflict's strict option-id grader rejects 'B.'; roma accepts the usual option "
    "spellings",
    "case_122": "physical_conflict's strict option-id grader rejects 'The answer is B'; roma accepts it",
}

# expected_correct null: the peer skips the example (TRL returns None because Math-Verify cannot parse the
# gold). roma never skips: a gold that is not a number is a text answer, and these are scored as text.
NULL_DECISIONS: dict[str, tuple[bool, str]] = {
    "case_081": (False, "no \\boxed{} in the completion, so no answer (the texts are equal, but unboxed)"),
    "case_082": (
        False,
        "text gold 'Answer is forty three.' vs boxed '43': different texts, and the gold is not a number",
    ),
}

FORMAT_DEVIATIONS: dict[str, str] = {
    case_id: "TRL's think_format_reward only checks the <think>…</think> wrapper; roma's format also "
    "requires a \\boxed{} answer after </think> (the prompt asks for one), so an unboxed answer scores 0.0"
    for case_id in ("format_00", "format_01", "format_02", "format_03", "format_04")
}


def roma_verdict(case: dict) -> bool:
    repo = case["source"].split("@")[0]
    if repo in JUDGE_SOURCES:
        return is_correct(case["completion"], case["gold"], choices=case.get("choices"))
    if repo in REWARD_SOURCES:
        choices = [case.get("choices")]
        return accuracy_reward([case["completion"]], [case["gold"]], choices=choices) == [1.0]
    raise AssertionError(f"{case['id']}: no rule for source {repo!r}")


def test_case_files_are_complete():
    assert len(ANSWER_CASES) == 145
    assert len(FORMAT_CASES) == 18
    ids = [c["id"] for c in ANSWER_CASES]
    assert len(set(ids)) == len(ids)
    assert set(ANSWER_DEVIATIONS) <= set(ids) and set(NULL_DECISIONS) <= set(ids)
    assert {c["id"] for c in ANSWER_CASES if c["expected_correct"] is None} == set(NULL_DECISIONS)
    assert set(FORMAT_DEVIATIONS) <= {c["id"] for c in FORMAT_CASES}
    assert {c["source"].split("@")[0] for c in ANSWER_CASES} == JUDGE_SOURCES | REWARD_SOURCES


@pytest.mark.parametrize("case", ANSWER_CASES, ids=[c["id"] for c in ANSWER_CASES])
def test_answer_case(case):
    verdict = roma_verdict(case)
    if case["id"] in NULL_DECISIONS:
        assert verdict is NULL_DECISIONS[case["id"]][0], NULL_DECISIONS[case["id"]][1]
    elif case["id"] in ANSWER_DEVIATIONS:
        assert verdict is (not case["expected_correct"]), (
            f"roma now agrees: remove the deviation {case['id']}"
        )
    else:
        assert verdict is case["expected_correct"], f"{case['category']}: {case['note']}"


@pytest.mark.parametrize("case", FORMAT_CASES, ids=[c["id"] for c in FORMAT_CASES])
def test_format_case(case):
    kind = case["kind"]
    if kind == "think_format_reward":
        expected = case["expected_reward"]
        if case["id"] in FORMAT_DEVIATIONS:
            expected = 1.0 - expected
        assert format_reward([case["completion"]]) == [expected]
    elif kind == "strip_reasoning_tags":
        assert answer_part(case["completion"]) == case["expected_output"]
    elif kind == "reasoning_accuracy_reward":
        assert accuracy_reward([case["completion"]], [case["gold"]]) == [case["expected_reward"]]
    else:
        raise AssertionError(f"{case['id']}: unknown kind {kind!r}")


def test_agreement_numbers():
    """The summary docs/rewards.md reports: 135 of the 143 decided answer cases agree, 8 deviate."""
    decided = [c for c in ANSWER_CASES if c["expected_correct"] is not None]
    agree = sum(roma_verdict(c) is c["expected_correct"] for c in decided)
    assert (len(decided), agree, len(ANSWER_DEVIATIONS)) == (143, 135, 8)
    assert len(FORMAT_CASES) - len(FORMAT_DEVIATIONS) == 13
