"""Normalising a source split into roma's schema: ids, images, skipped rows, and the public loaders
(:func:`load_benchmark`, :func:`read_benchmark`). See :mod:`roma.data.benchmarks`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import datasets
from PIL import Image

from roma.data.benchmarks.sources import _quiet_progress, read_source
from roma.data.benchmarks.specs import BenchmarkSpec, RowError
from roma.data.images import ImageError, open_image, to_rgb_image, undecoded_column, upright
from roma.data.schema import (
    COLUMNS,
    features,
    unique_ids,
    validate_example,
    with_image_parts,
)

MAX_SKIPPED_SHARE = 0.2
"""Largest share of a benchmark's rows that may be skipped as unusable before loading is refused."""

FEATURES = features()
"""The Arrow features of every normalised benchmark (the columns of :data:`roma.data.schema.COLUMNS`)."""


# --------------------------------------------------------------------------------------------------
# normalising rows


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
