"""Per-benchmark row normalisers and prompts (lmms-eval's task prompts), and the registry
:data:`BENCHMARKS` of :class:`BenchmarkSpec`. See :mod:`roma.data.benchmarks`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roma.data.benchmarks.options import (
    _free_answer,
    _letters,
    _plain,
    as_number,
    parse_options,
    parse_wemath_options,
)
from roma.data.schema import (
    LETTERS,
    make_text_prompt,
)

CHARTQA_TOLERANCE = 0.05
"""ChartQA's relaxed accuracy: a numeric answer within 5 % of the gold counts as correct."""


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
