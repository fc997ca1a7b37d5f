"""Math-Verify, guarded: parsing and comparison with timeouts in the main thread only, and structural
guards against expressions too large or too deeply nested to evaluate. See :mod:`roma.rewards`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

import mpmath
import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from sympy.functions.combinatorial.factorials import factorial, factorial2, subfactorial

from roma.rewards.extraction import _BOX_RE, _DELIMITER_RE, _clean
from roma.rewards.numeric import _decimal, _Number, _rational

_MATH_VERIFY_TIMEOUT_S = 5  # per parse / per comparison, main thread only
_MAX_LOG10 = 10_000.0  # refuse expressions whose value may have more digits than this
_MAX_NESTING = 12  # deeper ( [ { nesting is refused: Math-Verify's parser spends ~40 ms per level
_MATH_VERIFY_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())

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
