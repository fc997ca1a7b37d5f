"""Answer extraction and scoring: roma's judge and its TRL reward functions. No torch.

One judge, :func:`is_correct`, decides whether a predicted answer matches the gold answer of an example;
the rewards (:func:`accuracy_reward`, :func:`format_reward`) and the evaluation both use it, so a model is
trained and measured by the same rule. The conventions, and where roma deliberately differs from other
graders, are written out in ``docs/rewards.md``. In short:

- **What is graded.** A completion's answer is the content of its last ``\\boxed{…}`` (or ``\\fbox{…}``)
  after the last ``</think>``. Text inside a think block never counts: the box of an unclosed
  ``<think>`` (truncated reasoning) is ignored. No box, or a last box whose braces never close: no answer.
- **choice** answers are letters. A prediction names a letter as ``B``, ``(B)``, ``B.``, ``B) 12``,
  ``option b``, ``The answer is B``, ``<answer>B</answer>`` or as the text of one of the ``choices``.
- **number** answers are numbers or mathematical expressions: numbers (plain, or LaTeX that Math-Verify
  evaluates: ``½ = 0.5 = \\frac{1}{2}``) are compared by value, equal to 1e-6 or within the relative
  ``tolerance`` (``|pred − gold| ≤ tol·|gold|``, ChartQA's relaxed accuracy); other mathematical
  objects (intervals, sets, tuples, matrices, expressions) go through Math-Verify.
  ``−`` is a minus, ``7,425,000`` has thousands separators, and ``50%`` matches both ``0.5`` and ``50``.
- **text** answers are compared case-, whitespace- and punctuation-insensitively, and as numbers when
  both sides are plain numbers.

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
from typing import Any, Literal

import mpmath
import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
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
    "infer_answer_type",
    "is_correct",
]

MAX_PREDICTION_CHARS = 20_000
"""A prediction longer than this is wrong without being parsed (no answer is that long)."""

_EXACT = Fraction(1, 10**6)  # numbers closer than this are equal (Math-Verify rounds floats to 6 decimals)
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


def _last_box(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{}``/``\\fbox{}`` (boxes nested in it are part of it);
    ``None`` when there is no box or the last one never closes."""
    last, pos = None, 0
    while (match := _BOX_RE.search(text, pos)) is not None:
        end = _closing_brace(text, match.end())
        if end < 0:
            return None
        last, pos = text[match.end() : end], end + 1
    return last


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


def _norm_text(text: str) -> str:
    """Case-, whitespace- and punctuation-insensitive form, without a leading article:
    ``" The New-York. "`` -> ``"new york"`` (a lone ``"a"`` stays)."""
    text = unicodedata.normalize("NFKC", _strip_wrappers(text)).casefold()
    words = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text).split()
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


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


def _plain_number(text: str) -> tuple[Fraction, ...] | None:
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
    if match["den"] is not None:
        if int(match["den"]) == 0:
            return None
        value = Fraction(int(match["num"]), int(match["den"]))
    elif match["vulgar"] is not None:
        value = int(match["whole"] or 0) + Fraction(unicodedata.numeric(match["vulgar"])).limit_denominator(
            10
        )
    elif match["int"] is None and match["frac"] is None:
        return None
    else:
        value = Fraction(f"{(match['int'] or '0').replace(',', '')}.{match['frac'] or '0'}")
        if match["exp"] is not None:
            value *= Fraction(10) ** int(match["exp"])
    if match["sign"] == "-":
        value = -value
    return (value / 100, value) if percent else (value,)


def _tolerance_fraction(tolerance: float) -> Fraction:
    # repr() so that 0.05 means exactly 5/100: the boundary |pred − gold| = tol·|gold| is inside
    return Fraction(repr(float(tolerance)))


def _numbers_close(pred: Sequence[Fraction], gold: Sequence[Fraction], tolerance: Fraction) -> bool:
    """Any candidate pair within ``max(tol·|gold|, 1e-6)``."""
    return any(abs(p - g) <= max(tolerance * abs(g), _EXACT) for p in pred for g in gold)


# ---------------------------------------------------------------------------------------------------------
# Math-Verify, guarded


def _timeout() -> int | None:
    """Math-Verify's signal-based timeout only works in the main thread; elsewhere it must be None."""
    return _MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


_COMMAND_OR_TEXT_GROUP_RE = re.compile(
    r"\\(?:text\w*|mbox|mathrm|operatorname|begin|end)\s*\{[^{}]*\}|\\[A-Za-z]+"
)
_PROSE_WORD_RE = re.compile(r"[A-Za-z]{3,}")


def _as_latex(text: str) -> str:
    """Wrap bare LaTeX (``63\\pi``, ``6z^5+1``, ``\\begin{pmatrix}…``) in ``$…$`` so that Math-Verify
    reads it as LaTeX; text with delimiters, or prose, is left for Math-Verify's own extraction."""
    text = _clean(text).strip()
    if _DELIMITER_RE.search(text) or _BOX_RE.search(text) or not re.search(r"[\\^_{]", text):
        return text
    if _PROSE_WORD_RE.search(_COMMAND_OR_TEXT_GROUP_RE.sub(" ", text)):
        return text
    return f"${text}$"


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


def _sympy_values(parsed: Sequence[Any]) -> tuple[Fraction, ...]:
    """Real numeric values among Math-Verify results (a percentage gives both readings, as for plain
    numbers); empty when none is a number."""
    values: list[Fraction] = []
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
                if reading.is_Float:
                    values.append(Fraction(str(reading)))  # the decimal as written: 0.6 is 3/5
                elif reading.is_Rational:
                    values.append(Fraction(int(reading.p), int(reading.q)))
                else:
                    number = complex(sympy.N(reading, 30))
                    if number.imag == 0 and math.isfinite(number.real):
                        values.append(Fraction(number.real))
            except (TypeError, ValueError, OverflowError, ArithmeticError):
                continue
    return tuple(values)


# ---------------------------------------------------------------------------------------------------------
# Gold answers


def _looks_mathematical(gold: str) -> bool:
    if _DELIMITER_RE.search(_clean(gold)):
        return True
    core = _strip_wrappers(gold)
    return bool(re.search(r"[\d\\^_=<>+]", core))


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
       (``A``/``I`` followed by a lowercase word are words, not options);
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
        norm = _norm_text(text)
        named = [LETTERS[i] for i, c in enumerate(choices) if norm and _norm_text(c) == norm]
        if len(named) == 1:
            return named[0]
    for pattern in (_PAREN_LETTER_RE, _STANDALONE_CAPITAL_RE):
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


def _number_correct(prediction: str, answer: str, tolerance: Fraction) -> bool:
    """Numbers by value (exact to 1e-6, or within the tolerance); other math objects by Math-Verify."""
    if "".join(_clean(prediction).split()) == "".join(_clean(answer).split()):
        return True
    gold_values, pred_values = _numeric_values(answer), _numeric_values(prediction)
    if gold_values and pred_values:
        return _numbers_close(pred_values, gold_values, tolerance)
    gold_parsed, pred_parsed = _mv_parse(answer), _mv_parse(prediction)
    return bool(gold_parsed) and bool(pred_parsed) and _mv_verify(gold_parsed, pred_parsed)


def _text_correct(prediction: str, answer: str, tolerance: Fraction) -> bool:
    """Plain numbers by value; anything else by its case/whitespace/punctuation-insensitive form."""
    gold_plain, pred_plain = _plain_number(answer), _plain_number(prediction)
    if gold_plain is not None and pred_plain is not None:
        return _numbers_close(pred_plain, gold_plain, tolerance)
    norm = _norm_text(prediction)
    return bool(norm) and norm == _norm_text(answer)


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
    relative tolerance of numeric comparisons (``|pred − gold| ≤ tol·|gold|``, boundary included);
    0.0 means equal to 1e-6. Never raises on the prediction: anything that is not a usable string is wrong.
    Raises ``ValueError``/``TypeError`` on invalid gold data.
    """
    answer_type, choices, tol = _check_gold(answer, answer_type, choices, tolerance)
    if not isinstance(prediction, str) or not prediction.strip() or len(prediction) > MAX_PREDICTION_CHARS:
        return False
    if answer_type == "choice":
        return extract_choice(prediction, choices) == _choice_letter_of_gold(answer)
    elif answer_type == "number":
        return _number_correct(prediction, answer, tol)
    elif answer_type == "text":
        return _text_correct(prediction, answer, tol)
    raise AssertionError(f"unreachable: answer_type {answer_type!r} passed validation")


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
    """1.0 when a completion's boxed answer (:func:`extract_answer`) is correct (:func:`is_correct`), else 0.0.

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
        prediction = extract_answer(completion_text(completion))
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
