"""roma.rewards: extraction, the judge, and the TRL reward functions (conventions in docs/rewards.md)."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
import textwrap
import threading
import typing
from fractions import Fraction

import pytest
from math_verify import parse

from roma.data.schema import ANSWER_TYPES
from roma.rewards import (
    MAX_PREDICTION_CHARS,
    REWARD_FUNCS,
    AnswerType,
    accuracy_reward,
    answer_part,
    completion_text,
    extract_answer,
    extract_choice,
    format_reward,
    graded_answer,
    infer_answer_type,
    is_correct,
)

# ---------------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),  # nested braces kept
        (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces do not close the box
        (r"first \boxed{1}, then \boxed{2}", "2"),  # the last box wins
        (r"\boxed{\boxed{5}}", r"\boxed{5}"),  # the last top-level box, inner boxes are its content
        (r"\fbox{7}", "7"),
        (r"\boxed {3}", "3"),
        (r"\boxed{  42  }", "42"),
        ("no box here, the answer is 5", None),
        (r"\boxed{}", None),  # blank
        (r"\boxed{   }", None),
        (r"\boxed{1} and then \boxed{2", None),  # the last box never closes: no answer, not the earlier one
        (r"\boxed{\frac{1}{2}", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"<think>maybe \boxed{1}</think> so \boxed{2}", "2"),  # the box after </think> counts
        (r"<think>it is \boxed{1}</think> so the answer is 1", None),  # a box only inside think does not
        (r"reasoning prefilled by the template \boxed{1}</think>\boxed{3}", "3"),
        (r"<think>truncated reasoning \boxed{1}", None),  # unclosed think: all of it is reasoning
        (r"<think>a</think><think>b \boxed{1}</think> \boxed{4}", "4"),  # after the LAST </think>
        (r"\boxed{6} without think tags", "6"),
    ],
)
def test_extract_answer_think_block(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", [None, 5, 3.5, b"\\boxed{1}", ["\\boxed{1}"], {"content": "\\boxed{1}"}])
def test_extract_answer_non_string_is_none(text):
    assert extract_answer(text) is None


def test_extract_answer_huge_string():
    text = "x" * 2_000_000 + r"\boxed{5}" + "y" * 1000
    assert extract_answer(text) == "5"
    assert extract_answer("{" * 200_000 + r"\boxed{" + "{" * 200_000) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\nreasoning\n</think>\n\nYes", "Yes"),
        ("reasoning\n</think>\n\nNo", "No"),
        ("<think> never closed", ""),
        ("Answer first <think> then reasoning", "Answer first"),
        ("  plain  ", "plain"),
    ],
)
def test_answer_part(text, expected):
    assert answer_part(text) == expected


def test_answer_part_rejects_non_string():
    with pytest.raises(TypeError, match="answer_part expects a str, got NoneType"):
        answer_part(None)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "msg"}], "msg"),
        ([{"content": "no role"}], "no role"),
        ({"role": "assistant", "content": "single message"}, "single message"),
        (
            [{"role": "assistant", "content": [{"type": "text", "text": "a "}, {"type": "image"}, "b"]}],
            "a b",
        ),
        (
            [
                {"role": "assistant", "content": "first turn"},
                {"role": "tool", "content": "tool output"},
                {"role": "assistant", "content": "final turn"},
            ],
            "final turn",
        ),
        ([], None),
        ([{"role": "assistant", "content": None}], None),
        ([{"role": "assistant", "content": [{"type": "image"}]}], None),
        (None, None),
        (42, None),
        (["not a message"], None),
    ],
)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


# ---------------------------------------------------------------------------------------------------------
# Multiple choice

CHOICES = ["10", "12", "14", "16"]


@pytest.mark.parametrize(
    "prediction",
    [
        "B",
        "b",
        "(B)",
        "B.",
        "**B**",
        "B) 12",
        "(B) 12",
        "B. 12",
        "option b",
        "Option B",
        "The answer is B",
        "The answer is (B).",
        "Answer: B",
        "I considered A, but the answer is B.",  # the answer phrase beats an earlier letter
        '{"choice": "B"}',
        "<answer> B </answer>",
        r"\text{(B)}",
        "12",  # the choice text itself
        "12.",
        r"\frac{24}{2}",  # a value equal to exactly one choice
    ],
)
def test_choice_forms_are_correct(prediction):
    assert is_correct(prediction, "B", answer_type="choice", choices=CHOICES)


@pytest.mark.parametrize(
    "prediction",
    [
        "A",
        "(C)",
        "The answer is C",
        "14",  # the text of another choice
        "13",  # no choice at all
        "A or B",  # ambiguous
        '{"choice": "A or B"}',
        "E",  # not one of the four options
        "The answer is E",
        "No valid answer here",
        "I cannot answer this question.",
    ],
)
def test_choice_forms_that_are_wrong(prediction):
    assert not is_correct(prediction, "B", answer_type="choice", choices=CHOICES)


def test_choice_text_with_words_and_articles():
    shapes = ["a square", "a triangle", "a circle"]
    # "A triangle": the article, not option A; the text names option B
    assert extract_choice("A triangle", shapes) == "B"
    assert extract_choice("Triangle.", shapes) == "B"
    assert is_correct("a circle", "C", choices=shapes)
    assert not is_correct("a circle", "B", choices=shapes)


def test_extract_choice_precedence():
    assert extract_choice("A. Because B is not valid") == "A"  # a leading option id
    assert extract_choice("Because B is valid") == "B"  # a single standalone capital
    assert extract_choice("I think B") == "B"  # "I" before a word is the pronoun
    assert extract_choice("first <ANSWER> A </ANSWER> then <ANSWER> D </ANSWER>") == "D"
    assert extract_choice("The answer is (N).") == "N"  # without choices, any letter A-Z
    assert extract_choice("The answer is (N).", ["x", "y"]) is None
    assert extract_choice(None) is None
    assert extract_choice("") is None


# ---------------------------------------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize(
    "prediction",
    [
        "0.5",
        ".5",
        "1/2",
        r"\frac{1}{2}",
        r"\dfrac12",
        r"\tfrac{1}{2}",
        "½",
        "$0.5$",
        r"\boxed{0.5}",
        "50%",
        r"50\%",
    ],
)
def test_one_half_in_every_spelling(prediction):
    assert is_correct(prediction, "0.5", answer_type="number")
    assert is_correct(prediction, r"\frac{1}{2}", answer_type="number")


def test_percent_convention():
    # A percentage reads as its fraction AND as its bare number (Math-Verify does the same for integers):
    assert is_correct("50%", "0.5")
    assert is_correct("50%", "50")
    assert is_correct("0.5", "50%")
    assert is_correct("50", "50%")
    assert is_correct("28 percent", r"$28\%$")
    # ...but two bare numbers are compared as they are
    assert not is_correct("50", "0.5")
    assert not is_correct("0.5", "50")
    # documented consequence of the double reading: 0.5% also matches 0.5
    assert is_correct("0.5%", "0.5")


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [
        ("−3", "-3"),  # U+2212 minus sign
        ("-3", "−3"),
        (r"−\frac{1}{2}", "-0.5"),
        ("7,425,000", "7425000"),
        ("7425000", "7,425,000"),
        (r"7{,}425{,}000", "7425000"),
        (r"7,\!425,\!000", "7425000"),
        ("7\u2009425\u2009000", "7425000"),  # thin spaces between digit groups
        ("1,000.5", "1000.5"),
        ("1000.0", "1000"),
        ("1e3", "1000"),
        ("$1,000", "1000"),  # currency sign
        ("42.", "42"),  # trailing full stop
        ("0.333333", "1/3"),  # equal to 1e-6
        ("2½", "2.5"),
        (r"2^{10}", "1024"),  # the size guard lets ordinary powers through
    ],
)
def test_number_equivalences(prediction, answer):
    assert is_correct(prediction, answer)


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [
        ("0.333", "1/3"),  # off by 3.3e-4 > 1e-6
        ("3", "-3"),
        ("32, 349", "32349"),  # a comma with a space is a list, not a separator
        ("7,42,5000", "7425000"),  # not groups of three: not a number (Math-Verify reads a list)
        ("12345679", "12345678"),
        (r"\frac{1}{3}", "0.3"),
    ],
)
def test_number_non_equivalences(prediction, answer):
    assert not is_correct(prediction, answer)


def test_decimal_comma_follows_math_verify():
    # "1,22" is not a plain number; Math-Verify reads a comma followed by other than three digits as a
    # decimal comma, and roma keeps that reading
    assert is_correct("1,22", "1.22")
    assert is_correct("1.22", "1,22")


@pytest.mark.parametrize(
    ("prediction", "answer", "tolerance", "expected"),
    [
        # ChartQA relaxed accuracy: |pred - gold| <= tol * |gold|, boundary included
        ("105", "100", 0.05, True),  # |5| <= 0.05 * 100 = 5
        ("95", "100", 0.05, True),
        ("105.1", "100", 0.05, False),  # 5.1 % off
        ("94.9", "100", 0.05, False),
        ("21", "20", 0.05, True),  # |1| <= 0.05 * 20 = 1
        ("-105", "-100", 0.05, True),  # relative to |gold|
        # 0.29 * 100 is 28.999999999999996 in floats; roma reads the tolerance as the decimal 29/100
        ("129", "100", 0.29, True),
        ("129.01", "100", 0.29, False),
        ("52.5%", "50%", 0.05, True),  # 0.525 vs 0.5: |0.025| <= 0.05 * 0.5
        (r"\frac{21}{20}", "1", 0.05, True),  # non-plain values are evaluated by Math-Verify first
        (r"\frac{211}{200}", "1", 0.05, False),  # 1.055
        ("about 1.05 units", "1", 0.05, True),
        ("0", "0", 0.05, True),  # tol * |0| = 0: zero only equals zero
        ("0.0000005", "0", 0.05, False),
        ("0.01", "0", 0.05, False),
        ("105", "100", 0.0, False),  # no tolerance: exact
    ],
)
def test_tolerance(prediction, answer, tolerance, expected):
    assert is_correct(prediction, answer, answer_type="number", tolerance=tolerance) is expected


def test_math_objects_go_through_math_verify():
    assert is_correct(r"(0.6, \frac{8}{3}]", r"(\frac{3}{5},\frac{8}{3}]")
    assert not is_correct(r"[0.6, \frac{8}{3}]", r"(\frac{3}{5},\frac{8}{3}]")
    assert is_correct(r"63\pi", r"63\pi")
    assert is_correct(r"\pi \cdot 63", r"63\pi")
    assert not is_correct("63", r"63\pi")  # raw LaTeX golds are read as LaTeX, not as their first number
    assert is_correct(
        r"\begin{pmatrix} -1/3 \\ 2/3 \end{pmatrix}",
        r"\begin{pmatrix} -\frac{1}{3} \\ \frac{2}{3} \end{pmatrix}",
    )
    assert is_correct(r"x = 11", "11")


# ---------------------------------------------------------------------------------------------------------
# Text


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("New York", True),
        ("new york", True),
        ("  New-York. ", True),
        (r"\text{New York}", True),
        ("NEW YORK!", True),
        ("New Yorkshire", False),
        ("York", False),
    ],
)
def test_text_answers(prediction, expected):
    assert is_correct(prediction, "New York", answer_type="text") is expected


def test_text_answers_compare_numbers_numerically():
    assert is_correct("3.0", "3", answer_type="text")
    assert is_correct("1,000", "1000", answer_type="text")
    assert not is_correct("three", "3", answer_type="text")
    assert not is_correct("-5", "5", answer_type="text")  # numbers first: punctuation does matter here


# ---------------------------------------------------------------------------------------------------------
# Wrong answers stay wrong: one block per kind of false positive (issue inputs first in each list)


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("y = 2x + 1", "y = 3x + 1", False),  # bare equations were cut down to their shared number 1
        ("2x + 1", "3x + 1", False),
        ("y = 1 + 2x", "y = 2x + 1", True),
        ("y=2x+1.", "y = 2x + 1", True),  # a full stop ends the sentence
        ("f(x) = 2x + 1", "2x + 1", True),
        ("2y = 4x + 2", "y = 2x + 1", True),  # the same equation, scaled
        ("x = (y - 1)/2", "y = 2x + 1", True),  # solved for the other variable
        ("x^2 + 2x + 1", "(x+1)^2", True),
        ("x^2 + 2x + 1", "(x-1)^2", False),
        ("a + b", "b + a", True),
        ("y = 3x + 2", "3x + 1", False),
        ("2x + z = 1", "1", False),  # an equation in unknowns is not its right-hand side
        ("x = 11", "11", True),  # an assignment is (Math-Verify's convention, peer case_038)
        ("7 + 5 = 12", "12", True),  # and so is a worked computation
        ("7 + 5 = 12", "13", False),
        ("x^2 = 4", "x = 2", False),
    ],
)
def test_bare_expressions_and_equations_are_compared_whole(prediction, answer, expected):
    assert is_correct(prediction, answer) is expected


def test_bare_equation_reward():
    completions = [r"<think>t</think>\boxed{y = 2x + 1}", r"<think>t</think>\boxed{1 + 2x = y}"]
    assert accuracy_reward(completions, ["y = 3x + 1"] * 2) == [0.0, 0.0]
    assert accuracy_reward(completions, ["y = 2x + 1"] * 2) == [1.0, 1.0]


@pytest.mark.parametrize(
    ("prediction", "answer", "tolerance", "expected"),
    [
        ("5e-7", "3e-7", 0.0, False),  # the old absolute floor of 1e-6 made all small values equal
        ("5e-7", "3e-7", 0.05, False),
        ("3.0e-7", "3e-7", 0.0, True),
        ("0.0000003", "3e-7", 0.0, True),
        ("3.1e-7", "3e-7", 0.05, True),  # 3.3 % off: the tolerance is relative at every scale
        ("3.2e-7", "3e-7", 0.05, False),
        ("1e-9", "0", 0.0, False),  # zero only equals zero
        ("-0", "0", 0.0, True),
        ("1234567.6", "1234567.5", 0.0, False),  # exact decimals are compared exactly
        # a decimal of >= 6 significant digits equals the value without a finite decimal form it rounds
        ("0.142857", r"\frac{1}{7}", 0.0, True),
        ("0.133333", r"\frac{2}{15}", 0.0, True),
        ("0.666667", "2/3", 0.0, True),
        ("0.666666", "2/3", 0.0, True),  # truncated
        ("0.13333", r"\frac{2}{15}", 0.0, False),  # 5 significant digits
        ("1.414214", r"\sqrt{2}", 0.0, True),
        ("1.4142", r"\sqrt{2}", 0.0, False),
        ("3.14159", r"\pi", 0.0, True),
        ("3.14158", r"\pi", 0.0, False),
        ("0.0000000333333", r"\frac{1}{30000000}", 0.0, True),  # at any scale
        ("0.0000000333", r"\frac{1}{30000000}", 0.0, False),
        (r"\frac{\sqrt{8}}{2}", r"\sqrt{2}", 0.0, True),
    ],
)
def test_number_equality_is_relative(prediction, answer, tolerance, expected):
    assert is_correct(prediction, answer, answer_type="number", tolerance=tolerance) is expected


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("2008", "2010", False),  # a year is a label: 0.1 % off is another year
        ("2010", "2010", True),
        ("2010.0", "2010", True),
        ("1999", "2000", False),
        ("2100", "2099", False),
        ("1,950", "2,000", True),  # written with a separator: a quantity, 2.5 % off
        ("1850", "1800", True),  # outside 1900-2100: a quantity
        ("1950", "2000.0", True),  # written as a decimal: a quantity
        ("104", "100", True),
    ],
)
def test_years_are_exact_under_tolerance(prediction, answer, expected):
    assert is_correct(prediction, answer, tolerance=0.05) is expected
    assert is_correct(prediction, answer, answer_type="text", tolerance=0.05) is expected


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("Under 30 mins", "Over 30 mins", False),  # ChartQA golds: both were read as the number 30
        ("March 2010", "March 2011", False),
        ("over 30 mins.", "Over 30 mins", True),
        ("**Over 30 mins**", "Over 30 mins", True),
        ("Over 31 mins", "Over 30 mins", False),
        ("Over 30", "Over 30 mins", False),
        ("30 mins", "Over 30 mins", False),
        ("1,000 people", "1000 people", True),  # numbers inside text compared by value
        ("1000.0 people", "1000 people", True),
        ("1001 people", "1000 people", False),
        ("2 km", "5 km", False),
        ("Q3 2019", "Q3 2019", True),
        ("Q4 2019", "Q3 2019", False),
    ],
)
def test_text_with_numbers_is_text(prediction, answer, expected):
    assert is_correct(prediction, answer, tolerance=0.05) is expected  # inferred: text
    assert is_correct(prediction, answer, answer_type="text", tolerance=0.05) is expected
    assert is_correct(prediction, answer, answer_type="number", tolerance=0.05) is expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Over 30 mins", "text"),
        ("March 2011", "text"),
        ("5 km", "text"),
        ("y = 3x + 1", "number"),
        ("3x + 1", "number"),
        ("x<y", "number"),
        ("A, C", "text"),
    ],
)
def test_infer_answer_type_of_prose_and_expressions(answer, expected):
    assert infer_answer_type(answer) == expected


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("C, A", True),  # a set of letters: order does not matter
        ("A, C", True),
        ("A,C", True),
        ("A and C", True),
        ("C & A", True),
        ("A; C.", True),
        ("AC", True),
        ("(A) (C)", True),
        ("**A, C**", True),
        ("The answers are A and C", True),
        ("A", False),  # a missing letter
        ("C", False),
        ("A, B, C", False),  # an extra letter
        ("B, D", False),
        ("A, A, C", False),
        ("A or C", False),
        ("A/C", False),
        ("a, c", False),  # letters are capitals
    ],
)
def test_multi_select_letters_are_a_set(prediction, expected):
    assert is_correct(prediction, "A, C") is expected
    assert is_correct(prediction, "C and A", answer_type="text") is expected


def test_words_of_capitals_are_not_letter_sets():
    assert is_correct("the USA", "USA")
    assert not is_correct("SAU", "USA")
    assert not is_correct("U, S, A", "USA")
    assert infer_answer_type("N/A") == "text"
    assert is_correct("n/a", "N/A")
    assert not is_correct("A/N", "N/A")


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("C. 12", True),  # options in the image: a leading option letter names that letter
        ("(C) 12", True),
        ("C) 12", True),
        ("C: 12", True),
        ("C", True),
        ("c", True),
        ("The answer is C", True),
        ("B. 12", False),
        ("(B) 12", False),
        ("12", False),  # the option texts are unknown: a number names no letter
        ("C, D", False),
    ],
)
def test_letter_gold_without_option_texts(prediction, expected):
    assert is_correct(prediction, "C", answer_type="text") is expected
    assert is_correct(prediction, "C") is expected  # inferred: choice, any of A-Z
    completion = f"<think>t</think>\\boxed{{{prediction}}}"
    assert accuracy_reward([completion], ["C"], choices=[[]], answer_type=["text"]) == [float(expected)]


def test_letter_beyond_the_given_options_is_text():
    # with the option texts given, a letter gold beyond them is not an option letter (peer case_118)
    assert not is_correct('{"choice": "D"}', "D", choices=["x", "y"])
    assert is_correct("D", "D", choices=["x", "y"])


MATH_BOX = r"<think>t</think>\boxed{\langle H\rangle \ll \Delta E} **Answer: D**"
FIVE = ["a", "b", "c", "d", "e"]


def test_boxed_math_is_never_an_option_letter():
    assert extract_choice(r"\langle H\rangle \ll \Delta E", FIVE) is None  # E is a variable here
    assert extract_choice(r"x + B", FIVE) is None
    assert extract_choice(r"(C) x^2", FIVE) == "C"  # a leading option id still names its letter
    assert extract_choice("The tallest is **B**, because it is higher", FIVE) == "B"  # emphasis, not maths
    assert extract_choice("Bar *B* is the tallest", FIVE) == "B"
    assert extract_choice("3*4 B", FIVE) is None
    assert not is_correct(r"\langle H\rangle \ll \Delta E", "E", choices=FIVE)
    # the explicit final "Answer: X" after a box that names no option decides
    assert graded_answer(MATH_BOX, "D", choices=FIVE) == "D"
    assert accuracy_reward([MATH_BOX, MATH_BOX], ["D", "E"], choices=[FIVE, FIVE]) == [1.0, 0.0]
    assert accuracy_reward([MATH_BOX], ["D"], choices=[[]], answer_type=["text"]) == [1.0]
    # without a statement the box is the answer (and names nothing)
    assert accuracy_reward([r"<think>t</think>\boxed{\Delta E}"], ["E"], choices=[FIVE]) == [0.0]
    # a box that names an option decides even when a different statement follows
    assert graded_answer(r"\boxed{D} Answer: E", "D", choices=FIVE) == "D"
    assert accuracy_reward([r"<think>t</think>\boxed{D} Answer: E"], ["E"], choices=[FIVE]) == [0.0]
    # a statement before the box does not count, nor for number golds
    assert graded_answer(r"Answer: D. \boxed{\Delta E}", "D", choices=FIVE) == r"\Delta E"
    assert graded_answer(r"\boxed{x^2} Answer: 4", "4") == "x^2"
    assert graded_answer(r"<think>\boxed{D}</think>", "D") is None


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("x>y", "x<y", False),  # text normalisation dropped the operators
        ("x < y", "x<y", True),
        ("x<y.", "x<y", True),
        ("x <= y", "x ≤ y", True),
        ("x < y", "x ≤ y", False),
        ("x+y", "x-y", False),
        ("x*y", "x/y", False),
        ("a - b", "a b", False),
        ("-5 apples", "5 apples", False),
        ("50%", "50 percent", True),
        ("New-York", "New York", True),  # a hyphen joining two words is not a minus
    ],
)
def test_operators_are_kept_in_text(prediction, answer, expected):
    assert is_correct(prediction, answer, answer_type="text") is expected


@pytest.mark.parametrize(
    ("prediction", "expected"), [("x>y", False), ("y>x", True), ("x<y", True), ("x \\le y", False)]
)
def test_operators_are_kept_in_math(prediction, expected):
    assert is_correct(prediction, "x<y") is expected


def test_property_distinct_values_differ_and_rewritten_forms_agree():
    """Seeded: distinct small polynomials, equations and numbers are never equal; rewritten equal forms are."""
    rng = random.Random(12)

    def poly(coefficients, order):
        terms = [f"{c}x^{{{p}}}" if p > 1 else f"{c}x" if p == 1 else f"{c}" for c, p in coefficients]
        terms = [terms[i] for i in order]
        return " + ".join(terms).replace("+ -", "- ")

    seen = set()
    while len(seen) < 12:
        seen.add(tuple(rng.choice([c for c in range(-5, 6) if c]) for _ in range(3)))
    polys = sorted(seen)
    for first, second in zip(polys[::2], polys[1::2]):
        a = [(c, 2 - i) for i, c in enumerate(first)]
        b = [(c, 2 - i) for i, c in enumerate(second)]
        shuffled = rng.sample(range(3), 3)
        assert not is_correct(poly(a, [0, 1, 2]), poly(b, [0, 1, 2])), (a, b)
        assert not is_correct(f"y = {poly(a, [0, 1, 2])}", f"y = {poly(b, [0, 1, 2])}"), (a, b)
        assert is_correct(poly(a, shuffled), poly(a, [0, 1, 2])), (a, shuffled)
        assert is_correct(f"{poly(a, shuffled)} = y", f"y = {poly(a, [0, 1, 2])}"), (a, shuffled)

    values = set()
    while len(values) < 60:
        values.add(Fraction(rng.randint(-999, 999), rng.choice([1, 2, 4, 5, 8, 10, 100, 1000])))
    values = sorted(values)
    for index, (first, second) in enumerate(zip(values[::2], values[1::2])):
        assert not is_correct(str(float(first)), str(float(second))), (first, second)
        assert is_correct(f"{float(first * 100)}\\%", str(float(first)))  # percent allowed
        if index < 8:  # LaTeX goes through Math-Verify (~30 ms a parse)
            latex = f"\\frac{{{first.numerator}}}{{{first.denominator}}}"
            assert is_correct(latex, str(float(first))) and not is_correct(latex, str(float(second)))
    for small, larger in [(3e-7, 5e-7), (1e-12, 2e-12), (7.5e-9, 7.9e-9)]:
        assert not is_correct(f"{small:e}", f"{larger:e}")
    assert is_correct("1+2x", "2x+1") and is_correct("0.5", r"\frac{1}{2}") and is_correct(r"50\%", "0.5")


# ---------------------------------------------------------------------------------------------------------
# Type inference and invalid gold data


@pytest.mark.parametrize(
    ("answer", "choices", "expected"),
    [
        ("B", ["x", "y"], "choice"),
        ("B", None, "choice"),  # any capital letter without choices
        ("(C)", None, "choice"),
        (r"\text{C}", None, "choice"),
        ("C", ["x", "y"], "text"),  # a letter that indexes no choice is a word
        ("b", None, "text"),  # lowercase: a word, not an option
        ("42", None, "number"),
        ("-3.5%", None, "number"),
        (r"\frac{1}{2}", None, "number"),
        (r"$(1, 2)$", None, "number"),
        ("red", None, "text"),
        (r"\text{Evelyn}", None, "text"),
        ("Answer is forty two.", None, "text"),
    ],
)
def test_infer_answer_type(answer, choices, expected):
    assert infer_answer_type(answer, choices) == expected


def test_answer_type_literal_matches_the_schema():
    assert typing.get_args(AnswerType) == ANSWER_TYPES


def test_invalid_gold_raises():
    with pytest.raises(ValueError, match=r"answer_type 'bool' is not one of \['choice', 'number', 'text'\]"):
        is_correct("1", "1", answer_type="bool")
    with pytest.raises(
        ValueError, match=r"a choice answer must be one of the letters \['A', 'B', 'C'\], got 'E'"
    ):
        is_correct("E", "E", answer_type="choice", choices=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"tolerance must be a finite number >= 0, got -0.1"):
        is_correct("1", "1", tolerance=-0.1)
    with pytest.raises(ValueError, match=r"tolerance must be a finite number >= 0, got nan"):
        is_correct("1", "1", tolerance=float("nan"))
    with pytest.raises(TypeError, match=r"choices must be a list of str or None, got 'AB'"):
        is_correct("A", "A", choices="AB")
    with pytest.raises(ValueError, match=r"answer 'forty two' has answer_type 'number' but is neither"):
        is_correct("42", "forty two", answer_type="number")
    with pytest.raises(ValueError, match=r"answer must be a non-empty string, got ''"):
        is_correct("1", "")
    with pytest.raises(ValueError, match=r"answer must be a non-empty string, got None"):
        is_correct("1", None)


# ---------------------------------------------------------------------------------------------------------
# Robustness: model output never raises


@pytest.mark.parametrize(
    "prediction",
    [
        None,
        "",
        "   ",
        5,
        0.5,
        ["0.5"],
        {"answer": "0.5"},
        b"0.5",
        "x" * (MAX_PREDICTION_CHARS + 1),
        "0.5" + " " * MAX_PREDICTION_CHARS,  # too long even though it holds the answer
        r"\frac{1}{2",
        "}{}{" * 50,
        "(" * 5000 + "1" + ")" * 5000,
        r"\frac{" * 500 + "1" + "}{2}" * 500,
        r"9^{9^{9^{9}}}",  # would make sympy hang: refused by the size guard
        r"10^{10^{10}}",
        "1000000!",
        "1" * 6000,  # more digits than int() accepts
        "1e99999",
        "\x00\ud800",
        "NaN",
        "inf",
        r"\frac{1}{0}",
    ],
)
@pytest.mark.parametrize(
    ("answer", "kwargs"),
    [("0.5", {}), ("B", {"choices": ["x", "y"]}), ("red", {}), ("0.5", {"tolerance": 0.05})],
)
def test_garbage_predictions_are_wrong_not_errors(prediction, answer, kwargs):
    assert is_correct(prediction, answer, **kwargs) is False


def test_garbage_completions_score_zero():
    completions = [None, 7, "", [], [{}], [{"role": "assistant"}], r"\boxed{", "\\boxed{" * 10_000, "<think>"]
    assert accuracy_reward(completions, ["5"] * len(completions)) == [0.0] * len(completions)
    assert format_reward(completions) == [0.0] * len(completions)
    # letter golds read a final "Answer:" statement after a non-option box: garbage there is still wrong
    for gold in ("B", "A, C", "y = 2x + 1"):
        tails = [
            r"\boxed{x^2} Answer: " + "{" * 50,
            r"\boxed{\Delta} " + "Answer: " * 3000,
            r"\boxed{x} Answer:",
        ]
        assert accuracy_reward(completions + tails, [gold] * (len(completions) + 3)) == [0.0] * (
            len(completions) + 3
        )


def test_judge_works_off_the_main_thread():
    # Math-Verify's own default timeout uses signal.alarm, which fails outside the main thread ...
    errors: list[BaseException] = []

    def raw_math_verify():
        try:
            parse(r"$\frac{1}{3}$", parsing_timeout=5)
        except ValueError as error:
            errors.append(error)

    worker = threading.Thread(target=raw_math_verify)
    worker.start()
    worker.join()
    assert len(errors) == 1 and "threaded environment" in str(errors[0])

    # ... roma passes no timeout there and gives the same answers as in the main thread
    cases = [
        (r"\frac{2}{6}", "1/3", True),
        (r"\sqrt{9}", r"\frac{6}{2}", True),
        (r"\frac{1}{4}", "1/3", False),
    ]
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.extend(is_correct(p, a) for p, a, _ in cases))
    worker.start()
    worker.join()
    assert results == [expected for _, _, expected in cases]
    assert [is_correct(p, a) for p, a, _ in cases] == results


# ---------------------------------------------------------------------------------------------------------
# TRL reward functions


def test_accuracy_reward_with_trl_columns():
    # What GRPOTrainer passes: one list item per completion for every dataset column, plus extras
    completions = [
        [{"role": "assistant", "content": r"<think>count</think> \boxed{B}"}],
        [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": r"<think>read</think> \boxed{10"},
                    {"type": "text", "text": "4}"},
                ],
            }
        ],
        [{"role": "assistant", "content": r"<think>read</think> \boxed{106}"}],
        [{"role": "assistant", "content": r"<think>\boxed{red}</think> blue"}],
        [{"role": "assistant", "content": r"<think>x</think> \boxed{\text{Red}}"}],
    ]
    rewards = accuracy_reward(
        completions,
        answer=["B", "100", "100", "red", "red"],
        choices=[["3", "4"], [], [], [], []],
        answer_type=["choice", "number", "number", "text", "text"],
        tolerance=[0.0, 0.05, 0.05, 0.0, 0.0],
        prompts=[[{"role": "user", "content": "q"}]] * 5,
        completion_ids=[[1, 2]] * 5,
        trainer_state=object(),
        log_extra=lambda *args: None,
        log_metric=lambda *args: None,
        image=[None] * 5,
        id=["a", "b", "c", "d", "e"],
        task=["t"] * 5,
    )
    # 104 is 4 % off 100 (in), 106 is 6 % off (out); the box inside think does not count
    assert rewards == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_accuracy_reward_defaults_and_broadcasting():
    completions = [r"\boxed{0.5}", r"\boxed{\frac{1}{2}}", r"\boxed{0.52}", "0.5 without a box"]
    assert accuracy_reward(completions, ["1/2"] * 4) == [1.0, 1.0, 0.0, 0.0]
    # a single value for answer_type / tolerance applies to every completion; None means "not given"
    assert accuracy_reward(completions, ["1/2"] * 4, tolerance=0.05) == [1.0, 1.0, 1.0, 0.0]
    assert accuracy_reward(completions, ["1/2"] * 4, tolerance=[None] * 4, answer_type=[None] * 4) == [
        1.0,
        1.0,
        0.0,
        0.0,
    ]
    assert accuracy_reward([], []) == []


def test_accuracy_reward_rejects_misshaped_columns():
    with pytest.raises(
        ValueError, match="answer has 1 entries for 2 completions; expected one per completion"
    ):
        accuracy_reward(["a", "b"], ["1"])
    with pytest.raises(TypeError, match="answer must be a list with one entry per completion, got str"):
        accuracy_reward(["a"], "1")
    with pytest.raises(TypeError, match=r"choices must be a list of str or None, got 'x'"):
        # one choices list for the batch instead of one list per completion
        accuracy_reward([r"\boxed{A}", r"\boxed{A}"], ["A", "A"], choices=["x", "y"])


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (r"<think>r</think>\boxed{1}", 1.0),
        ("<think>\nreasoning\n</think>\nThe answer is \\boxed{\\frac{1}{2}}.", 1.0),
        ("\n  <think>r</think> \\boxed{1}", 1.0),  # leading whitespace is allowed
        (r"<think></think>\boxed{1}", 1.0),  # empty reasoning is allowed (as in TRL)
        ("<think>r</think> answer without a box", 0.0),
        (r"<think>r \boxed{1}</think> answer outside", 0.0),  # the box must be in the answer part
        (r"<think>r</think> \boxed{}", 0.0),  # blank box
        (r"<think>r</think> \boxed{1", 0.0),  # unclosed box
        (r"<think>r</think> \boxed{1} \boxed{2", 0.0),  # the last box must close
        (r"\boxed{1}", 0.0),  # no think block
        (r"r</think>\boxed{1}", 0.0),  # no opening tag
        (r"text <think>r</think>\boxed{1}", 0.0),  # must start with <think>
        (r"<think>r", 0.0),
        (r"<think>a<think>b</think></think>\boxed{1}", 0.0),  # nested think
        (r"<think>a</think>\boxed{1}<think>b</think>\boxed{1}", 0.0),  # two think blocks
        ([{"role": "assistant", "content": r"<think>r</think>\boxed{1}"}], 1.0),
    ],
)
def test_format_reward(completion, expected):
    assert format_reward([completion], prompts=["p"], trainer_state=None) == [expected]


def test_format_reward_is_independent_of_correctness():
    wrong = r"<think>guess</think>\boxed{7}"
    assert format_reward([wrong]) == [1.0]
    assert accuracy_reward([wrong], ["8"]) == [0.0]


def test_reward_funcs_registry():
    assert REWARD_FUNCS == {"accuracy": accuracy_reward, "format": format_reward}
    assert [f.__name__ for f in REWARD_FUNCS.values()] == ["accuracy_reward", "format_reward"]


def test_speed_sanity_2000_completions():
    """Not a timed assertion: 2,000 completions of every kind go through in one call, each scored right."""
    completions, answers, expected = [], [], []
    for i in range(2000):
        kind = i % 5
        if kind == 0:  # plain number, fast path
            completions.append(f"<think>t</think> \\boxed{{{i}}}")
            answers.append(str(i if i % 2 else i + 1))
            expected.append(1.0 if i % 2 else 0.0)
        elif kind == 1:  # letter, fast path
            completions.append(f"<think>t</think> The answer is \\boxed{{{'AB'[i % 2]}}}")
            answers.append("A")
            expected.append(1.0 if i % 2 == 0 else 0.0)
        elif kind == 2:  # LaTeX, Math-Verify
            completions.append(f"<think>t</think> \\boxed{{\\frac{{{i}}}{{{2 * i}}}}}")
            answers.append("0.5")
            expected.append(1.0)
        elif kind == 3:  # no box
            completions.append(f"<think>t</think> {i}")
            answers.append(str(i))
            expected.append(0.0)
        else:  # garbage
            completions.append("\\boxed{" + "{" * (i % 50))
            answers.append("1")
            expected.append(0.0)
    assert accuracy_reward(completions, answers) == expected


def test_rewards_module_does_not_import_torch():
    # Load roma.rewards with a bare `roma` package, so that only this module's own imports are checked
    roma_dir = importlib.util.find_spec("roma").submodule_search_locations[0]
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("roma")
        package.__path__ = [{roma_dir!r}]
        sys.modules["roma"] = package
        import roma.rewards
        print(sorted(m for m in ("torch", "transformers", "trl") if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
