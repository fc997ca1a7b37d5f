"""Answer extraction and scoring: roma's judge and its TRL reward functions. No torch.

One judge, :func:`is_correct`, decides whether a predicted answer matches the gold answer of an example;
the rewards (:func:`accuracy_reward`, :func:`format_reward`) and the evaluation both use it, so a model is
trained and measured by the same rule. The conventions, and where roma deliberately differs from other
graders, are written out in ``docs/rewards.md``. In short:

- **What is graded.** A completion's answer is the content of its last ``\\boxed{…}`` (or ``\\fbox{…}``)
  after the last ``</think>``. Text inside a think block never counts: the box of an unclosed
  ``<think>`` (truncated reasoning) is ignored. No box, or a last box whose braces never close: no answer.
  For a letter gold whose box names no option (``\\boxed{\\Delta E}``), an ``Answer: D`` after the box
  is the answer (:func:`graded_answer`).
- **choice** answers are letters. A prediction names a letter as ``B``, ``(B)``, ``B.``, ``B) 12``,
  ``option b``, ``The answer is B``, ``<answer>B</answer>`` or as the text of one of the ``choices``;
  never by a capital inside mathematics. Letter golds without option texts (options in the image) are
  letter sets: ``A, C`` = ``C and A``; ``C. 12`` names C.
- **number** answers are numbers or mathematical expressions: numbers (plain, or LaTeX that Math-Verify
  evaluates: ``½ = 0.5 = \\frac{1}{2}``) are compared by value: equal (a decimal of ≥ 6 significant
  digits also equals the ``1/3``, ``√2`` it rounds), or within the relative ``tolerance``
  (``|pred − gold| ≤ tol·|gold|``, ChartQA's relaxed accuracy; never for a year). Expressions and
  equations, bare or in LaTeX, and other mathematical objects (intervals, sets, tuples, matrices) are
  compared whole by Math-Verify. ``−`` is a minus, ``7,425,000`` has thousands separators, and ``50%``
  matches both ``0.5`` and ``50``.
- **text** answers are compared by their words, numbers and operators, case-, whitespace- and
  punctuation-insensitively (every number must match, ``x<y ≠ x>y``), and as numbers when both sides
  are plain numbers.

Nothing here raises on model output: a prediction that is ``None``, not a string, empty, longer than
:data:`MAX_PREDICTION_CHARS`, unbalanced or unparseable is simply wrong (reward 0.0). Invalid *gold* data
(an unknown ``answer_type``, a ``choice`` gold that is not a valid letter, a negative tolerance) raises
``ValueError``/``TypeError``.

Thread safety: Math-Verify times out with ``signal.alarm``, which only works in the main thread. roma
passes its timeouts only in the main thread and ``None`` elsewhere (as TRL does); in every thread a
structural guard (:func:`_log10_bound`) refuses expressions whose value would be astronomically large
(``9^{9^{9^9}}``, ``1000000!``), which are what make sympy hang, and input nested deeper than 12
brackets (Math-Verify's parser slows down by ~40 ms per level).
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import mpmath
import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.grader import is_assignment_relation, is_equation
from sympy.functions.combinatorial.factorials import factorial, factorial2, subfactorial

from roma.data.schema import ANSWER_TYPES, LETTERS

__all__ = [
    "MAX_PREDICTION_CHARS",
    "AnswerType",
    "REWARD_FUNCS",
    "accuracy_reward",
    "answer_part",
    "completion_text",
    "extract_answer",
    "extract_choice",
    "format_reward",
    "graded_answer",
    "infer_answer_type",
    "is_correct",
]

MAX_PREDICTION_CHARS = 20_000
"""A prediction longer than this is wrong without being parsed (no answer is that long)."""

_ROUNDED_DIGITS = 6  # a decimal with this many significant digits may stand for an inexact value it rounds
_FLOAT_NOISE = Fraction(1, 10**12)  # two float evaluations of inexact values closer than this are equal
_MATH_VERIFY_TIMEOUT_S = 5  # per parse / per comparison, main thread only
_MAX_LOG10 = 10_000.0  # refuse expressions whose value may have more digits than this
_MAX_NESTING = 12  # deeper ( [ { nesting is refused: Math-Verify's parser spends ~40 ms per level
_MAX_PLAIN_NUMBER_CHARS = 200  # longer "numbers" go to Math-Verify (int() refuses > 4300 digits)
_MATH_VERIFY_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"

AnswerType = Literal["choice", "number", "text"]  # the values of roma.data.schema.ANSWER_TYPES

# ---------------------------------------------------------------------------------------------------------
# Completions and answer extraction


def completion_text(completion: object) -> str | None:
    """The text of one completion as TRL passes it, or ``None`` when there is none.

    Accepts a string, or conversational messages ``[{"role": "assistant", "content": ...}]`` (the last
    assistant message is used; without roles, the last message), where ``content`` is a string or a list of
    parts (strings or ``{"type": "text", "text": ...}``; other parts such as images carry no text).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        message = completion
    elif isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        if not messages:
            return None
        assistant = [m for m in messages if m.get("role") == "assistant"]
        message = (assistant or messages)[-1]
    else:
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif (
                isinstance(part, dict)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            ):
                texts.append(part["text"])
        return "".join(texts) if texts else None
    return None


def answer_part(text: str) -> str:
    """The graded part of a completion, stripped: what follows the last ``</think>``.

    Without ``</think>``, the text before an unclosed ``<think>`` (reasoning that never ended does not
    count), or the whole text when there is no think tag at all.
    """
    if not isinstance(text, str):
        raise TypeError(f"answer_part expects a str, got {type(text).__name__}")
    if _THINK_CLOSE in text:
        return text.rsplit(_THINK_CLOSE, 1)[1].strip()
    if _THINK_OPEN in text:
        return text.split(_THINK_OPEN, 1)[0].strip()
    return text.strip()


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing a group whose content starts at ``start``; -1 if it never closes.
    Escaped braces (``\\{``, ``\\}``) and other ``\\x`` pairs do not count."""
    depth = 1
    for token in _BRACE_TOKEN_RE.finditer(text, start):
        if token.group() == "{":
            depth += 1
        elif token.group() == "}":
            depth -= 1
            if depth == 0:
                return token.start()
    return -1


def _last_box_span(text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the content of the last top-level ``\\boxed{}``/``\\fbox{}`` (boxes nested in
    it are part of it; ``text[end]`` is its closing brace); ``None`` when there is no box or the last one
    never closes."""
    last, pos = None, 0
    while (match := _BOX_RE.search(text, pos)) is not None:
        end = _closing_brace(text, match.end())
        if end < 0:
            return None
        last, pos = (match.end(), end), end + 1
    return last


def _last_box(text: str) -> str | None:
    """Content of the last top-level box (see :func:`_last_box_span`), or ``None``."""
    span = _last_box_span(text)
    return None if span is None else text[span[0] : span[1]]


def extract_answer(text: object) -> str | None:
    """The content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) in the answer part of ``text``.

    Nested braces are kept (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); the answer part is what follows
    the last ``</think>`` (see :func:`answer_part`). ``None`` when ``text`` is not a string, has no box
    there, its last box never closes, or the box is blank.
    """
    if not isinstance(text, str):
        return None
    content = _last_box(answer_part(text))
    if content is None or not content.strip():
        return None
    return content.strip()


# ---------------------------------------------------------------------------------------------------------
# Normalisation

_UNICODE_MINUS = str.maketrans({"\u2212": "-", "\ufe63": "-", "\uff0d": "-", "\u00a0": " "})
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_TEXT_CMD_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|textnormal|mathrm|mathbf|mathit|mathsf|mbox|operatorname)\s*"
    r"\{([^{}]*)\}"
)
_DELIMITER_RE = re.compile(r"\\[()\[\]]|\$")


def _clean(text: str) -> str:
    return text.translate(_UNICODE_MINUS)


def _strip_wrappers(text: str) -> str:
    """Unwrap an answer: last ``<answer>…</answer>``, last box, ``\\text{…}``-like commands, math
    delimiters and a ``\\$`` currency sign. ``"$\\boxed{\\text{(C)}}.$"`` -> ``"(C)."``."""
    text = _clean(text).strip()
    tags = _ANSWER_TAG_RE.findall(text)
    if tags:
        text = tags[-1].strip()
    if _BOX_RE.search(text):
        boxed = _last_box(text)
        if boxed is not None:
            text = boxed
    for _ in range(8):  # nested \text{\textbf{…}}
        unwrapped = _TEXT_CMD_RE.sub(r"\1", text)
        if unwrapped == text:
            break
        text = unwrapped
    text = text.replace("\\$", "")
    return _DELIMITER_RE.sub(" ", text).strip()


_ARTICLES = ("a", "an", "the")
_EMPHASIS_RE = re.compile(r"\*{2,}|_{2,}|^\*+|\*+$")  # markdown **bold**, __bold__, a leading/trailing *
# a hyphen between two words of two or more letters joins words ("New-York"); any other "-" is a minus
_JOINING_HYPHEN_RE = re.compile(r"(?<=[^\W\d_]{2})[-\u2010\u2011](?=[^\W\d_]{2})")
_OPERATOR_SPELLINGS = (("<=", "≤"), (">=", "≥"), ("!=", "≠"))
_PERCENT_WORD_RE = re.compile(r"\bper\s?cent\b")
_TEXT_TOKEN_RE = re.compile(
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"  # 1,000.5  12  .5
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<operator>[-<>=+*/^%≤≥≠±×÷∓])"
)


def _canonical_digits(number: str) -> str:
    """``"1,000.50"`` -> ``"1000.5"``, ``"007"`` -> ``"7"``, ``".5"`` -> ``"0.5"``: one spelling per value."""
    whole, _, decimals = number.replace(",", "").partition(".")
    whole, decimals = whole.lstrip("0") or "0", decimals.rstrip("0")
    return f"{whole}.{decimals}" if decimals else whole


def _text_tokens(text: str) -> tuple[str, ...]:
    """The words, numbers and operators of a text answer, case-, whitespace- and punctuation-insensitive,
    without a leading article: ``" The New-York. "`` -> ``("new", "york")`` (a lone ``"a"`` stays).

    Numbers are one token each in a canonical form (``"1,000"`` and ``"1000.0"`` are the same token), so
    two texts are equal only if every number matches. Comparison and arithmetic operators are tokens and
    never dropped (``x<y`` ≠ ``x>y``; ``<=`` is ``≤``); a hyphen joining two words is a space, any other
    ``-`` is a minus. Markdown emphasis (``**``) is dropped, other punctuation separates tokens.
    """
    text = unicodedata.normalize("NFKC", _strip_wrappers(text)).casefold()
    text = _JOINING_HYPHEN_RE.sub(" ", _EMPHASIS_RE.sub(" ", text.strip()))
    for spelling, symbol in _OPERATOR_SPELLINGS:
        text = text.replace(spelling, symbol)
    text = _PERCENT_WORD_RE.sub("%", text)
    tokens = [
        _canonical_digits(match["number"]) if match["number"] else match.group()
        for match in _TEXT_TOKEN_RE.finditer(text)
    ]
    if len(tokens) > 1 and tokens[0] in _ARTICLES:
        tokens = tokens[1:]
    return tuple(tokens)


_VULGAR = "¼½¾⅐⅑⅒⅓⅔⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞"
_PERCENT_RE = re.compile(r"\s*(?:\\?%|percent|per\s*cent|pct)$", re.IGNORECASE)
_CURRENCY = "$€£¥"
_PLAIN_NUMBER_RE = re.compile(
    rf"""(?P<sign>[+-])?\s*[{_CURRENCY}]?\s*(?:
        (?P<num>\d+)\s*/\s*(?P<den>\d+)                                          # 3/4
      | (?P<whole>\d+)?\s*(?P<vulgar>[{_VULGAR}])                                # ½, 2½
      | (?P<int>\d{{1,3}}(?:,\d{{3}})+|\d+)?(?:\.(?P<frac>\d+))?(?:[eE](?P<exp>[+-]?\d{{1,4}}))?  # 7,425,000.5
    )\s*[{_CURRENCY}]?""",
    re.VERBOSE,
)


class _Number(NamedTuple):
    """A number read from an answer, with what is known about how it was written."""

    value: Fraction
    inexact: bool = False
    """The value has no finite decimal form (``1/3``, and ``√2``, ``π`` whose value is then a float)."""
    ulp: Fraction | None = None
    """For a decimal written with at least :data:`_ROUNDED_DIGITS` significant digits (``0.333333``), one
    unit of its last digit: it may be a rounded or truncated value of an inexact number."""

    def scaled(self, factor: Fraction) -> _Number:
        return _Number(self.value * factor, self.inexact, None if self.ulp is None else self.ulp * factor)


def _terminates(value: Fraction) -> bool:
    """Whether ``value`` has a finite decimal form (its denominator has no prime factor but 2 and 5)."""
    q = value.denominator
    for prime in (2, 5):
        while q % prime == 0:
            q //= prime
    return q == 1


def _rational(value: Fraction) -> _Number:
    return _Number(value, inexact=not _terminates(value))


def _decimal(mantissa: str, exponent: int = 0) -> _Number:
    """A decimal as written: ``mantissa`` is ``[-]digits[.digits]`` (no separators)."""
    value = Fraction(mantissa) * Fraction(10) ** exponent if exponent else Fraction(mantissa)
    digits = mantissa.lstrip("+-").replace(".", "").lstrip("0")
    if len(digits) < _ROUNDED_DIGITS:
        return _Number(value)
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return _Number(value, ulp=Fraction(10) ** (exponent - decimals))


@lru_cache(maxsize=16_384)
def _plain_number(text: str) -> tuple[_Number, ...] | None:
    """The value(s) of a plain number, or ``None``: ``"−1,000.5"`` -> ``(-1000.5,)``; a percentage gives
    its fraction and its bare number (``"50%"`` -> ``(1/2, 50)``). Handles ``$…$``/``\\boxed{}``/
    ``\\text{}`` wrappers, LaTeX thousands separators (``{,}``, ``,\\!``), thin spaces, currency signs,
    unicode vulgar fractions and a trailing full stop. A decimal comma is not a plain number."""
    text = _strip_wrappers(text)
    if len(text) > _MAX_PLAIN_NUMBER_CHARS:
        return None
    text = text.replace("{,}", ",").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    text = re.sub(r"(?<=\d)[\u2009\u202f\u2007](?=\d)", "", text).strip()
    text = text[:-1].rstrip() if text.endswith(".") else text
    percent = _PERCENT_RE.search(text)
    if percent:
        text = text[: percent.start()]
    match = _PLAIN_NUMBER_RE.fullmatch(text.strip())
    if match is None:
        return None
    sign = -1 if match["sign"] == "-" else 1
    if match["den"] is not None:
        if int(match["den"]) == 0:
            return None
        number = _rational(sign * Fraction(int(match["num"]), int(match["den"])))
    elif match["vulgar"] is not None:
        vulgar = Fraction(unicodedata.numeric(match["vulgar"])).limit_denominator(10)
        number = _rational(sign * (int(match["whole"] or 0) + vulgar))
    elif match["int"] is None and match["frac"] is None:
        return None
    else:
        mantissa = (match["int"] or "0").replace(",", "") + (f".{match['frac']}" if match["frac"] else "")
        number = _decimal(("-" if sign < 0 else "") + mantissa, int(match["exp"] or 0))
    return (number.scaled(Fraction(1, 100)), number) if percent else (number,)


def _tolerance_fraction(tolerance: float) -> Fraction:
    # repr() so that 0.05 means exactly 5/100: the boundary |pred − gold| = tol·|gold| is inside
    return Fraction(repr(float(tolerance)))


_YEAR_RE = re.compile(r"(?:19|20)\d\d|2100")


@lru_cache(maxsize=4096)
def _is_year(answer: str) -> bool:
    """A gold written as a bare integer from 1900 to 2100 (``2010``; not ``2,010``, ``2010.0``, ``-2010``)
    is read as a year, a label that the relative tolerance never applies to."""
    return _YEAR_RE.fullmatch(_strip_wrappers(answer).rstrip(".").strip()) is not None


def _number_equal(pred: _Number, gold: _Number, tolerance: Fraction) -> bool:
    """Equal values; or within the relative tolerance ``|pred − gold| ≤ tol·|gold|`` (so a gold of 0 is
    only matched by 0); or, when one side has no finite decimal form (``1/3``, ``√2``), the other is a
    decimal of ≥ 6 significant digits that rounds or truncates it (closer than one unit of its last
    digit); or both are evaluations of inexact values equal up to float noise."""
    difference = abs(pred.value - gold.value)
    if difference == 0 or difference <= tolerance * abs(gold.value):
        return True
    for written, other in ((pred, gold), (gold, pred)):
        if written.ulp is not None and other.inexact and difference < written.ulp:
            return True
    return (
        pred.inexact and gold.inexact and difference <= _FLOAT_NOISE * max(abs(pred.value), abs(gold.value))
    )


def _numbers_close(
    pred: Sequence[_Number], gold: Sequence[_Number], tolerance: Fraction, *, year: bool = False
) -> bool:
    """Any candidate pair equal by :func:`_number_equal`; no tolerance for a year gold."""
    tolerance = Fraction(0) if year else tolerance
    return any(_number_equal(p, g, tolerance) for p in pred for g in gold)


# ---------------------------------------------------------------------------------------------------------
# Math-Verify, guarded


def _timeout() -> int | None:
    """Math-Verify's signal-based timeout only works in the main thread; elsewhere it must be None."""
    return _MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


_COMMAND_OR_TEXT_GROUP_RE = re.compile(
    r"\\(?:text\w*|mbox|mathrm|operatorname|begin|end)\s*\{[^{}]*\}|\\[A-Za-z]+"
)
# In bare text a word of two or more letters is prose ("5 km"), except these function names; in LaTeX
# (``\ ^ _ {`` present) words of three or more letters ("\frac{dy}{dx}" is mathematics)
_PROSE_WORD_RE = {2: re.compile(r"[^\W\d_]{2,}"), 3: re.compile(r"[^\W\d_]{3,}")}
_LATEX_MARK_RE = re.compile(r"[\\^_{]")
_MATH_WORDS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp sqrt max min mod gcd lcm "
    "det pi inf oo".split()
)


def _is_prose(text: str) -> bool:
    """Whether ``text`` (LaTeX commands and ``\\text{…}`` groups aside) holds a word that is not a
    function name: ``"Over 30 mins"``, ``"5 km"`` are prose; ``"y = 2x + 1"``, ``"\\sin(x)^2"`` are not."""
    words = _PROSE_WORD_RE[3 if _LATEX_MARK_RE.search(text) else 2].findall(
        _COMMAND_OR_TEXT_GROUP_RE.sub(" ", text)
    )
    return any(word.casefold() not in _MATH_WORDS for word in words)


_BARE_MATH_RE = re.compile(r"[A-Za-z\\^_{=<>+\-*/≤≥≠]")


def _as_latex(text: str) -> str:
    """Wrap a bare expression or equation (``63\\pi``, ``6z^5+1``, ``\\begin{pmatrix}…``, ``y = 2x + 1``,
    ``x<y``) in ``$…$`` so that Math-Verify reads all of it as LaTeX, never just one of its numbers. Text
    with delimiters or a box, prose, and text without letters or operators (``1,22``, ``32, 349``) are
    left to Math-Verify's own extraction."""
    text = _clean(text).strip()
    if _DELIMITER_RE.search(text) or _BOX_RE.search(text) or _is_prose(text):
        return text
    return f"${text.rstrip('. ')}$" if _BARE_MATH_RE.search(text) else text  # "y = 2x + 1." ends a sentence


def _log10_bound(expr: Any) -> float:
    """An upper bound on log10 of the largest number evaluating ``expr`` can produce (``inf`` when it is
    hopeless). Symbols and constants count as 1 digit. Used to refuse ``9^{9^{9^9}}`` before sympy hangs."""
    if isinstance(expr, sympy.MatrixBase):
        return max((_log10_bound(e) for e in expr), default=0.0)
    if not isinstance(expr, sympy.Basic):
        return 0.0
    if expr.is_Integer or expr.is_Rational:
        return max(int(expr.p).bit_length(), int(expr.q).bit_length()) * math.log10(2)
    if expr.is_Float:
        return max(float(mpmath.mag(mpmath.mpf(expr))), 0.0) * math.log10(2)
    if expr.is_Atom:
        return 1.0
    args = [_log10_bound(a) for a in expr.args]
    if isinstance(expr, sympy.Pow):
        base, exponent = args
        if expr.exp.is_Number:
            magnitude = abs(float(expr.exp)) if exponent < 7 else math.inf
        else:
            magnitude = 10.0**exponent if exponent < 7 else math.inf
        return max(base, 1.0) * magnitude
    if isinstance(expr, (factorial, factorial2, subfactorial, sympy.gamma)):
        return 10.0 ** args[0] * max(args[0], 1.0) if args[0] < 7 else math.inf
    if isinstance(expr, sympy.exp):
        return 10.0 ** args[0] if args[0] < 7 else math.inf
    if isinstance(expr, sympy.Mul):
        return sum(args)
    return max(args, default=0.0) + 1.0


def _is_small(parsed: Sequence[Any]) -> bool:
    try:
        return all(_log10_bound(item) <= _MAX_LOG10 for item in parsed)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return False


def _max_nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
    return deepest


class _DropTimeoutDisabledWarning(logging.Filter):
    """roma disables Math-Verify's timeout off the main thread on purpose (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


@lru_cache(maxsize=16_384)
def _mv_parse(text: str) -> tuple[Any, ...]:
    """Math-Verify's parse with roma's extraction config (boxed first, LaTeX then plain expressions);
    () when nothing is found, the input nests deeper than :data:`_MAX_NESTING`, or the result is too
    large to compare safely. Cached: golds repeat G times per prompt, and so do many predictions."""
    if _max_nesting(text) > _MAX_NESTING:
        return ()
    try:
        parsed = parse(
            _as_latex(text), list(_MATH_VERIFY_CONFIG), parsing_timeout=_timeout(), raise_on_error=False
        )
    except Exception:  # math-verify/sympy can fail in unforeseen ways on adversarial model output
        return ()
    return tuple(parsed) if _is_small(parsed) else ()


def _mv_verify(gold: Sequence[Any], pred: Sequence[Any]) -> bool:
    try:
        return bool(verify(list(gold), list(pred), timeout_seconds=_timeout(), raise_on_error=False))
    except Exception:  # as in _mv_parse: a failed comparison is a wrong answer, never a crash
        return False


_PERCENT_FACTOR = sympy.UnevaluatedExpr(sympy.Rational(1, 100))


def _float_number(reading: Any) -> _Number:
    """A sympy Float as the decimal that was written: sympy pads to 15 digits (``0.600000000000000``)."""
    mantissa, _, exponent = str(reading).partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return _decimal(mantissa, int(exponent or 0))


def _sympy_values(parsed: Sequence[Any]) -> tuple[_Number, ...]:
    """Real numeric values among Math-Verify results (a percentage gives both readings, as for plain
    numbers); empty when none is a number."""
    values: list[_Number] = []
    for item in parsed:
        if not isinstance(item, sympy.Basic):
            continue
        readings = [item]
        if isinstance(item, sympy.Mul) and len(item.args) == 2 and item.args[1] == _PERCENT_FACTOR:
            readings = [item.args[0] / 100, item.args[0]]
        for reading in readings:
            try:
                if not reading.is_number or reading.free_symbols:
                    continue
                reading = reading.doit()  # "1 - 1" parses as an unevaluated sum; its value is exactly 0
                if reading.is_Float:
                    values.append(_float_number(reading))  # the decimal as written: 0.6 is 3/5
                elif reading.is_Rational:
                    values.append(_rational(Fraction(int(reading.p), int(reading.q))))
                else:
                    number = complex(sympy.N(reading, 30))
                    if number.imag == 0 and math.isfinite(number.real):
                        values.append(_Number(Fraction(number.real), inexact=True))
            except (TypeError, ValueError, OverflowError, ArithmeticError):
                continue
    return tuple(values)


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


# ---------------------------------------------------------------------------------------------------------
# TRL reward functions


def _per_sample(name: str, values: object, n: int, *, scalar_ok: bool) -> list[Any]:
    """TRL passes every dataset column as a list with one item per completion."""
    if values is None:
        return [None] * n
    if isinstance(values, (list, tuple)):
        if len(values) != n:
            raise ValueError(
                f"{name} has {len(values)} entries for {n} completions; expected one per completion"
            )
        return list(values)
    if scalar_ok:
        return [values] * n
    raise TypeError(f"{name} must be a list with one entry per completion, got {type(values).__name__}")


def accuracy_reward(completions: Sequence[Any], answer: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 when a completion's answer (:func:`graded_answer`: its last box) is correct (:func:`is_correct`),
    else 0.0.

    TRL reward-function form: ``completions`` are strings or conversational messages; ``answer`` and the
    optional per-sample columns ``choices``, ``answer_type``, ``tolerance`` are lists with one item per
    completion (``answer_type``/``tolerance`` may also be a single value for all). A missing
    ``tolerance`` is 0.0 and a missing ``answer_type`` is inferred. Other keyword arguments (``prompts``,
    ``completion_ids``, ``trainer_state``, image columns…) are ignored.
    """
    n = len(completions)
    answers = _per_sample("answer", answer, n, scalar_ok=False)
    choices = _per_sample("choices", kwargs.get("choices"), n, scalar_ok=False)
    answer_types = _per_sample("answer_type", kwargs.get("answer_type"), n, scalar_ok=True)
    tolerances = _per_sample("tolerance", kwargs.get("tolerance"), n, scalar_ok=True)
    rewards = []
    for completion, gold, options, kind, tol in zip(completions, answers, choices, answer_types, tolerances):
        prediction = graded_answer(
            completion_text(completion), gold, answer_type=kind, choices=options or None
        )
        correct = is_correct(
            prediction, gold, answer_type=kind, choices=options or None, tolerance=0.0 if tol is None else tol
        )
        rewards.append(1.0 if correct else 0.0)
    return rewards


_FORMAT_RE = re.compile(r"\s*<think>(?P<reasoning>.*?)</think>(?P<answer>.*)", re.DOTALL)


def _well_formatted(text: str | None) -> bool:
    if text is None:
        return False
    match = _FORMAT_RE.fullmatch(text)
    if match is None or _THINK_OPEN in match["reasoning"] or _THINK_OPEN in match["answer"]:
        return False
    if _THINK_CLOSE in match["answer"]:
        return False
    return extract_answer(text) is not None


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when a completion is ``<think>…</think>`` followed by an answer holding a ``\\boxed{…}``.

    Precisely: optional leading whitespace, then ``<think>``, the reasoning (possibly empty), ``</think>``,
    then an answer part whose last box closes and is not blank; exactly one ``<think>`` and one
    ``</think>`` in the whole completion. Text around the box is allowed. Keyword arguments are ignored.
    """
    return [1.0 if _well_formatted(completion_text(c)) else 0.0 for c in completions]


REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {"accuracy": accuracy_reward, "format": format_reward}
"""Reward functions by the name configs use."""
