"""Gold answers, multiple choice and the judge (:func:`is_correct`, :func:`graded_answer`). See
:mod:`roma.rewards`.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

import sympy
from math_verify.grader import is_assignment_relation, is_equation

from roma.data.schema import ANSWER_TYPES, LETTERS
from roma.rewards.extraction import (
    _DELIMITER_RE,
    _EMPHASIS_RE,
    MAX_PREDICTION_CHARS,
    _clean,
    _last_box_span,
    _strip_wrappers,
    _text_tokens,
    answer_part,
)
from roma.rewards.mathverify import _is_prose, _mv_parse, _mv_verify, _sympy_values
from roma.rewards.numeric import _is_year, _numbers_close, _plain_number, _tolerance_fraction

AnswerType = Literal["choice", "number", "text"]  # the values of roma.data.schema.ANSWER_TYPES

# ---------------------------------------------------------------------------------------------------------
# Gold answers


def _looks_mathematical(gold: str) -> bool:
    """Math delimiters, or digits / LaTeX / operators without prose (``"Over 30 mins"`` is text)."""
    if _DELIMITER_RE.search(_clean(gold)):
        return True
    core = _strip_wrappers(gold)
    return not _is_prose(core) and bool(re.search(r"[\d\\^_=<>+≤≥≠]", core))  # "N/A" is text


@lru_cache(maxsize=16_384)
def _numeric_values(text: str) -> tuple[Fraction, ...]:
    """The value(s) of ``text`` if it is a number: a plain number read directly (no Math-Verify), else
    the numeric results of Math-Verify (``\\frac{1}{2}``, ``\\sqrt{2}``, ``28\\%``); empty otherwise."""
    plain = _plain_number(text)
    return plain if plain is not None else _sympy_values(_mv_parse(text))


def _choice_letter_of_gold(answer: str) -> str | None:
    core = _strip_wrappers(answer).strip()
    if len(core) == 3 and core[0] == "(" and core[2] == ")":
        core = core[1]
    return core if len(core) == 1 and core in LETTERS else None


def infer_answer_type(answer: str, choices: Sequence[str] | None = None) -> AnswerType:
    """``"choice"`` for a single capital letter that indexes ``choices`` (any of A–Z without choices),
    ``"number"`` for a plain number or a mathematical expression Math-Verify can read (``$…$``, digits,
    LaTeX commands, operators), ``"text"`` otherwise."""
    letter = _choice_letter_of_gold(answer)
    if letter is not None and (not choices or LETTERS.index(letter) < len(choices)):
        return "choice"
    if _plain_number(answer) is not None:
        return "number"
    if _looks_mathematical(answer) and _mv_parse(answer):
        return "number"
    return "text"


def _check_gold(
    answer: object, answer_type: object, choices: object, tolerance: object
) -> tuple[str, list[str] | None, Fraction]:
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"answer must be a non-empty string, got {answer!r}")
    if choices is not None:
        if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
            raise TypeError(f"choices must be a list of str or None, got {choices!r}")
        if len(choices) > len(LETTERS):
            raise ValueError(f"at most {len(LETTERS)} choices are supported, got {len(choices)}")
        choices = list(choices)
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, numbers.Real)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if answer_type is None:
        answer_type = infer_answer_type(answer, choices)
    elif answer_type not in ANSWER_TYPES:
        raise ValueError(
            f"answer_type {answer_type!r} is not one of {list(ANSWER_TYPES)} (or None to infer it)"
        )
    if answer_type == "choice":
        letter = _choice_letter_of_gold(answer)
        valid = LETTERS[: len(choices)] if choices else LETTERS
        if letter is None or letter not in valid:
            raise ValueError(f"a choice answer must be one of the letters {list(valid)}, got {answer!r}")
    if answer_type == "number":
        if _plain_number(answer) is None and not _mv_parse(answer):
            raise ValueError(
                f"answer {answer!r} has answer_type 'number' but is neither a number nor an expression"
            )
    return answer_type, choices, _tolerance_fraction(tolerance)


# ---------------------------------------------------------------------------------------------------------
# Multiple choice

_NOT_A_WORD = r"(?![A-Za-z0-9])"
# "A triangle", "I think": words, not option letters ("A or B" still names two letters)
_ARTICLE_GUARD = r"(?!(?<=[AI])\s+(?!(?:or|and)\b)[a-z])"
_ANSWER_PHRASE_RE = re.compile(
    r"\b(?i:answer|option|choice)s?\b(?:\s+(?i:is|would\s+be|should\s+be|will\s+be))?"
    r"[\s:=\"'`*(\[{]*"
    rf"(?:(?P<upper>[A-Z]){_NOT_A_WORD}{_ARTICLE_GUARD}|(?P<lower>[a-z])(?=\s*(?:$|[.,;:!?)\]}}\"'`*])))"
    r"(?!\s+(?i:or|and)\s+\(?[A-Za-z](?![A-Za-z0-9]))"
)
_WHOLE_LETTER_RE = re.compile(r"[\s\"'`*(\[{]*([A-Za-z])[\s\"'`*)\]}.:,;!]*")
_LEADING_LETTER_RE = re.compile(r"[\s\"'`*]*\(?([A-Z])[.):]")
_PAREN_LETTER_RE = re.compile(r"\(([A-Za-z])\)")
_STANDALONE_CAPITAL_RE = re.compile(rf"(?<![A-Za-z0-9\\])([A-Z]){_NOT_A_WORD}{_ARTICLE_GUARD}")
# after unwrapping: a LaTeX command or an operator makes a prediction mathematics, whose capitals are
# variables ("\langle H\rangle \ll \Delta E"), not options
# (markdown emphasis aside: "**B**", "*B*" are not products)
_MATH_CONTENT_RE = re.compile(r"\\[A-Za-z]+|[=<>^_+/≤≥≠]|(?<=[\d)])\s*\*\s*(?=[\d(])")
_LETTER_LIST_PREFIX_RE = re.compile(
    r"(?i:(?:the\s+)?(?:correct\s+|final\s+)?(?:answers?|options?|choices?)(?:\s+(?:is|are))?)\s*[:=]?\s*"
)
_LETTER_ITEM = r"\(?[A-Z]\)?"
_LETTER_LIST_RE = {
    joined: re.compile(rf"{_LETTER_ITEM}(?: ?(?:[,;&]|and){'?' if joined else ''} ?{_LETTER_ITEM})*")
    for joined in (False, True)
}
_MAX_LETTER_LIST_CHARS = 200


def _letter_set(text: str, *, joined: bool) -> frozenset[str] | None:
    """The set of option letters ``text`` lists, or ``None``: ``"A, C"``, ``"C and A"``, ``"(A) & (C)"``,
    ``"Answers: A; C."``; with ``joined``, also ``"AC"`` (a gold is never read that way: ``"USA"`` is a
    word). Letters are capitals; a repeated letter is not a set."""
    core = " ".join(_strip_wrappers(text).replace("*", " ").split())
    if len(core) > _MAX_LETTER_LIST_CHARS:
        return None
    if prefix := _LETTER_LIST_PREFIX_RE.match(core):
        core = core[prefix.end() :]
    core = core.rstrip(" .")
    if not _LETTER_LIST_RE[joined].fullmatch(core):
        return None
    letters = re.findall(r"[A-Z]", core)
    return frozenset(letters) if len(set(letters)) == len(letters) else None


def _named_letters(prediction: str, choices: Sequence[str] | None = None) -> frozenset[str] | None:
    """The option letter(s) a prediction names: a list of two or more valid letters (``"(A) (C)"`` is not
    option A), else one letter (:func:`extract_choice`). Run-together letters (``"AC"``) count only when
    the option texts are unknown (with options, ``"UK"`` may be an option's text)."""
    letters = _letter_set(prediction, joined=not choices)
    valid = LETTERS[: len(choices)] if choices else LETTERS
    if letters is not None and len(letters) > 1 and all(letter in valid for letter in letters):
        return letters
    letter = extract_choice(prediction, choices)
    return frozenset(letter) if letter is not None else letters


def _unique(letters: Sequence[str]) -> str | None:
    distinct = set(letters)
    return distinct.pop() if len(distinct) == 1 else None


def extract_choice(prediction: object, choices: Sequence[str] | None = None) -> str | None:
    """The option letter a prediction names, or ``None``. In order of precedence:

    1. the whole prediction is a letter: ``b``, ``(B)``, ``B.``, ``**B**``;
    2. the last "answer/option/choice (is)" phrase: ``The answer is B``, ``option b``, ``"choice": "C"``
       (``A or B`` is ambiguous and names nothing);
    3. a leading option id: ``B) 12``, ``(B) 12``, ``A. Because …``;
    4. the text of exactly one of ``choices`` (case/punctuation-insensitive);
    5. a single distinct parenthesised letter ``(C)``, then a single distinct standalone capital
       (``A``/``I`` followed by a lowercase word are words, not options) — never in mathematics (a
       LaTeX command or an operator: the ``E`` of ``\\langle H\\rangle \\ll \\Delta E`` is a variable);
    6. a number or expression equal (Math-Verify) to exactly one mathematical choice text.

    Only letters that index ``choices`` count (A–Z without choices). The prediction is first unwrapped
    from ``<answer>…</answer>``, ``\\boxed{}``, ``\\text{}`` and ``$``.
    """
    if not isinstance(prediction, str) or not prediction.strip() or len(prediction) > MAX_PREDICTION_CHARS:
        return None
    valid = LETTERS[: len(choices)] if choices else LETTERS
    text = _strip_wrappers(prediction)

    def pick(letter: str | None) -> str | None:
        return letter.upper() if letter is not None and letter.upper() in valid else None

    if (match := _WHOLE_LETTER_RE.fullmatch(text)) and (letter := pick(match[1])):
        return letter
    phrases = list(_ANSWER_PHRASE_RE.finditer(text))
    if phrases and (letter := pick(phrases[-1]["upper"] or phrases[-1]["lower"])):
        return letter
    if (match := _LEADING_LETTER_RE.match(text)) and (letter := pick(match[1])):
        return letter
    if choices:
        tokens = _text_tokens(text)
        named = [LETTERS[i] for i, c in enumerate(choices) if tokens and _text_tokens(c) == tokens]
        if len(named) == 1:
            return named[0]
    mathematics = _MATH_CONTENT_RE.search(_EMPHASIS_RE.sub(" ", text)) is not None
    for pattern in () if mathematics else (_PAREN_LETTER_RE, _STANDALONE_CAPITAL_RE):
        letter = _unique([m[1].upper() for m in pattern.finditer(text) if m[1].upper() in valid])
        if letter:
            return letter
    if choices:
        equal = [
            LETTERS[i]
            for i, c in enumerate(choices)
            if c.strip() and infer_answer_type(c) == "number" and _number_correct(text, c, Fraction(0))
        ]
        if len(equal) == 1:
            return equal[0]
    return None


# ---------------------------------------------------------------------------------------------------------
# The judge


def _stray_equation(gold: Sequence[Any], pred: Sequence[Any]) -> bool:
    """A predicted equation in unknowns that is not an assignment (``2x + z = 1``) against a gold that is no
    equation: Math-Verify would compare its right-hand side alone, so any such equation ending in ``= 1``
    would match ``1``. An assignment (``x = 11`` for ``11``) and a worked computation (``7 + 5 = 12``
    for ``12``) still count."""
    if not pred or not gold or not is_equation(pred[0]) or is_equation(gold[0]):
        return False
    return not is_assignment_relation(pred[0]) and bool(getattr(pred[0], "free_symbols", None))


_RELATION_KINDS: dict[type, tuple[str, int]] = {
    sympy.Eq: ("=", 1),
    sympy.Ne: ("≠", 1),
    sympy.StrictLessThan: ("<", 1),
    sympy.LessThan: ("≤", 1),
    sympy.StrictGreaterThan: ("<", -1),  # a > b is b < a
    sympy.GreaterThan: ("≤", -1),
}


_MAX_CANCEL_NODES = 200  # larger relations go to Math-Verify (cancel expands: (x+y+z)^{60} hangs)
_MAX_CANCEL_EXPONENT = 12


def _cheap_to_cancel(expr: Any) -> bool:
    """Whether ``sympy.cancel`` on ``expr`` is quick: at most 200 nodes, integer powers up to 12."""
    for count, node in enumerate(sympy.preorder_traversal(expr)):
        if count >= _MAX_CANCEL_NODES:
            return False
        if isinstance(node, sympy.Pow) and not (
            node.exp.is_Integer and abs(int(node.exp)) <= _MAX_CANCEL_EXPONENT
        ):
            return False
    return True


def _relations_equal(gold: Any, pred: Any) -> bool | None:
    """Whether two single relations (``=``, ``≠``, ``<``, ``≤``, ``>``, ``≥``) state the same thing, when
    that is quick to decide, else ``None`` (Math-Verify decides, which can take ~1 s: it solves both).

    Written as ``d > 0`` (or ``d = 0``…) with ``d`` = one side minus the other, two relations of the same
    kind agree when ``d_gold / d_pred`` cancels to a constant, positive for inequalities
    (``y = 2x + 1`` ⇔ ``2y = 4x + 2``; ``x < y`` ⇔ ``y > x``); between polynomials anything else differs
    (``y = 2x + 1`` vs ``y = 3x + 1``; ``x < y`` vs ``x > y``)."""
    if type(gold) not in _RELATION_KINDS or type(pred) not in _RELATION_KINDS:
        return None
    (gold_kind, gold_sign), (pred_kind, pred_sign) = _RELATION_KINDS[type(gold)], _RELATION_KINDS[type(pred)]
    if gold_kind != pred_kind:
        return False
    gold_d, pred_d = gold_sign * (gold.rhs - gold.lhs), pred_sign * (pred.rhs - pred.lhs)
    if not _cheap_to_cancel(gold_d) or not _cheap_to_cancel(pred_d):
        return None
    try:
        ratio = sympy.cancel(gold_d / pred_d)
        if ratio.is_number and ratio.is_finite and ratio != 0:
            return bool(ratio > 0) if gold_kind in "<≤" else True
        if gold_d.is_polynomial() and pred_d.is_polynomial():
            return False
    except (TypeError, ValueError, ArithmeticError, RecursionError, AttributeError):
        pass
    return None


def _number_correct(prediction: str, answer: str, tolerance: Fraction) -> bool:
    """Numbers by value (:func:`_number_equal`; no tolerance for a year); expressions, equations and other
    math objects by Math-Verify, all of each side; a prose gold (``Over 30 mins``) as text."""
    if "".join(_clean(prediction).split()) == "".join(_clean(answer).split()):
        return True
    if not _DELIMITER_RE.search(_clean(answer)) and _is_prose(_strip_wrappers(answer)):
        return _text_correct(prediction, answer, tolerance, None)
    gold_values, pred_values = _numeric_values(answer), _numeric_values(prediction)
    if gold_values and pred_values:
        return _numbers_close(pred_values, gold_values, tolerance, year=_is_year(answer))
    gold_parsed, pred_parsed = _mv_parse(answer), _mv_parse(prediction)
    if not gold_parsed or not pred_parsed or _stray_equation(gold_parsed, pred_parsed):
        return False
    return _math_equal(answer, prediction)


@lru_cache(maxsize=16_384)
def _math_equal(answer: str, prediction: str) -> bool:
    """Math-Verify's verdict on two parsed answers (a quick path for single relations). Cached: the G
    completions of a prompt often repeat an answer."""
    gold_parsed, pred_parsed = _mv_parse(answer), _mv_parse(prediction)
    quick = _relations_equal(gold_parsed[0], pred_parsed[0])
    return quick if quick is not None else _mv_verify(gold_parsed, pred_parsed)


def _text_correct(prediction: str, answer: str, tolerance: Fraction, choices: Sequence[str] | None) -> bool:
    """Plain numbers by value; option letters whose options are not given (they live in the image) as
    letter sets; anything else by its tokens (:func:`_text_tokens`: case/whitespace/punctuation-insensitive,
    every number and operator kept)."""
    gold_plain, pred_plain = _plain_number(answer), _plain_number(prediction)
    if gold_plain is not None and pred_plain is not None:
        return _numbers_close(pred_plain, gold_plain, tolerance, year=_is_year(answer))
    gold_letters = None if choices else _letter_set(answer, joined=False)
    if gold_letters is not None:
        return _named_letters(prediction) == gold_letters
    tokens = _text_tokens(prediction)
    return bool(tokens) and tokens == _text_tokens(answer)


def is_correct(
    prediction: object,
    answer: str,
    *,
    answer_type: AnswerType | None = None,
    choices: Sequence[str] | None = None,
    tolerance: float = 0.0,
) -> bool:
    """Whether ``prediction`` (an extracted answer, or free text) matches the gold ``answer``.

    ``answer_type`` is one of ``"choice"``, ``"number"``, ``"text"`` (see the module docstring and
    ``docs/rewards.md``), or ``None`` to infer it with :func:`infer_answer_type`. ``tolerance`` is the
    relative tolerance of numeric comparisons (``|pred − gold| ≤ tol·|gold|``, boundary included; never
    for a year gold such as ``2010``); 0.0 means equal (a decimal of six or more significant digits also
    equals the value without a finite decimal form that it rounds: ``0.333333 = 1/3``). Never raises on the prediction: anything that is not a usable string is wrong.
    Raises ``ValueError``/``TypeError`` on invalid gold data.
    """
    answer_type, choices, tol = _check_gold(answer, answer_type, choices, tolerance)
    if not isinstance(prediction, str) or not prediction.strip() or len(prediction) > MAX_PREDICTION_CHARS:
        return False
    if answer_type == "choice":
        return _named_letters(prediction, choices) == {_choice_letter_of_gold(answer)}
    elif answer_type == "number":
        return _number_correct(prediction, answer, tol)
    elif answer_type == "text":
        return _text_correct(prediction, answer, tol, choices)
    raise AssertionError(f"unreachable: answer_type {answer_type!r} passed validation")


_FINAL_ANSWER_RE = re.compile(r"\b(?i:answers?)\b(?:\s+(?i:is|are))?\s*[:=]?\s*(?P<answer>[^\n]*)")


def graded_answer(
    text: object,
    answer: str,
    *,
    answer_type: AnswerType | None = None,
    choices: Sequence[str] | None = None,
) -> str | None:
    """The answer of a completion that the judge grades against the gold ``answer``: the last box
    (:func:`extract_answer`), except when the gold is an option letter (or a set of them) and the box
    names none — a mathematical expression such as ``\\boxed{\\langle H\\rangle \\ll \\Delta E}`` — and
    an explicit ``Answer: D`` follows the box: then that statement (here ``"D"``). ``None`` when there is
    no box. Never raises on the completion.
    """
    if not isinstance(text, str):
        return None
    part = answer_part(text)
    span = _last_box_span(part)
    box = None if span is None else part[span[0] : span[1]].strip()
    if not box or len(box) > MAX_PREDICTION_CHARS:
        return box or None
    if answer_type not in (None, "choice", "text") or not isinstance(answer, str):
        return box
    letter_gold = _choice_letter_of_gold(answer) if choices else _letter_set(answer, joined=False)
    if letter_gold is None:
        return box
    valid_choices = isinstance(choices, (list, tuple)) and 0 < len(choices) <= len(LETTERS)
    if _named_letters(box, choices if valid_choices else None) is not None:
        return box
    statements = list(_FINAL_ANSWER_RE.finditer(part, span[1] + 1))
    stated = statements[-1]["answer"].replace("*", " ").strip() if statements else ""
    return stated or box
