"""Evaluation records: an append-only ``records.jsonl``, one line per example × condition, for resume.

A record holds ``benchmark, id, task, setting, type, level, params, answer, answer_type, completion,
extracted, correct, judge`` (and ``judge_error`` when an LLM verdict could not be read), and ``n_images``,
the images of its row (``params`` is then a list of one dict per image when there are several), stamped
with ``run`` (the digest of the run's identity: model, model fingerprint, generation settings) and ``row``
(the digest of the example's content, :func:`roma.eval.runlock.row_digest`). Its key is
``(benchmark, id, setting, type, level)``: a resumed run reuses a record with that key only when both
stamps match; other records are dropped (:func:`write_records`) and generated again.

Records are appended a batch at a time and flushed to disk (``fsync``) before the next batch starts,
so an interrupted run loses at most the batch in flight. If the process died in the middle of a line,
that partial last line is cut off when the file is opened again (:func:`repair_tail`, with a warning);
a malformed line anywhere else is an error, never skipped.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RECORD_FIELDS: tuple[str, ...] = (
    "benchmark", "id", "task", "setting", "type", "level", "params", "answer", "answer_type", "completion",
    "extracted", "correct", "judge",
)

Key = tuple[str, str, str, str, int]


def record_key(record: dict[str, Any]) -> Key:
    """``(benchmark, id, setting, type, level)`` — what makes a record unique within a run."""
    return (str(record["benchmark"]), str(record["id"]), str(record["setting"]), str(record["type"]),
            int(record["level"]))


def repair_tail(path: str | Path) -> int:
    """Cut a partial last line (no trailing newline) left by an interrupted write; return bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
    removed = len(data) - keep
    warnings.warn(f"{path}: removed a partial last record ({removed} bytes) left by an interrupted run", stacklevel=2)
    return removed


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``records.jsonl`` (after :func:`repair_tail`); ``[]`` if the file does not exist.

    Raises ``ValueError`` naming the line of a malformed record or of a repeated key.
    """
    path = Path(path)
    if not path.exists():
        return []
    repair_tail(path)
    records, seen = [], set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON record ({error})") from None
            missing = [f for f in RECORD_FIELDS if f not in record]
            if missing:
                raise ValueError(f"{path}:{number}: record lacks field(s) {missing}")
            key = record_key(record)
            if key in seen:
                raise ValueError(f"{path}:{number}: repeated record key {key}")
            seen.add(key)
            records.append(record)
    return records


def append_records(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records as JSON lines, flushed and synced to disk; return how many were written."""
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records]
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Replace the file with ``records`` (written to a temporary file, synced, then renamed); return the count."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records]
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return len(lines)
