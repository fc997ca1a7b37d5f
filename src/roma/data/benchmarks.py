"""Loaders for the paper's seven evaluation benchmarks and its training set, in roma's schema.

Each loader reads a benchmark by its Hugging Face hub id **or** from a local copy (a folder written by
``save_to_disk``, or parquet / json / jsonl files) and normalises every row to the common schema of
:mod:`roma.data.schema` (``id, task, image, prompt, answer, choices, answer_type, tolerance``):

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

:data:`BENCHMARKS` holds each loader's hub id, split, size and the source fields it reads; the
documentation (``docs/evaluation.md``) says which of these facts were verified against the dataset
cards and which are assumptions.

Bad input: a row whose image bytes are missing or cannot be decoded is skipped and its id reported
(:func:`load_benchmark_with_skips`), never a crash; a missing column, or a row without a question or an
answer, raises ``ValueError`` naming the benchmark and the field. The hub is only contacted when the
caller passes a hub id or a registry name; tests and the demo use local folders.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from PIL import Image

from roma.data.schema import COLUMNS, LETTERS, make_prompt, validate_example

CHARTQA_TOLERANCE = 0.05
"""ChartQA's relaxed accuracy: a numeric answer within 5 % of the gold counts as correct."""

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "image": datasets.Image(),
        "prompt": datasets.List(
            {
                "role": datasets.Value("string"),
                "content": datasets.List({"type": datasets.Value("string"), "text": datasets.Value("string")}),
            }
        ),
        "answer": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")),
        "answer_type": datasets.Value("string"),
        "tolerance": datasets.Value("float64"),
    }
)
"""The Arrow features of every normalised benchmark (the columns of :data:`roma.data.schema.COLUMNS`)."""


# --------------------------------------------------------------------------------------------------
# small parsing helpers


def parse_options(text: str) -> tuple[str, list[str]] | None:
    """Split a question with inline options into ``(stem, [option texts])``, or ``None``.

    Recognised layouts (letters must run A, B, C, ... in order, at least two of them):

    - after an ``Options:`` / ``Choices:`` header, separated by commas, semicolons or newlines:
      ``"Which? Options: A: cat, B: dog"`` (MMStar), ``"A. 1; B. 2; C. 3"`` (WeMath's ``option``);
    - one option per line: ``"Which?\\nA. Left\\nB. Right"`` (RealWorldQA).

    The last option ends at the first line break, so trailing instructions such as RealWorldQA's
    "Please answer directly with only the letter ..." are cut off.
    """
    header = re.search(r"(?:^|\n|\s)(?:Options|Choices)\s*:\s*", text)
    if header is not None:
        start, separator = header.end(), r"(?:^|(?<=[\s,;(]))"
    elif re.match(r"\s*A\s*[.:)]", text):  # the whole text is an option list (WeMath's ``option``)
        start, separator = 0, r"(?:^|(?<=[\s,;(]))"
    else:
        start, separator = 0, r"(?:(?<=\n)|^)\s*"
    markers: list[re.Match[str]] = []
    position = start
    for letter in LETTERS:
        match = re.compile(separator + letter + r"\s*[.:)]\s*", re.MULTILINE).search(text, position)
        if match is None:
            break
        markers.append(match)
        position = match.end()
    if len(markers) < 2:
        return None
    options = []
    for i, marker in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        option = text[marker.end() : end]
        if i + 1 == len(markers):
            option = option.split("\n", 1)[0]
        options.append(option.strip().rstrip(",;").strip())
    if any(not option for option in options):
        return None
    stem_end = header.start() if header is not None else markers[0].start()
    stem = text[:stem_end].strip()
    return stem, options


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


# --------------------------------------------------------------------------------------------------
# per-benchmark row normalisers: (row, row index) -> the schema fields except id and image


class RowError(ValueError):
    """A row lacks a required value; carries the field name for the caller's message."""

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(detail)
        self.field_name = field_name


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        raise RowError(name, f"field {name!r} is empty")
    return str(value).strip()


def _choice_example(question: str, choices: list[str], answer_letter: str, task: str) -> dict[str, Any]:
    return {
        "task": task,
        "prompt": make_prompt(question, choices),
        "answer": answer_letter,
        "choices": list(choices),
        "answer_type": "choice",
        "tolerance": 0.0,
    }


def _free_example(question: str, answer: str, task: str, *, tolerance: float | None = None) -> dict[str, Any]:
    answer_type, default_tolerance = _free_answer(answer)
    return {
        "task": task,
        "prompt": make_prompt(question),
        "answer": answer,
        "choices": [],
        "answer_type": answer_type,
        "tolerance": default_tolerance if tolerance is None or answer_type != "number" else tolerance,
    }


def _letter_example(question: str, answer: str, task: str) -> dict[str, Any]:
    """A multiple-choice question whose options live in the question text or in the image."""
    parsed = parse_options(question)
    letters = _letters(answer)
    if parsed is not None and len(letters) == 1 and letters[0] in LETTERS[: len(parsed[1])]:
        return _choice_example(parsed[0] or question, parsed[1], letters[0], task)
    if len(letters) > 1:
        hint = "Answer with the letters of all correct options, separated by commas."
        gold = ", ".join(letters)
    elif len(letters) == 1:
        hint, gold = "Answer with the option's letter.", letters[0]
    else:
        return _free_example(question, answer, task)
    return {
        "task": task,
        "prompt": make_prompt(f"{question}\n{hint}"),
        "answer": gold,
        "choices": [],
        "answer_type": "text",
        "tolerance": 0.0,
    }


def _mathvista(row: dict[str, Any], index: int) -> dict[str, Any]:
    question, answer = _text(row, "question"), _text(row, "answer")
    metadata = row.get("metadata") or {}
    task = str(metadata.get("task") or "mathvista")
    if row.get("unit"):
        question = f"{question} (Unit: {row['unit']})"
    if row.get("question_type") == "multi_choice":
        choices = [str(c) for c in (row.get("choices") or [])]
        if answer not in choices:
            raise RowError("answer", f"multi_choice answer {answer!r} is not one of its choices {choices}")
        return _choice_example(question, choices, LETTERS[choices.index(answer)], task)
    answer_type = row.get("answer_type")
    value = as_number(answer)
    if answer_type in ("integer", "float") and value is not None:
        precision = row.get("precision")
        tolerance = 0.0
        if answer_type == "float" and precision is not None and not math.isnan(precision) and value != 0:
            # MathVista compares after rounding to `precision` decimals: half a unit of the last place.
            tolerance = 0.5 * 10 ** (-precision) / abs(value)
        return _free_example(question, answer, task, tolerance=tolerance)
    return {**_free_example(question, answer, task), "answer_type": "text", "tolerance": 0.0}


def _wemath(row: dict[str, Any], index: int) -> dict[str, Any]:
    question, answer, option = _text(row, "question"), _text(row, "answer"), _text(row, "option")
    parsed = parse_options(option)
    if parsed is None:
        raise RowError("option", f"cannot read lettered options from {option!r}")
    letters = _letters(answer)
    if len(letters) != 1 or letters[0] not in LETTERS[: len(parsed[1])]:
        raise RowError("answer", f"answer {answer!r} is not one of the letters of {option!r}")
    return _choice_example(question, parsed[1], letters[0], str(row.get("key") or "wemath"))


def _chartqa(row: dict[str, Any], index: int) -> dict[str, Any]:
    question = _text(row, "question" if "question" in row else "query")
    if "answer" in row:
        answer = _text(row, "answer")
    else:  # HuggingFaceM4/ChartQA keeps the gold answers as a list in ``label``
        labels = row.get("label") or []
        if not labels or not str(labels[0]).strip():
            raise RowError("label", "field 'label' is empty")
        answer = str(labels[0]).strip()
    task = row.get("type") or row.get("human_or_machine")
    task = {0: "human", 1: "machine"}.get(task, task) if isinstance(task, int) else task
    return _free_example(question, answer, str(task or "chartqa"), tolerance=CHARTQA_TOLERANCE)


def _logicvista(row: dict[str, Any], index: int) -> dict[str, Any]:
    return _letter_example(_text(row, "question"), _text(row, "answer"), str(row.get("skill") or "logicvista"))


def _mmstar(row: dict[str, Any], index: int) -> dict[str, Any]:
    return _letter_example(_text(row, "question"), _text(row, "answer"), str(row.get("category") or "mmstar"))


def _visualpuzzles(row: dict[str, Any], index: int) -> dict[str, Any]:
    question, answer = _text(row, "question"), _text(row, "answer")
    task = str(row.get("category") or "visualpuzzles")
    options = [str(o) for o in (row.get("options") or [])]
    letters = _letters(answer)
    if options and len(letters) == 1 and letters[0] in LETTERS[: len(options)]:
        return _choice_example(question, options, letters[0], task)
    if options:
        raise RowError("answer", f"answer {answer!r} is not one of the letters of its {len(options)} options")
    return _letter_example(question + "\nThe options are shown in the image.", answer, task)


def _realworldqa(row: dict[str, Any], index: int) -> dict[str, Any]:
    question, answer = _text(row, "question"), _text(row, "answer")
    # Drop the benchmark's own answer-format line: roma's instruction asks for \boxed{} instead.
    question = re.sub(r"\n\s*Please answer[^\n]*$", "", question.strip()).strip()
    parsed = parse_options(question)
    letters = _letters(answer)
    if parsed is not None and len(letters) == 1 and letters[0] in LETTERS[: len(parsed[1])]:
        return _choice_example(parsed[0], parsed[1], letters[0], "realworldqa")
    return _free_example(question, answer, "realworldqa")


def _mmrl30k(row: dict[str, Any], index: int) -> dict[str, Any]:
    problem = re.sub(r"<image>", "", _text(row, "problem")).strip()
    answer = _text(row, "answer")
    task = str(row.get("source") or "mmrl30k")
    parsed = parse_options(problem)
    letters = _letters(answer)
    if parsed is not None and len(letters) == 1 and letters[0] in LETTERS[: len(parsed[1])]:
        return _choice_example(parsed[0] or problem, parsed[1], letters[0], task)
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
    """Column holding the image (a single image, or a list whose first image is used)."""
    id_field: str | None
    """Column holding the example id (``None``: the row index is used)."""
    normalize: Callable[[dict[str, Any], int], dict[str, Any]] = field(repr=False)
    """Row normaliser: ``(row, index) -> {task, prompt, answer, choices, answer_type, tolerance}``."""
    notes: str = ""
    """What was verified about the source, and what is assumed."""


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "mathvista", "AI4Math/MathVista", "testmini", 1000,
            ("pid", "question", "decoded_image", "choices", "answer", "question_type", "answer_type",
             "precision"),
            "decoded_image", "pid", _mathvista,
            "card features verified (also unit, metadata, query); testmini 1000 rows",
        ),
        BenchmarkSpec(
            "wemath", "We-Math/We-Math", "testmini", 1740,
            ("ID", "key", "question", "option", "answer", "image_path"),
            "image_path", None, _wemath,
            "columns seen in public loaders of the testmini parquet (image bytes in 'image_path'); "
            "1740 rows in 525 groups; id = ID@key",
        ),
        BenchmarkSpec(
            "chartqa", "lmms-lab/ChartQA", "test", 2500,
            ("question|query", "answer|label", "image"),
            "image", None, _chartqa,
            "lmms-lab/ChartQA card verified (type, question, answer, image; test 2500); "
            "HuggingFaceM4/ChartQA (query, label list, human_or_machine) is read too",
        ),
        BenchmarkSpec(
            "logicvista", "lscpku/LogicVista", "test", 448,
            ("question", "answer", "image"),
            "image", "id", _logicvista,
            "columns seen in public loaders (id, question, answer, image, skill, ...); 448 questions; "
            "options are inside the question text or the image",
        ),
        BenchmarkSpec(
            "mmstar", "Lin-Chen/MMStar", "val", 1500,
            ("index", "question", "answer", "image"),
            "image", "index", _mmstar,
            "features verified on a copy of the card (index, question, image, answer, category, "
            "l2_category, meta_info); val 1500; options inline after 'Options:'",
        ),
        BenchmarkSpec(
            "visualpuzzles", "neulab/VisualPuzzles", "test", 1168,
            ("id", "question", "options", "answer", "image"),
            "image", "id", _visualpuzzles,
            "card verified (id, category, image, question, options or null, answer); 1168 rows; "
            "the split was renamed train -> test on the hub",
        ),
        BenchmarkSpec(
            "realworldqa", "xai-org/RealworldQA", "test", 765,
            ("question", "answer", "image"),
            "image", None, _realworldqa,
            "card verified (image, question, answer; 765 rows); one card revision names the split "
            "test_0412",
        ),
        BenchmarkSpec(
            "mmrl30k", "XenoZLH/MMRL30k", "train", None,
            ("problem", "answer", "images"),
            "images", None, _mmrl30k,
            "EasyR1 format (problem with <image>, images list, answer) as used by public training "
            "configs (splits train, k12_test); the 'source' column is assumed (used as task if present)",
        ),
    )
}
"""Registry: benchmark name -> :class:`BenchmarkSpec`."""


# --------------------------------------------------------------------------------------------------
# loading


def resolve_benchmark(name_or_path: str, benchmark: str | None = None) -> tuple[BenchmarkSpec, bool]:
    """``(spec, is_local)`` for a registry name, a hub id or a local path.

    A local path's benchmark is ``benchmark`` or, failing that, guessed from the folder / file name
    (``.../MathVista`` -> ``mathvista``).
    """
    if benchmark is not None:
        key = benchmark.lower()
        if key not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {sorted(BENCHMARKS)}")
        spec = BENCHMARKS[key]
        return spec, os.path.exists(name_or_path)
    if name_or_path.lower() in BENCHMARKS:
        return BENCHMARKS[name_or_path.lower()], False
    by_hub = {spec.hub_id.lower(): spec for spec in BENCHMARKS.values()}
    if name_or_path.lower() in by_hub:
        return by_hub[name_or_path.lower()], False
    if os.path.exists(name_or_path):
        stem = re.sub(r"[^a-z0-9]", "", Path(name_or_path).name.lower().split(".")[0])
        for spec in BENCHMARKS.values():
            if stem.startswith(spec.name):
                return spec, True
        raise ValueError(
            f"cannot tell which benchmark the local path {name_or_path!r} holds; pass benchmark= one of "
            f"{sorted(BENCHMARKS)}"
        )
    raise ValueError(
        f"{name_or_path!r} is neither a benchmark name {sorted(BENCHMARKS)}, a known hub id "
        f"{sorted(s.hub_id for s in BENCHMARKS.values())}, nor an existing local path"
    )


def _pick_split(data: datasets.Dataset | datasets.DatasetDict, split: str | None, spec: BenchmarkSpec):
    if isinstance(data, datasets.Dataset):
        return data
    wanted = split or spec.split
    if wanted in data:
        return data[wanted]
    if split is None and len(data) == 1:
        (only,) = data.keys()
        warnings.warn(
            f"{spec.name}: no split {spec.split!r}; using the only split {only!r}", stacklevel=3
        )
        return data[only]
    raise ValueError(f"{spec.name}: no split {wanted!r}; available splits: {sorted(data)}")


def _read_local(path: str, split: str | None, spec: BenchmarkSpec) -> datasets.Dataset:
    p = Path(path)
    if p.is_dir() and ((p / "state.json").exists() or (p / "dataset_dict.json").exists()):
        return _pick_split(datasets.load_from_disk(str(p)), split, spec)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix in {".parquet", ".json", ".jsonl"})
    if not files:
        raise ValueError(f"{spec.name}: {path!r} holds no save_to_disk folder and no parquet/json files")
    kinds = {"parquet" if f.suffix == ".parquet" else "json" for f in files}
    if len(kinds) != 1:
        raise ValueError(f"{spec.name}: {path!r} mixes parquet and json files; keep one format")
    empty = [str(f) for f in files if f.stat().st_size == 0]
    if len(empty) == len(files):
        raise ValueError(f"{spec.name}: read {path!r}: {', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty "
                         "(0 bytes), so there is no row to use")
    with _quiet_progress():
        return datasets.load_dataset(kinds.pop(), data_files=[str(f) for f in files if f.stat().st_size], split="train")


def _read_hub(spec: BenchmarkSpec, split: str | None) -> datasets.Dataset:
    try:
        return datasets.load_dataset(spec.hub_id, split=split or spec.split)
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        return _pick_split(datasets.load_dataset(spec.hub_id), split, spec)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _undecoded(data: datasets.Dataset, column: str) -> datasets.Dataset:
    """Cast an image column (or list of images) to ``decode=False`` so broken bytes reach us as bytes."""
    feature = data.features[column]
    with _quiet_progress():
        if isinstance(feature, datasets.Image):
            return data.cast_column(column, datasets.Image(decode=False))
        inner = getattr(feature, "feature", None)
        if isinstance(inner, datasets.Image):
            return data.cast_column(column, type(feature)(datasets.Image(decode=False)))
    return data


def decode_image(value: Any) -> tuple[Image.Image, bytes | None] | None:
    """``(RGB image, original encoded bytes or None)`` from a datasets image cell, or ``None`` if broken.

    Accepts ``{"bytes", "path"}`` dicts, raw bytes, PIL images, file paths and lists (first item).
    """
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    raw: bytes | None = None
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, dict):
            raw = value.get("bytes")
            if raw is None and value.get("path") and os.path.exists(value["path"]):
                raw = Path(value["path"]).read_bytes()
            if raw is None:
                return None
            image = Image.open(io.BytesIO(raw))
        elif isinstance(value, (bytes, bytearray)):
            raw = bytes(value)
            image = Image.open(io.BytesIO(raw))
        elif isinstance(value, str) and os.path.exists(value):
            raw = Path(value).read_bytes()
            image = Image.open(io.BytesIO(raw))
        else:
            return None
        image.load()
        if image.width == 0 or image.height == 0:
            return None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if image.mode != "RGB":
        from roma.degrade import to_rgb

        return Image.fromarray(to_rgb(image)), None
    return image, raw


def _check_fields(data: datasets.Dataset, spec: BenchmarkSpec) -> None:
    columns = set(data.column_names)
    for needed in spec.fields:
        options = needed.split("|")
        if not any(o in columns for o in options):
            raise ValueError(
                f"{spec.name}: missing field {needed!r} (the loader reads {list(spec.fields)}); "
                f"the data has columns {sorted(columns)}"
            )


def _unique_ids(raw_ids: list[str]) -> list[str]:
    """Keep ids as given; a repeated id gets ``#2``, ``#3``, ... so every degradation seed is distinct."""
    seen: dict[str, int] = {}
    out = []
    for raw in raw_ids:
        seen[raw] = seen.get(raw, 0) + 1
        out.append(raw if seen[raw] == 1 else f"{raw}#{seen[raw]}")
    return out


def normalize_rows(data: datasets.Dataset, spec: BenchmarkSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """Schema examples of ``data`` (a source split) and the ids of rows skipped for a broken image."""
    _check_fields(data, spec)
    data = _undecoded(data, spec.image_field)
    if spec.id_field is not None and spec.id_field in data.column_names:
        raw_ids = [f"{spec.name}-{v}" for v in data[spec.id_field]]
    elif spec.name == "wemath":
        raw_ids = [f"wemath-{i}@{k}" for i, k in zip(data["ID"], data["key"])]
    else:
        raw_ids = [f"{spec.name}-{i}" for i in range(len(data))]
    ids = _unique_ids(raw_ids)
    examples, skipped = [], []
    for index, row in enumerate(data):
        decoded = decode_image(row[spec.image_field])
        if decoded is None:
            skipped.append(ids[index])
            continue
        try:
            fields = spec.normalize(row, index)
        except RowError as error:
            raise ValueError(f"{spec.name}: row {ids[index]!r}, field {error.field_name!r}: {error}") from None
        image, raw = decoded
        example = {
            "id": ids[index],
            **fields,
            "image": {"bytes": raw, "path": None} if raw is not None else image,
        }
        validate_example(example, source=f"{spec.name} row {ids[index]!r}")
        examples.append({c: example[c] for c in COLUMNS})
    return examples, skipped


def load_benchmark_with_skips(
    name_or_path: str, *, split: str | None = None, limit: int | None = None, benchmark: str | None = None
) -> tuple[datasets.Dataset, list[str]]:
    """Like :func:`load_benchmark`, and also return the ids of rows skipped for a missing/corrupt image."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    spec, is_local = resolve_benchmark(name_or_path, benchmark)
    data = _read_local(name_or_path, split, spec) if is_local else _read_hub(spec, split)
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    examples, skipped = normalize_rows(data, spec)
    if not examples:
        why = (f"all {len(skipped)} have a missing or corrupt image (e.g. {skipped[0]!r})" if skipped
               else "the source split is empty")
        raise ValueError(f"{spec.name}: read {len(data)} row(s) from {name_or_path!r} and none is usable: {why}")
    with _quiet_progress():
        dataset = datasets.Dataset.from_list(examples, features=FEATURES)
    return dataset, skipped


def load_benchmark(
    name_or_path: str, *, split: str | None = None, limit: int | None = None, benchmark: str | None = None
) -> datasets.Dataset:
    """A benchmark in roma's schema, from a registry name, a hub id or a local copy.

    Args:
        name_or_path: a name of :data:`BENCHMARKS` (``"mathvista"``), its hub id
            (``"AI4Math/MathVista"``; downloads), or a local ``save_to_disk`` folder / parquet / json
            file(s) with the benchmark's original columns.
        split: source split (default: the registry's, e.g. ``testmini`` for MathVista).
        limit: keep the first ``limit`` source rows (before skipping broken images).
        benchmark: which benchmark a local path holds (default: guessed from its name).

    Rows with missing or undecodable images are skipped with a warning naming how many; use
    :func:`load_benchmark_with_skips` to get their ids.
    """
    dataset, skipped = load_benchmark_with_skips(name_or_path, split=split, limit=limit, benchmark=benchmark)
    if skipped:
        warnings.warn(
            f"{name_or_path}: skipped {len(skipped)} row(s) with a missing or corrupt image: "
            f"{skipped[:5]}{' ...' if len(skipped) > 5 else ''}",
            stacklevel=2,
        )
    return dataset
