"""Loaders for the paper's seven evaluation benchmarks and its training set, in roma's schema.

Each loader reads a benchmark in the forms its users hold it and normalises every row to the common
schema of :mod:`roma.data.schema` (``id, task, image, prompt, answer, choices, answer_type, tolerance``):

==================  =========================  ===========  ======================================
name                hub id                     split        answers
==================  =========================  ===========  ======================================
``mathvista``       ``AI4Math/MathVista``      testmini     choice letter / number (precision) / text
``wemath``          ``We-Math/We-Math``        testmini     choice letter (options in ``option``)
``chartqa``         ``lmms-lab/ChartQA``       test         number (5 % relaxed) / text
``logicvista``      ``lscpku/LogicVista``      test         letter(s), options inside the question
``mmstar``          ``Lin-Chen/MMStar``        val          choice letter (options inline)
``visualpuzzles``   ``neulab/VisualPuzzles``   test         choice letter (options list or image)
``realworldqa``     ``xai-org/RealworldQA``    test         choice letter (options inline) / number / text
``mmrl30k``         ``XenoZLH/MMRL30k``        train        choice letter / number / text
==================  =========================  ===========  ======================================

Forms that load (:func:`read_source`): a hub id or registry name, read **offline from the local Hugging
Face cache** (a clean ``ValueError`` when it is not there); a ``save_to_disk`` folder (``Dataset`` or
``DatasetDict``); a downloaded repository snapshot or its ``data/`` folder (parquet shards named
``<split>-NNNNN-of-NNNNN*.parquet``; json / markdown side files are ignored); a single parquet, jsonl or
json file (json: a list of rows, or an object of rows keyed by id as MathVista's and LogicVista's own
repositories publish them). Known alternative copies (:attr:`BenchmarkSpec.alt_hub_ids`, e.g. ChartQA
from HuggingFaceM4 or its authors) read through the same loader.

The split is always explicit: the caller's ``split`` or the registry's default, picked from the files'
names or the ``DatasetDict``; rows of another split are never merged in. A split that is absent is an
error listing the splits present (:attr:`BenchmarkSpec.split_aliases` names the few renamed splits that
are accepted with a warning).

Bad rows: a row whose image is missing or broken, or whose question / answer / options cannot be read,
is skipped and reported with its id and reason (:class:`LoadedBenchmark`); one bad row never aborts a
benchmark. Only when more than ``max_skipped_share`` (default :data:`MAX_SKIPPED_SHARE`) of the rows are
unusable is the benchmark refused, with a ``ValueError`` naming the share and the first bad rows.

Prompts follow lmms-eval's task prompts (``lmms_eval/tasks/<benchmark>/``, the ``*_reasoning`` /
``*_thinking`` / ``*_cot`` variants where they exist; see ``docs/evaluation.md``), with roma's answer
instruction (think, then ``\\boxed{}``) in place of the benchmark's direct-answer line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import datasets
from PIL import Image

from roma.data.images import ImageError, open_image, to_rgb_image, undecoded_column, upright
from roma.data.schema import (
    COLUMNS,
    LETTERS,
    features,
    make_text_prompt,
    unique_ids,
    validate_example,
    with_image_parts,
)

CHARTQA_TOLERANCE = 0.05
"""ChartQA's relaxed accuracy: a numeric answer within 5 % of the gold counts as correct."""

MAX_SKIPPED_SHARE = 0.2
"""Largest share of a benchmark's rows that may be skipped as unusable before loading is refused."""

FEATURES = features()
"""The Arrow features of every normalised benchmark (the columns of :data:`roma.data.schema.COLUMNS`)."""


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


# --------------------------------------------------------------------------------------------------
# per-benchmark row normalisers: (row, row index) -> the schema fields except id and image


class RowError(ValueError):
    """A row lacks a usable value; carries the field name for the skip reason."""

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(detail)
        self.field_name = field_name


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        raise RowError(name, f"field {name!r} is empty")
    return str(value).strip()


def _choice_example(body: str, choices: list[str], answer_letter: str, task: str) -> dict[str, Any]:
    return {
        "task": task,
        "prompt": make_text_prompt(body, choice=True),
        "answer": answer_letter,
        "choices": list(choices),
        "answer_type": "choice",
        "tolerance": 0.0,
    }


def _free_example(body: str, answer: str, task: str, *, tolerance: float | None = None) -> dict[str, Any]:
    answer_type, default_tolerance = _free_answer(answer)
    return {
        "task": task,
        "prompt": make_text_prompt(body),
        "answer": answer,
        "choices": [],
        "answer_type": answer_type,
        "tolerance": default_tolerance if tolerance is None or answer_type != "number" else tolerance,
    }


def _letter_example(question: str, answer: str, task: str, *, body: str | None = None) -> dict[str, Any]:
    """A multiple-choice question whose options are written in ``question`` or drawn in the image.

    ``body`` is the prompt text (default: ``question``). Options that parse and a one-letter gold among
    them make a ``choice`` example; other letter golds (several letters, or options only in the image)
    are compared as text, with a line saying how to answer.
    """
    body = question if body is None else body
    parsed = parse_options(question)
    letters = _letters(answer)
    if parsed is not None and len(letters) == 1 and letters[0] in LETTERS[: len(parsed[1])]:
        return _choice_example(body, parsed[1], letters[0], task)
    if len(letters) > 1:
        hint = "Answer with the letters of all correct options, separated by commas."
        gold = ", ".join(letters)
    elif len(letters) == 1:
        hint, gold = "Answer with the option's letter.", letters[0]
    else:
        return _free_example(body, answer, task)
    return {
        "task": task,
        "prompt": make_text_prompt(f"{body}\n{hint}"),
        "answer": gold,
        "choices": [],
        "answer_type": "text",
        "tolerance": 0.0,
    }


MATHVISTA_HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, "
    "at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, "
    "e.g., 1, 2, 3, at the end.",
    "float1": "Hint: Please answer the question requiring a floating-point number with one decimal place and "
    "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Hint: Please answer the question requiring a floating-point number with two decimal places and "
    "provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}
"""MathVista's answer-format hints (its ``build_query``; lmms-eval ``mathvista_evals.py``, shot type
``step-by-step``), keyed by question / answer type and precision."""


def _precision(row: dict[str, Any]) -> int | None:
    value = row.get("precision")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def mathvista_query(row: dict[str, Any]) -> str:
    """MathVista's zero-shot step-by-step query: ``Question: q (Unit: u)``, ``Choices:`` lines
    ``(A) x``, then the hint for the answer type and precision (lmms-eval ``mathvista_testmini_cot``)."""
    question = f"Question: {str(row['question']).strip()}"
    if row.get("unit"):
        question += f" (Unit: {row['unit']})"
    parts = [question]
    choices = [str(c) for c in (row.get("choices") or [])]
    if choices:
        parts.append("\n".join(["Choices:"] + [f"({LETTERS[i]}) {c}" for i, c in enumerate(choices)]))
    if row.get("question_type") == "multi_choice":
        key = "multi_choice"
    elif row.get("answer_type") == "float":
        key = f"float{_precision(row)}"
    else:
        key = str(row.get("answer_type"))
    if key in MATHVISTA_HINTS:
        parts.append(MATHVISTA_HINTS[key])
    return "\n".join(parts)


def _mathvista(row: dict[str, Any], index: int) -> dict[str, Any]:
    _text(row, "question")
    if row.get("answer") is None or not str(row["answer"]).strip():
        raise RowError("answer", "field 'answer' is empty (MathVista's test split has no released answers)")
    answer = str(row["answer"]).strip()
    metadata = row.get("metadata") or {}
    task = str(metadata.get("task") or "mathvista")
    body = mathvista_query(row)
    meta = {"question_type": row.get("question_type"), "answer_type": row.get("answer_type"),
            "precision": _precision(row), "choices": [str(c) for c in (row.get("choices") or [])],
            "answer": answer}
    if row.get("question_type") == "multi_choice":
        choices = meta["choices"]
        if answer not in choices:
            raise RowError("answer", f"multi_choice answer {answer!r} is not one of its choices {choices}")
        return {**_choice_example(body, choices, LETTERS[choices.index(answer)], task), "meta": meta}
    answer_type = row.get("answer_type")
    value = as_number(answer)
    if answer_type in ("integer", "float") and value is not None:
        precision = _precision(row)
        tolerance = 0.0
        if answer_type == "float" and precision is not None and value != 0:
            # MathVista compares after rounding to `precision` decimals: half a unit of the last place.
            tolerance = 0.5 * 10 ** (-precision) / abs(value)
        return {**_free_example(body, answer, task, tolerance=tolerance), "meta": meta}
    return {**_free_example(body, answer, task), "answer_type": "text", "tolerance": 0.0, "meta": meta}


def _wemath(row: dict[str, Any], index: int) -> dict[str, Any]:
    question, answer, option = _text(row, "question"), _text(row, "answer"), _text(row, "option")
    parsed = parse_wemath_options(option)
    if parsed is None:
        raise RowError("option", f"cannot read lettered options from {option!r}")
    source_letters, texts = parsed
    letters = _letters(answer)
    if len(letters) != 1 or letters[0] not in source_letters:
        raise RowError("answer", f"answer {answer!r} is not one of the letters {source_letters} of {option!r}")
    # lmms-eval wemath_testmini_thinking: question + "\n" + option; the options re-written from the parsed
    # list (lettered A, B, ... in order), which heals the source's split texts
    listing = "; ".join(f"{LETTERS[i]}. {t}" for i, t in enumerate(texts))
    meta = {"ID": str(row.get("ID")), "key": str(row.get("key"))}
    example = _choice_example(f"{question}\n{listing}", texts, LETTERS[source_letters.index(letters[0])],
                              str(row.get("key") or "wemath"))
    return {**example, "meta": meta}


CHARTQA_TYPES = {"human_test": "human", "augmented_test": "augmented", "human": "human",
                 "augmented": "augmented", "machine": "augmented"}
"""ChartQA's two test sets under every copy's naming (lmms-lab ``type``, HuggingFaceM4 ``human_or_machine``,
the authors' ``type``): human-written questions, or machine-generated (augmented) ones."""


def _chartqa(row: dict[str, Any], index: int) -> dict[str, Any]:
    question = _text(row, "question" if "question" in row else "query")
    if "answer" in row:
        answer = _text(row, "answer")
    else:
        label = row.get("label")
        if isinstance(label, (list, tuple)):  # HuggingFaceM4/ChartQA: a list of gold answers
            label = label[0] if label else None
        if label is None or not str(label).strip():  # the authors' copy: a plain string
            raise RowError("label", "field 'label' is empty")
        answer = str(label).strip()
    kind = row.get("type") if row.get("type") is not None else row.get("human_or_machine")
    kind = {0: "human", 1: "machine"}.get(kind, kind) if isinstance(kind, int) else kind
    task = CHARTQA_TYPES.get(str(kind), str(kind or "chartqa"))
    # lmms-eval chartqa_reasoning: the question as written
    return _free_example(question, answer, task, tolerance=CHARTQA_TOLERANCE)


def _logicvista(row: dict[str, Any], index: int) -> dict[str, Any]:
    question = _text(row, "question")
    # lmms-eval logicvista_thinking: the question as written (options inline or in the image)
    return _letter_example(question, _text(row, "answer"), _plain(row.get("skill")) or "logicvista")


MMSTAR_DIRECT = " Please answer yes or no."
"""Removed from MMStar questions as lmms-eval's ``mmstar_doc_to_text`` does when it appends its own
answer instruction."""


def _mmstar(row: dict[str, Any], index: int) -> dict[str, Any]:
    question = _text(row, "question")
    body = question.replace(MMSTAR_DIRECT, "")
    example = _letter_example(question, _text(row, "answer"), _plain(row.get("category")) or "mmstar", body=body)
    return {**example, "meta": {"category": _plain(row.get("category")), "l2_category": _plain(row.get("l2_category"))}}


VISUALPUZZLES_IN_IMAGE = "Options: Choose from (A) (B) (C) (D) in the image."
"""lmms-eval ``VisualPuzzles_doc_to_text``'s line for puzzles whose options are drawn in the image."""


def _visualpuzzles(row: dict[str, Any], index: int) -> dict[str, Any]:
    question, answer = _text(row, "question"), _text(row, "answer")
    task = _plain(row.get("category")) or "visualpuzzles"
    options = [str(o) for o in (row.get("options") or [])]
    letters = _letters(answer)
    body = f"Question: {question}"
    if options:
        if len(letters) != 1 or letters[0] not in LETTERS[: len(options)]:
            raise RowError("answer", f"answer {answer!r} is not one of the letters of its {len(options)} options")
        listing = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
        return _choice_example(f"{body}\nOptions:\n{listing}", options, letters[0], task)
    return _letter_example(question, answer, task, body=f"{body}\n{VISUALPUZZLES_IN_IMAGE}")


REALWORLDQA_DIRECT = re.compile(r"\n\s*Please answer directly[^\n]*$")
"""RealWorldQA's answer-format line ("Please answer directly with only the letter ..." / "... a single word
or number."), removed as lmms-eval's ``realworldqa_doc_to_text`` does when it appends its own instruction."""


def _realworldqa(row: dict[str, Any], index: int) -> dict[str, Any]:
    question, answer = _text(row, "question"), _text(row, "answer")
    body = REALWORLDQA_DIRECT.sub("", question).strip()
    parsed = parse_options(body)
    letters = _letters(answer)
    if parsed is not None and len(letters) == 1 and letters[0] in LETTERS[: len(parsed[1])]:
        return _choice_example(body, parsed[1], letters[0], "realworldqa")
    return _free_example(body, answer, "realworldqa")


def _mmrl30k(row: dict[str, Any], index: int) -> dict[str, Any]:
    problem = re.sub(r"<image>", "", _text(row, "problem")).strip()
    answer = _text(row, "answer")
    task = _plain(row.get("source")) or "mmrl30k"
    parsed = parse_options(problem)
    letters = _letters(answer)
    if parsed is not None and len(letters) == 1 and letters[0] in LETTERS[: len(parsed[1])]:
        return _choice_example(problem, parsed[1], letters[0], task)
    return _free_example(problem, answer, task)


# --------------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives and how its rows map onto roma's schema."""

    name: str
    """Registry name (lower case), also the ``benchmark`` column of evaluation records."""
    hub_id: str
    """Hugging Face dataset id."""
    split: str
    """Default split."""
    size: int | None
    """Number of rows of the default split according to the dataset card (``None``: unknown)."""
    fields: tuple[str, ...]
    """Source columns the loader needs; ``"a|b"`` means either column."""
    image_field: str
    """Column holding the image (a single image, or a list whose first image is used); ``"a|b"``: the
    first present (a json copy names the image file in another column)."""
    id_field: str | None
    """Column holding the example id (``None``: the row index is used)."""
    normalize: Callable[[dict[str, Any], int], dict[str, Any]] = field(repr=False)
    """Row normaliser: ``(row, index) -> {task, prompt, answer, choices, answer_type, tolerance[, meta]}``;
    raises :class:`RowError` for an unusable row."""
    notes: str = ""
    """What was verified about the source, and what is assumed."""
    alt_hub_ids: tuple[str, ...] = ()
    """Other hub copies read by the same loader (their own column names)."""
    split_aliases: tuple[tuple[str, str], ...] = ()
    """``(split, older name)`` pairs: a copy that only has the older name is read for ``split``, with a warning."""
    test_splits: tuple[str, ...] = ()
    """Splits that are held out for evaluation: training refuses them (:func:`check_training_split`)."""


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "mathvista", "AI4Math/MathVista", "testmini", 1000,
            ("pid", "question", "decoded_image|image", "choices", "answer", "question_type", "answer_type",
             "precision"),
            "decoded_image|image", "pid", _mathvista,
            "card features verified (also unit, metadata, query); testmini 1000 rows; test 5141 rows "
            "without released answers",
            test_splits=("testmini", "test"),
        ),
        BenchmarkSpec(
            "wemath", "We-Math/We-Math", "testmini", 1740,
            ("ID", "key", "question", "option", "answer", "image_path"),
            "image_path", None, _wemath,
            "columns from lmms-eval's wemath utils (image bytes in 'image_path'); 1740 rows in 525 "
            "problems; id = ID@key",
            test_splits=("testmini",),
        ),
        BenchmarkSpec(
            "chartqa", "lmms-lab/ChartQA", "test", 2500,
            ("question|query", "answer|label", "image"),
            "image", None, _chartqa,
            "lmms-lab/ChartQA card verified (type, question, answer, image; test 2500); "
            "HuggingFaceM4/ChartQA (query, label list, human_or_machine; train/val/test) and the authors' "
            "ahmed-masry/ChartQA (imgname, query, label string, type, image bytes) are read too",
            alt_hub_ids=("HuggingFaceM4/ChartQA", "ahmed-masry/ChartQA"),
            test_splits=("test", "val"),
        ),
        BenchmarkSpec(
            "logicvista", "lscpku/LogicVista", "test", 448,
            ("question", "answer", "image|imagename"),
            "image|imagename", "id", _logicvista,
            "columns seen in public loaders (id, question, answer, image, skill list, ...); 448 questions "
            "checked against the benchmark's data/dataset.json; options inline or in the image",
            test_splits=("test",),
        ),
        BenchmarkSpec(
            "mmstar", "Lin-Chen/MMStar", "val", 1500,
            ("index", "question", "answer", "image"),
            "image", "index", _mmstar,
            "features verified on a copy of the card (index, question, image, answer, category, "
            "l2_category, meta_info); val 1500; the 1500 questions checked against the official sheet",
            test_splits=("val",),
        ),
        BenchmarkSpec(
            "visualpuzzles", "neulab/VisualPuzzles", "test", 1168,
            ("id", "question", "options", "answer", "image"),
            "image", "id", _visualpuzzles,
            "card verified (id, category, image, question, options or null, answer); 1168 rows; "
            "the split was renamed train -> test on the hub",
            split_aliases=(("test", "train"),),
            test_splits=("test", "train"),
        ),
        BenchmarkSpec(
            "realworldqa", "xai-org/RealworldQA", "test", 765,
            ("question", "answer", "image"),
            "image", None, _realworldqa,
            "card verified (image, question, answer; 765 rows); one card revision names the split "
            "test_0412",
            split_aliases=(("test", "test_0412"),),
            test_splits=("test", "test_0412"),
        ),
        BenchmarkSpec(
            "mmrl30k", "XenoZLH/MMRL30k", "train", None,
            ("problem", "answer", "images"),
            "images", None, _mmrl30k,
            "EasyR1 format (problem with <image>, images list, answer) as used by public training "
            "configs (splits train, k12_test); the 'source' column is assumed (used as task if present)",
            test_splits=("k12_test",),
        ),
    )
}
"""Registry: benchmark name -> :class:`BenchmarkSpec`."""


def check_training_split(spec: BenchmarkSpec, split: str) -> None:
    """``ValueError`` when ``split`` of ``spec`` is held out for evaluation (any of the seven benchmarks,
    MMRL30k's ``k12_test``, or a split named like ``*test*`` / ``*val*``): training never reads it."""
    held_out = split in spec.test_splits or re.search(r"test|val", split, re.IGNORECASE) is not None
    if spec.name != "mmrl30k" or held_out:
        raise ValueError(
            f"{spec.name}: split {split!r} is held out for evaluation; training reads only MMRL30k's "
            f"training split ('train') or the synthetic suite"
        )


# --------------------------------------------------------------------------------------------------
# where the rows come from


def resolve_benchmark(name_or_path: str, benchmark: str | None = None) -> tuple[BenchmarkSpec, bool]:
    """``(spec, is_local)`` for a registry name, a hub id (also a known alternative copy) or a local path.

    A local path's benchmark is ``benchmark`` or, failing that, guessed from the folder / file name
    (``.../MathVista`` -> ``mathvista``).
    """
    by_hub = {hub.lower(): spec for spec in BENCHMARKS.values() for hub in (spec.hub_id, *spec.alt_hub_ids)}
    if benchmark is not None:
        key = benchmark.lower()
        if key not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {sorted(BENCHMARKS)}")
        return BENCHMARKS[key], os.path.exists(name_or_path)
    if name_or_path.lower() in BENCHMARKS:
        return BENCHMARKS[name_or_path.lower()], False
    if name_or_path.lower() in by_hub:
        return by_hub[name_or_path.lower()], False
    if os.path.exists(name_or_path):
        stem = re.sub(r"[^a-z0-9]", "", Path(name_or_path).name.lower().split(".")[0])
        for spec in BENCHMARKS.values():
            if stem.startswith(spec.name):
                return spec, True
        raise ValueError(
            f"cannot tell which benchmark the local path {name_or_path!r} holds; name it: "
            f"--data NAME={name_or_path} (Python: benchmark=NAME), NAME one of {sorted(BENCHMARKS)}"
        )
    raise ValueError(
        f"{name_or_path!r} is neither a benchmark name {sorted(BENCHMARKS)}, a known hub id "
        f"{sorted(by_hub)}, nor an existing local path"
    )


def parse_data_arg(text: str) -> tuple[str | None, str]:
    """``"NAME=PATH"`` -> ``(NAME, PATH)``; anything else -> ``(None, text)`` (a name, hub id or path).

    ``PATH`` may be a local copy or a hub id of a copy (``chartqa=HuggingFaceM4/ChartQA``).
    """
    name, sep, source = text.partition("=")
    if sep and name.lower() in BENCHMARKS:
        if not source:
            raise ValueError(f"--data {text!r}: give a path or hub id after '='")
        return name.lower(), source
    if sep and not os.path.exists(text):
        raise ValueError(f"--data {text!r}: unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return None, text


_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json")


def _split_of(file: Path) -> str | None:
    """The split a data file holds by the hub's naming (``test-00000-of-00002-<hash>.parquet`` -> ``test``,
    ``train.parquet`` -> ``train``); ``None`` for names that say nothing (``data.parquet``)."""
    match = re.match(r"^(?P<split>[A-Za-z0-9_]+?)-\d{5}-of-\d{5}", file.name)
    if match:
        return match.group("split")
    return None


def _json_rows(path: Path, spec: BenchmarkSpec) -> list[dict[str, Any]]:
    """Rows of a json / jsonl file: a list of rows, an object of rows keyed by id, or one row per line.

    A relative image path is resolved against the file's folder (and its ``images/`` folder)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        data = json.loads(text)
        if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
            key = spec.id_field or "id"
            rows = [{key: k, **v} if key not in v else v for k, v in data.items()]
        elif isinstance(data, list):
            rows = data
        else:
            raise ValueError(f"{spec.name}: {path} holds neither a list of rows nor rows keyed by id")
    for row in rows:
        for column in spec.image_field.split("|"):
            value = row.get(column)
            if isinstance(value, str) and value and not os.path.isabs(value):
                candidates = [path.parent / value, path.parent / "images" / value]
                row[column] = str(next((c for c in candidates if c.exists()), candidates[0]))
    return rows


class Source(NamedTuple):
    """The rows of one split of a benchmark, and where they came from."""

    rows: datasets.Dataset | list[dict[str, Any]]
    split: str
    origin: str


def _pick_split(data: datasets.DatasetDict, split: str, spec: BenchmarkSpec, where: str) -> tuple[Any, str]:
    if split in data:
        return data[split], split
    for wanted, older in spec.split_aliases:
        if wanted == split and older in data:
            warnings.warn(f"{spec.name}: {where} has no split {split!r}; reading {older!r}, its older name",
                          stacklevel=4)
            return data[older], older
    raise ValueError(f"{spec.name}: no split {split!r} in {where}; available splits: {sorted(data)}")


def _read_files(files: list[Path], spec: BenchmarkSpec) -> datasets.Dataset | list[dict[str, Any]]:
    kinds = {f.suffix for f in files}
    if kinds <= {".json", ".jsonl"}:
        return [row for f in files for row in _json_rows(f, spec)]
    if kinds == {".arrow"}:
        return datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in files])
    if kinds == {".parquet"}:
        with _quiet_progress():
            return datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    raise ValueError(f"{spec.name}: cannot read a mix of {sorted(kinds)} files as one split: {[str(f) for f in files]}")


def _read_folder(folder: Path, split: str, spec: BenchmarkSpec) -> tuple[Any, str]:
    """One split of a repository snapshot (or its ``data/`` folder): parquet shards are preferred, and
    json / markdown files beside them are the repository's side files, not rows."""
    files = sorted(
        f for f in folder.rglob("*")
        if f.suffix in _DATA_SUFFIXES and f.is_file() and not any(p.startswith(".") for p in f.relative_to(folder).parts)
    )
    for kind in (".parquet", ".arrow", ".jsonl", ".json"):
        chosen = [f for f in files if f.suffix == kind]
        if chosen:
            break
    else:
        raise ValueError(f"{spec.name}: {str(folder)!r} holds no save_to_disk folder and no parquet/json files")
    by_split: dict[str | None, list[Path]] = {}
    for f in chosen:
        by_split.setdefault(_split_of(f), []).append(f)
    named = {k: v for k, v in by_split.items() if k is not None}
    if not named:  # no file names a split (VisualPuzzles' data.parquet): the folder is the one split
        return _read_files(chosen, spec), split
    if split in named:
        return _read_files(named[split], spec), split
    for wanted, older in spec.split_aliases:
        if wanted == split and older in named:
            warnings.warn(f"{spec.name}: {folder} has no split {split!r}; reading {older!r}, its older name",
                          stacklevel=4)
            return _read_files(named[older], spec), older
    raise ValueError(f"{spec.name}: no split {split!r} in {str(folder)!r}; available splits: {sorted(named)}")


def _hub_snapshot(repo_id: str, spec: BenchmarkSpec) -> Path:
    """The local cache folder of a hub dataset repository; never downloads."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except Exception as error:  # noqa: BLE001 - every failure means the same thing to the user: not cached
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"{spec.name}: {repo_id!r} is not in the local Hugging Face cache ({type(error).__name__}: "
            f"{first_line[:160]}); download it once (`hf download {repo_id} --repo-type dataset`) or pass a "
            f"local copy: --data {spec.name}=PATH"
        ) from None


def read_source(name_or_path: str, *, split: str | None = None, benchmark: str | None = None) -> tuple[BenchmarkSpec, Source]:
    """``(spec, rows of one split)`` of a registry name, hub id (from the local cache) or local copy.

    Raises ``ValueError`` for an unknown benchmark, a split that is not there (listing the splits
    present), or a hub dataset that is not in the local cache.
    """
    spec, is_local = resolve_benchmark(name_or_path, benchmark)
    wanted = split or spec.split
    if is_local:
        path = Path(name_or_path)
    else:
        # a registry name reads the benchmark's hub id; "owner/name" reads that repository (a copy)
        known = {h.lower(): h for h in (spec.hub_id, *spec.alt_hub_ids)}
        repo_id = spec.hub_id if name_or_path.lower() in BENCHMARKS else known.get(name_or_path.lower(), name_or_path)
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo_id):
            raise ValueError(f"{spec.name}: {name_or_path!r} is neither an existing local path nor a hub id (owner/name)")
        path = _hub_snapshot(repo_id, spec)
    where = str(path)
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            rows, used = _pick_split(data, wanted, spec, where)
        else:
            rows, used = data, wanted
    elif path.is_dir():
        rows, used = _read_folder(path, wanted, spec)
    elif path.suffix in _DATA_SUFFIXES:
        named = _split_of(path)
        if split is not None and named is not None and named != split:
            raise ValueError(f"{spec.name}: {where} holds split {named!r}, not {split!r}")
        rows, used = _read_files([path], spec), named or wanted
    else:
        raise ValueError(f"{spec.name}: cannot read {where!r}: not a folder nor a parquet / arrow / json / jsonl file")
    return spec, Source(rows, used, where)


# --------------------------------------------------------------------------------------------------
# normalising rows


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def decode_image(value: Any) -> tuple[Image.Image, bytes | None] | None:
    """``(RGB image, original encoded bytes or None)`` from a datasets image cell, or ``None`` if it cannot
    be used; the image goes through roma's one decode path (:mod:`roma.data.images`: EXIF orientation
    applied, every mode to RGB). The bytes are kept only when they decode to exactly that image.

    Accepts ``{"bytes", "path"}`` dicts, raw bytes, PIL images, file paths and lists (first item).
    """
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        opened = open_image(value)
        image = to_rgb_image(upright(opened))
    except ImageError:
        return None
    raw: bytes | None = None
    if image is opened and not isinstance(value, Image.Image):
        if isinstance(value, dict):
            raw = value.get("bytes") or Path(value["path"]).read_bytes()
        else:
            raw = bytes(value) if isinstance(value, (bytes, bytearray)) else Path(value).read_bytes()
    return image, raw


def _columns(rows: datasets.Dataset | list[dict[str, Any]]) -> set[str]:
    if isinstance(rows, datasets.Dataset):
        return set(rows.column_names)
    return set().union(*(r.keys() for r in rows)) if rows else set()


def _check_fields(columns: set[str], spec: BenchmarkSpec, *, text_only: bool = False) -> None:
    for needed in spec.fields:
        if text_only and needed == spec.image_field:
            continue
        options = needed.split("|")
        if not any(o in columns for o in options):
            raise ValueError(
                f"{spec.name}: missing field {needed!r} (the loader reads {list(spec.fields)}); "
                f"the data has columns {sorted(columns)}"
            )


def row_ids(rows: Sequence[dict[str, Any]] | datasets.Dataset, spec: BenchmarkSpec) -> list[str]:
    """Example ids: ``<name>-<id column>`` (WeMath: ``wemath-<ID>@<key>``), else ``<name>-<row index>``."""
    columns = _columns(rows)
    if spec.name == "wemath" and {"ID", "key"} <= columns:
        raw = [f"wemath-{i}@{k}" for i, k in zip(_column(rows, "ID"), _column(rows, "key"))]
    elif spec.id_field is not None and spec.id_field in columns:
        raw = [f"{spec.name}-{v}" for v in _column(rows, spec.id_field)]
    else:
        raw = [f"{spec.name}-{i}" for i in range(len(rows))]
    return unique_ids(raw)


def _column(rows: Sequence[dict[str, Any]] | datasets.Dataset, name: str) -> list[Any]:
    return list(rows[name]) if isinstance(rows, datasets.Dataset) else [r.get(name) for r in rows]


class Skip(NamedTuple):
    """A source row that was not loaded: its example id and why."""

    id: str
    reason: str


def parse_rows(
    rows: Sequence[dict[str, Any]] | datasets.Dataset, spec: BenchmarkSpec
) -> tuple[list[tuple[int, str, dict[str, Any]]], list[Skip]]:
    """The text side of loading: ``([(row index, id, normalised fields)], [skipped rows])``.

    Every row goes through ``spec.normalize``; a :class:`RowError` skips that row with its reason. Images
    are not looked at (:func:`normalize_rows` does that), so the benchmarks' text-only files can be checked
    row by row.
    """
    _check_fields(_columns(rows), spec, text_only=True)
    ids = row_ids(rows, spec)
    parsed, skipped = [], []
    for index, row in enumerate(rows):
        try:
            parsed.append((index, ids[index], spec.normalize(row, index)))
        except RowError as error:
            skipped.append(Skip(ids[index], f"{error.field_name}: {error}"))
    return parsed, skipped


def normalize_rows(
    rows: Sequence[dict[str, Any]] | datasets.Dataset, spec: BenchmarkSpec
) -> tuple[list[dict[str, Any]], list[Skip], dict[str, dict[str, Any]]]:
    """Schema examples of one source split, the skipped rows, and each example's scoring metadata.

    The metadata (``{id: {...}}``) holds what the benchmark's official metric needs beyond the schema
    (MathVista's answer type and precision, WeMath's problem ``ID`` and step ``key``, MMStar's
    categories); see :mod:`roma.eval.official`.
    """
    image_column = next((c for c in spec.image_field.split("|") if c in _columns(rows)), spec.image_field)
    if isinstance(rows, datasets.Dataset) and image_column in rows.column_names:
        rows = undecoded_column(rows, image_column)
    _check_fields(_columns(rows), spec)
    parsed, skipped = parse_rows(rows, spec)
    examples, meta = [], {}
    several = _holds_lists(rows, image_column)
    for index, example_id, fields in parsed:
        row = rows[index]
        cell = row.get(image_column)
        cells = list(cell or []) if several else [cell]
        decoded = [decode_image(c) for c in cells]
        if not decoded or any(d is None for d in decoded):
            skipped.append(Skip(example_id, "missing or corrupt image"))
            continue
        images = [{"bytes": raw, "path": None} if raw is not None else image for image, raw in decoded]
        example = {"id": example_id, **fields, "image": images[0]}
        validate_example(example, source=f"{spec.name} row {example_id!r}")
        if several:  # every image of the row, in the list's order, each with its placeholder in the prompt
            example = {("images" if c == "image" else c): example[c] for c in COLUMNS}
            example["images"] = images
            example["prompt"] = with_image_parts(example["prompt"], len(images))
        else:
            example = {c: example[c] for c in COLUMNS}
        examples.append(example)
        meta[example_id] = {"task": fields["task"], "choices": fields["choices"], **fields.get("meta", {})}
    order = {example_id: i for i, example_id in enumerate(row_ids(rows, spec))}
    skipped.sort(key=lambda s: order.get(s.id, len(order)))
    return examples, skipped, meta


def _holds_lists(rows: Sequence[dict[str, Any]] | datasets.Dataset, column: str) -> bool:
    """Whether ``column`` holds lists of images (MMRL30k's ``images``) rather than one image per row."""
    if isinstance(rows, datasets.Dataset):
        return isinstance(rows.features.get(column), (list, datasets.List, datasets.LargeList))
    return any(isinstance(row.get(column), (list, tuple)) for row in rows)


def check_skipped_share(name: str, n_rows: int, skipped: Sequence[Skip], max_share: float = MAX_SKIPPED_SHARE) -> None:
    """``ValueError`` naming the share and the first bad rows when more than ``max_share`` of ``n_rows``
    rows were skipped."""
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_skipped_share must be in [0, 1], got {max_share!r}")
    if n_rows and len(skipped) / n_rows > max_share:
        first = "; ".join(f"{s.id} ({s.reason})" for s in skipped[:3])
        raise ValueError(
            f"{name}: {len(skipped)} of {n_rows} rows ({len(skipped) / n_rows:.0%}) are unusable, more than "
            f"the {max_share:.0%} allowed; first: {first}"
        )


@dataclass
class LoadedBenchmark:
    """One split of a benchmark in roma's schema, with what was skipped and where it came from."""

    spec: BenchmarkSpec
    dataset: datasets.Dataset
    skipped: list[Skip]
    """Rows not loaded (id, reason), in source order."""
    meta: dict[str, dict[str, Any]]
    """Per example id: the fields the official metric needs (:mod:`roma.eval.official`)."""
    split: str
    """The split that was read."""
    origin: str
    """Where the rows came from (a local path or the cache folder of a hub id)."""
    n_rows: int
    """Source rows read (after ``limit``)."""


def read_benchmark(
    name_or_path: str,
    *,
    split: str | None = None,
    limit: int | None = None,
    benchmark: str | None = None,
    max_skipped_share: float = MAX_SKIPPED_SHARE,
) -> LoadedBenchmark:
    """Load one split of a benchmark (see :func:`load_benchmark`), keeping the skipped rows and metadata."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    spec, source = read_source(name_or_path, split=split, benchmark=benchmark)
    rows = source.rows
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows)))) if isinstance(rows, datasets.Dataset) else rows[:limit]
    where = f"{spec.name} ({source.split} split of {source.origin})"
    if len(rows) == 0:
        raise ValueError(f"{where}: read 0 rows (an empty file or split), so there is no row to use")
    examples, skipped, meta = normalize_rows(rows, spec)
    check_skipped_share(where, len(rows), skipped, max_skipped_share)
    if not examples:  # every row skipped, and max_skipped_share allowed it
        raise ValueError(f"{where}: read {len(rows)} row(s) and none is usable; first: {skipped[0].id} "
                         f"({skipped[0].reason})")
    columns = FEATURES
    if examples and "images" in examples[0]:  # a source of image lists keeps them (TRL's `images` column)
        columns = datasets.Features({("images" if k == "image" else k): (datasets.List(v) if k == "image" else v)
                                     for k, v in FEATURES.items()})
    with _quiet_progress():
        dataset = datasets.Dataset.from_list(examples, features=columns)
    return LoadedBenchmark(spec, dataset, skipped, meta, source.split, source.origin, len(rows))


def load_benchmark_with_skips(
    name_or_path: str, *, split: str | None = None, limit: int | None = None, benchmark: str | None = None
) -> tuple[datasets.Dataset, list[Skip]]:
    """Like :func:`load_benchmark`, and also return the skipped rows as ``(id, reason)`` pairs."""
    loaded = read_benchmark(name_or_path, split=split, limit=limit, benchmark=benchmark)
    return loaded.dataset, loaded.skipped


def load_benchmark(
    name_or_path: str, *, split: str | None = None, limit: int | None = None, benchmark: str | None = None
) -> datasets.Dataset:
    """A benchmark split in roma's schema, from a registry name, a hub id or a local copy.

    Args:
        name_or_path: a name of :data:`BENCHMARKS` (``"mathvista"``) or a hub id of it or of a known copy
            (read from the local Hugging Face cache, never downloaded), or a local copy: a
            ``save_to_disk`` folder, a repository snapshot / its ``data/`` folder, or a parquet / arrow /
            json / jsonl file with the benchmark's original columns.
        split: source split (default: the registry's, e.g. ``testmini`` for MathVista); never merged
            with another.
        limit: keep the first ``limit`` source rows (before skipping unusable ones).
        benchmark: which benchmark a local path holds (default: guessed from its name).

    Unusable rows (broken image, empty question or answer, unreadable options) are skipped with a
    warning naming how many and which; use :func:`read_benchmark` for the list. Raises ``ValueError``
    when more than :data:`MAX_SKIPPED_SHARE` of the rows are unusable.
    """
    loaded = read_benchmark(name_or_path, split=split, limit=limit, benchmark=benchmark)
    if loaded.skipped:
        shown = ", ".join(f"{s.id} ({s.reason})" for s in loaded.skipped[:5])
        warnings.warn(
            f"{name_or_path}: skipped {len(loaded.skipped)} of {loaded.n_rows} row(s): {shown}"
            f"{' ...' if len(loaded.skipped) > 5 else ''}",
            stacklevel=2,
        )
    return loaded.dataset
