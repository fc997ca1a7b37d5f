"""Where a benchmark's rows come from: registry names, hub ids (the local cache only), local files and
folders, and the choice of one split. See :mod:`roma.data.benchmarks`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import datasets

from roma.data.benchmarks.specs import BENCHMARKS, BenchmarkSpec

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


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()
