"""Small parsing helpers of the benchmark loaders: written-out options (:func:`parse_options`, WeMath's
``option`` string), option letters, numbers and list-valued cells. See :mod:`roma.data.benchmarks`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from roma.data.schema import (
    LETTERS,
)

# --------------------------------------------------------------------------------------------------
# small parsing helpers

_FULL_WIDTH = str.maketrans({"．": ".", "：": ":", "（": "(", "）": ")", "，": ",", "；": ";"})


def _option_styles(header: bool, option_list: bool) -> list[Callable[[str], re.Pattern[str]]]:
    """Marker patterns for letter ``L``, one per layout; ``header``: after ``Options:`` / ``Choices:``."""
    loose = r"(?:^|(?<=[\s,;]))"  # after a separator: "A: x, B: y", "A. 1; B. 2"
    line = r"(?:^|(?<=\n))[ \t]*"  # at a line start: "Q?\nA. left\nB. right"
    boundary = loose if header or option_list else line
    return [
        lambda letter: re.compile(r"\(" + letter + r"\)[ \t]*"),  # "(A) x (B) y", "Choices:\n(A) x\n(B) y"
        lambda letter: re.compile(boundary + letter + r"[ \t]*\.[ \t]*", re.MULTILINE),  # "A. x"
        lambda letter: re.compile(boundary + letter + r"[ \t]*:[ \t]*", re.MULTILINE),  # "A: x"
        lambda letter: re.compile(r"(?:^|(?<=[\s,;]))" + letter + r"\)[ \t]*", re.MULTILINE),  # "A) x B) y"
    ]


def _option_texts(text: str, markers: list[re.Match[str]]) -> list[str]:
    """The option texts between consecutive markers; the last one ends at the first line break."""
    options = []
    for i, marker in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        option = text[marker.end() : end]
        if i + 1 == len(markers):
            option = option.split("\n", 1)[0]
        options.append(option.strip().rstrip(",;").strip())
    return options


def parse_options(text: str) -> tuple[str, list[str]] | None:
    """Split a question with written-out options into ``(stem, [option texts])``, or ``None``.

    Layouts (letters run A, B, C, ... in order, at least two; full-width ``．：（）`` count as ``.:()``):

    - ``(A) x (B) y`` inline or one per line, with or without a ``Choices:`` header (MMStar's
      MathVista rows, LogicVista's ``Select from A, B and C. (A) True (B)False``);
    - ``A: x, B: y`` / ``A. x; B. y`` after an ``Options:`` / ``Choices:`` header (MMStar, MMRL30k), or
      when the whole text is the option list;
    - ``A. x`` at line starts (RealWorldQA), ``A) x B) y`` inline (LogicVista).

    One layout is used per text: the one whose ``A`` marker comes first (then the one finding most
    options), and every later letter must use the same marker, so option texts such as
    ``Team A and Team B.`` stay whole. The last option ends at the first line break, so trailing
    instructions are cut off.
    """
    original, text = text, text.translate(_FULL_WIDTH)  # one character for one: positions agree
    header = re.search(r"(?:^|\n|\s)(?:Options|Choices)\s*:\s*", text)
    start = header.end() if header is not None else 0
    option_list = header is None and re.match(r"\s*A\s*[.:)]", text) is not None
    best: tuple[int, int, list[re.Match[str]], list[str]] | None = None
    for style in _option_styles(header is not None, option_list):
        # the first "A" marker that starts a run of at least two non-empty options ("Select from (A), (B).
        # (A) 4cm, (B) 6cm" starts at the second "(A)")
        for first in style("A").finditer(text, start):
            markers = [first]
            for letter in LETTERS[1:]:
                match = style(letter).search(text, markers[-1].end())
                if match is None:
                    break
                markers.append(match)
            options = _option_texts(original, markers)
            if len(markers) >= 2 and all(options):
                rank = (first.start(), -len(markers))
                if best is None or rank < best[:2]:
                    best = (*rank, markers, options)
                break
    if best is None:
        return None
    markers, options = best[2], best[3]
    stem_end = header.start() if header is not None else markers[0].start()
    return original[:stem_end].strip(), options


def parse_wemath_options(option: str) -> tuple[list[str], list[str]] | None:
    """WeMath's ``option`` string -> ``(source letters, option texts)``, or ``None`` (under two options).

    Options are separated by ``;`` (``"A. 300, 400;B. 400, 300; E. No correct answer"``). The real file
    also has: full-width periods (``B．②``, row 2steps_59); a missing ``;`` (``"A. 45° B. 60° ;C. 120°"``);
    a text's final capital split off as a fake option (``"... get Shape ;C.; B. ..."``,
    ``"∠AB;E.;"``), which is glued back (``"Shape C."``, ``"∠ABE."``); a ``;`` inside an option's text
    (``"A. ①; ③;B. ②; ③"``); and letters that skip (``"C. No.; F. No correct answer"``), kept as written.
    Option texts are returned as written (full-width commas stay).
    """
    letters: list[str] = []
    texts: list[str] = []
    for segment in option.split(";"):
        marker = re.match(r"\s*([A-Z])\s*[.．]\s*", segment)
        later = marker is not None and (not letters or LETTERS.index(marker.group(1)) > LETTERS.index(letters[-1]))
        if marker is not None and later and segment[marker.end() :].strip():
            letters.append(marker.group(1))
            rest = segment[marker.end() :]
            # following options written without their ";": "A. 45° B. 60° " -> "45°", "60°"
            while (nxt := LETTERS[LETTERS.index(letters[-1]) + 1 : LETTERS.index(letters[-1]) + 2]) and (
                inline := re.search(r"(?<=\s)" + nxt + r"\s*[.．]\s+(?=\S)", rest)
            ):
                texts.append(rest[: inline.start()])
                letters.append(nxt)
                rest = rest[inline.end() :]
            texts.append(rest)
        elif texts and re.fullmatch(r"\s*[A-Z]\s*[.．]\s*", segment):  # "C." of "Shape ;C.": a split-off capital
            texts[-1] += segment.strip()
        elif texts:  # a ";" inside the option's text: "A. ①; ③;B. ②; ③"
            texts[-1] += ";" + segment
        elif segment.strip():
            return None
    texts = [t.strip().rstrip(";").strip() for t in texts]
    if len(texts) < 2 or any(not t for t in texts):
        return None
    return letters, texts


def as_number(text: str) -> float | None:
    """``"1,234.5"`` -> 1234.5, ``"12%"`` -> 12.0, ``"$3"`` -> 3.0; ``None`` when ``text`` is not a number."""
    cleaned = text.strip().replace(",", "").rstrip("%").lstrip("$").strip()
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", cleaned):
        return None
    return float(cleaned)


def _free_answer(answer: str) -> tuple[str, float]:
    """Answer type and tolerance of a free-form answer: ``number`` when the judge reads it as a number or
    a mathematical expression (:func:`roma.rewards.infer_answer_type`), else ``text``; exact."""
    from roma.rewards import infer_answer_type

    return ("number", 0.0) if infer_answer_type(answer) == "number" else ("text", 0.0)


def _letters(answer: str) -> list[str]:
    """``"A, C"`` -> ``["A", "C"]``, ``"(B)"`` / ``"B."`` -> ``["B"]``; ``[]`` unless the answer is option letters."""
    tokens = [t for t in re.split(r"[\s,;]+", answer.strip()) if t]
    letters = [re.sub(r"^\((.)\)$|^(.)\.$", r"\1\2", t) for t in tokens]
    if letters and all(len(t) == 1 and t in LETTERS for t in letters) and len(set(letters)) == len(letters):
        return sorted(letters)
    return []


def _plain(value: Any) -> str:
    """A list-valued cell (LogicVista's ``skill: ["inductive"]``) as ``"inductive"``; scalars as text."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value if v is not None and str(v).strip())
    return "" if value is None else str(value)
