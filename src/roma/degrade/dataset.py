"""``roma degrade-dataset SRC --out DIR``: seeded degraded copies of a dataset, for any evaluation kit.

Three source formats, found from ``SRC``:

- a ``datasets`` ``save_to_disk`` folder (a ``Dataset`` or ``DatasetDict``): every column of feature
  type ``datasets.Image`` is degraded; each copy is saved the same way;
- parquet — one file, or a folder searched recursively (a hub snapshot such as
  ``MathVista/data/testmini-….parquet``): every column of Arrow type ``struct<bytes, path>`` (the
  ``datasets`` image encoding) is degraded; each copy mirrors the folder (other files, e.g. the
  README that declares the splits, are copied as they are), schema and metadata kept;
- a VLMEvalKit-style ``.tsv`` with base64 images in an ``image`` column (a short all-digit value
  refers to another row's image, as VLMEvalKit writes repeated images, and is kept as it is).

For each ``(type, level)`` the copy goes to ``DIR/<type>-L<level>/`` (a TSV is renamed
``<stem>_<type>_L<level>.tsv``, a new dataset name for VLMEvalKit). Rows are identical except the
image cells, which hold the degraded pixels as PNG (lossless, so the pixels are exactly those the
manifest replays; an image is read by roma's one decode path, :func:`roma.data.images.prepare_image`:
its EXIF orientation applied and converted to RGB, alpha composited over white, as in ``roma eval``). Each
image is degraded with ``seed = derive_seed(run seed, location, row, column, type, level)``
(location: the split or the file's path relative to ``SRC``), the parameters drawn from it and
applied (:func:`roma.degrade.sample_params`, :func:`roma.degrade.apply`).

``DIR/manifest.jsonl`` has one line per degraded (or skipped) image: ``copy, location, row, column,
type, level, seed, params, height, width`` (or ``skipped`` with the reason); :func:`replay` re-applies
a line to the original image. ``DIR/degrade-dataset.json`` holds the command's settings and the
package versions. docs/degradations.md shows how to point lmms-eval and VLMEvalKit at the copies.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from roma.data.images import prepare_image
from roma.degrade.api import apply, derive_seed
from roma.degrade.params import ALL_TYPES, POOLS, check_level, check_type, expand_pools, sample_params
from roma.preflight import check_writable_dir

Format = Literal["hf", "parquet", "tsv"]
_BROKEN = (OSError, UnidentifiedImageError, ValueError, TypeError)


def detect_format(src: str | Path) -> Format:
    """``"hf"`` (a ``save_to_disk`` folder), ``"parquet"`` (a file or a folder holding some) or ``"tsv"``."""
    src = Path(src)
    if src.is_file():
        if src.suffix == ".parquet":
            return "parquet"
        if src.suffix == ".tsv":
            return "tsv"
    elif src.is_dir():
        if (src / "dataset_dict.json").exists() or (src / "state.json").exists():
            return "hf"
        if next(src.rglob("*.parquet"), None) is not None:
            return "parquet"
    raise ValueError(
        f"{str(src)!r} is not a dataset roma can copy: give a save_to_disk folder (dataset_dict.json or "
        "state.json), a .parquet file or a folder of them, or a VLMEvalKit .tsv"
    )


def copy_name(name: str, level: int) -> str:
    """The folder of one copy: ``"fog-L3"``."""
    return f"{name}-L{level}"


def image_seed(seed: int, location: str, row: int, column: str, name: str, level: int) -> int:
    """The seed of one image of one copy (see the module docstring)."""
    return derive_seed(seed, location, row, column, name, level)


def degrade_encoded(data: bytes, name: str, level: int, *, seed: int) -> tuple[bytes, dict[str, Any], tuple[int, int]]:
    """``(PNG bytes, params, (H, W))`` of an encoded image degraded by ``name`` at ``level``."""
    image = prepare_image(data)  # roma's one decode path: EXIF orientation applied, RGB (no size cap)
    params = sample_params(name, level, np.random.default_rng(seed))
    pixels = apply(image, name, params)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), params, pixels.shape[:2]


def replay(entry: dict[str, Any], original: bytes | Image.Image | np.ndarray) -> np.ndarray:
    """The degraded ``(H, W, 3) uint8`` pixels of a manifest line, from the original image."""
    if isinstance(original, (bytes, bytearray, Image.Image)):
        original = prepare_image(original)
    return apply(original, entry["type"], entry["params"])


# ------------------------------------------------------------------------------------------ formats


class _Copier:
    """Degrades the image cells of one copy and collects its manifest lines."""

    def __init__(self, name: str, level: int, seed: int) -> None:
        self.name, self.level, self.seed = name, level, seed
        self.manifest: list[dict[str, Any]] = []

    def __call__(self, data: bytes | None, location: str, row: int, column: str) -> bytes | None:
        """The degraded PNG bytes of one cell, or ``None`` to keep the cell (missing or broken image)."""
        base = {"copy": copy_name(self.name, self.level), "location": location, "row": row, "column": column,
                "type": self.name, "level": self.level}  # fmt: skip
        if not data:
            self.manifest.append({**base, "skipped": "no image"})
            return None
        seed = image_seed(self.seed, location, row, column, self.name, self.level)
        try:
            png, params, (height, width) = degrade_encoded(data, self.name, self.level, seed=seed)
        except _BROKEN as error:
            self.manifest.append({**base, "skipped": f"cannot degrade: {error}"})
            return None
        self.manifest.append({**base, "seed": seed, "params": params, "height": height, "width": width})
        return png


def _copy_hf(src: Path, dest: Path, copier: _Copier, limit: int | None) -> int:
    import datasets

    loaded = datasets.load_from_disk(str(src))
    splits = loaded if isinstance(loaded, datasets.DatasetDict) else {"": loaded}
    out, rows = {}, 0
    for split, dataset in splits.items():
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        columns = [c for c, f in dataset.features.items() if isinstance(f, datasets.Image)]
        raw = dataset.cast(datasets.Features({c: datasets.Image(decode=False) if c in columns else f
                                              for c, f in dataset.features.items()}))  # fmt: skip

        def change(example: dict[str, Any], index: int, split: str = split, columns: list[str] = columns) -> dict[str, Any]:
            for column in columns:
                cell = example[column]
                png = copier(_cell_bytes(cell), split or "train", index, column)
                if png is not None:
                    example[column] = {"bytes": png, "path": (cell or {}).get("path")}
            return example

        changed = raw.map(change, with_indices=True, features=raw.features, load_from_cache_file=False,
                          desc=f"{copier.name} L{copier.level}")  # fmt: skip
        out[split] = changed.cast(dataset.features)
        rows += len(changed)
    result = datasets.DatasetDict(out) if isinstance(loaded, datasets.DatasetDict) else out[""]
    result.save_to_disk(str(dest))
    return rows


def _cell_bytes(cell: Any) -> bytes | None:
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        path = cell.get("path")
        if path and Path(path).is_file():
            return Path(path).read_bytes()
    return None


def _image_columns(schema: Any) -> list[str]:
    import pyarrow as pa

    return [f.name for f in schema if pa.types.is_struct(f.type) and {x.name for x in f.type} == {"bytes", "path"}]


def _copy_parquet(src: Path, dest: Path, copier: _Copier, limit: int | None) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = src if src.is_dir() else src.parent
    files = sorted(src.rglob("*.parquet")) if src.is_dir() else [src]
    if src.is_dir():  # the rest of a snapshot (README with the split layout, json sidecars) as it is
        for other in sorted(p for p in src.rglob("*") if p.is_file() and p.suffix != ".parquet"):
            target = dest / other.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(other, target)
    rows = 0
    for path in files:
        table = pq.read_table(path)
        if limit is not None:
            table = table.slice(0, limit)
        location = str(path.relative_to(root))
        for column in _image_columns(table.schema):
            cells = table.column(column).to_pylist()
            new = []
            for row, cell in enumerate(cells):
                png = copier(_cell_bytes(cell), location, row, column)
                new.append(cell if png is None else {"bytes": png, "path": (cell or {}).get("path")})
            index = table.schema.get_field_index(column)
            table = table.set_column(index, table.schema.field(index), pa.array(new, type=table.schema.field(index).type))
        target = dest / location
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target)
        rows += table.num_rows
    return rows


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        return header, [row for row in reader]


def _copy_tsv(src: Path, dest: Path, copier: _Copier, limit: int | None) -> int:
    header, rows = _read_tsv(src)
    if "image" not in header:
        raise ValueError(f"{src}: a VLMEvalKit TSV needs an 'image' column of base64 images; columns: {header}")
    column = header.index("image")
    rows = rows if limit is None else rows[:limit]
    for row, values in enumerate(rows):
        value = values[column] if column < len(values) else ""
        if value.isdigit() and len(value) < 64:  # VLMEvalKit: a repeated image refers to another row's
            continue
        try:
            data = base64.b64decode(value, validate=True) if value else None
        except ValueError:
            data = b"not base64"
        png = copier(data, src.name, row, "image")
        if png is not None:
            values[column] = base64.b64encode(png).decode("ascii")
    target = dest / f"{src.stem}_{copier.name}_L{copier.level}.tsv"
    dest.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows)


_COPIERS: dict[Format, Callable[[Path, Path, _Copier, int | None], int]] = {
    "hf": _copy_hf, "parquet": _copy_parquet, "tsv": _copy_tsv,
}  # fmt: skip


def degrade_dataset(
    src: str | Path,
    out: str | Path,
    *,
    types: Sequence[str],
    levels: Sequence[int] = (3,),
    seed: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """Write one degraded copy of ``src`` per ``(type, level)`` into ``out`` plus ``manifest.jsonl``.

    Returns ``{"format", "copies": {copy: rows}, "images", "skipped"}``; raises ``ValueError`` for an
    unknown source format, type or level, or an ``out`` that already holds a manifest.
    """
    src, out = Path(src), Path(out)
    fmt = detect_format(src)
    types = [check_type(name) for name in types]
    levels = [check_level(level) for level in levels]
    if not types or not levels or "train" in levels:
        raise ValueError(f"give at least one type and levels among 1, 2, 3; got types {types}, levels {levels}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if (out / "manifest.jsonl").exists():
        raise ValueError(f"{out} already holds degraded copies (manifest.jsonl); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    from roma.provenance import provenance

    copies: dict[str, int] = {}
    images = skipped = 0
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as manifest:
        for name in types:
            for level in levels:
                copier = _Copier(name, int(level), seed)
                copies[copy_name(name, int(level))] = _COPIERS[fmt](src, out / copy_name(name, int(level)), copier, limit)
                for entry in copier.manifest:
                    manifest.write(json.dumps(entry, sort_keys=True) + "\n")
                    skipped += "skipped" in entry
                    images += "skipped" not in entry
    config = {"source": str(src), "format": fmt, "types": types, "levels": [int(lv) for lv in levels], "seed": seed,
              "limit": limit, **provenance()}  # fmt: skip
    (out / "degrade-dataset.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return {"format": fmt, "copies": copies, "images": images, "skipped": skipped}


def read_manifest(out: str | Path) -> Iterator[dict[str, Any]]:
    """The lines of ``out/manifest.jsonl``."""
    with (Path(out) / "manifest.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


# ----------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roma degrade-dataset",
        description="Write seeded degraded copies of a dataset (save_to_disk folder, parquet, VLMEvalKit TSV) "
                    "with identical rows except the images, and a manifest to replay every image.",
    )  # fmt: skip
    parser.add_argument("src", type=Path, help="save_to_disk folder, .parquet file or folder, or .tsv file")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per type and level)")
    parser.add_argument("--types", nargs="+", default=None, choices=[*POOLS, *ALL_TYPES], metavar="TYPE",
                        help=f"types or pools (default: unseen); pools: {', '.join(POOLS)}")  # fmt: skip
    parser.add_argument("--pool", nargs="+", default=None, choices=list(POOLS), metavar="POOL",
                        help="pools of types (added to --types)")  # fmt: skip
    parser.add_argument("--levels", nargs="+", type=int, default=[3], choices=[1, 2, 3], help="default: 3")
    parser.add_argument("--seed", type=int, default=0, help="run seed of every image's draw (default 0)")
    parser.add_argument("--limit", type=int, help="first N rows of each split / file only")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    types = list(expand_pools([*(args.types or []), *(args.pool or [])] or ["unseen"]))
    try:
        detect_format(args.src)  # a missing or unknown source first, then the output folder, then the work
        check_writable_dir(args.out)
        result = degrade_dataset(args.src, args.out, types=types, levels=sorted(set(args.levels)), seed=args.seed,
                                 limit=args.limit)  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        print(f"roma degrade-dataset: {error}", file=sys.stderr)
        return 2
    print(f"{args.src} ({result['format']}): {len(result['copies'])} copies, {result['images']} images degraded, "
          f"{result['skipped']} kept (missing or broken) -> {args.out}")  # fmt: skip
    for name, rows in result["copies"].items():
        print(f"  {name:<24} {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
