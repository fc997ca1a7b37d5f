"""Plain numbers read from answers, and comparison by value within a relative tolerance. See
:mod:`roma.rewards`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from roma.rewards.extraction import _strip_wrappers

_ROUNDED_DIGITS = 6  # a decimal with this many significant digits may stand for an inexact value it rounds
_FLOAT_NOISE = Fraction(1, 10**12)  # two float evaluations of inexact values closer than this are equal
_MAX_PLAIN_NUMBER_CHARS = 200  # longer "numbers" go to Math-Verify (int() refuses > 4300 digits)

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
