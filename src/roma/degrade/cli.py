"""``roma degrade [IMAGE] --out grid.png``: a labelled grid of degradation types × levels.

Rows are types, columns the clean image and each chosen level; captions give each cell's parameters
and PSNR. Without IMAGE the built-in sample chart (448 px, text of 10–20 px) is used; IMAGE is read by
:func:`roma.data.images.prepare_image`, as training and evaluation read theirs (EXIF orientation
applied, converted to RGB). ``--types`` takes type names and pool names (``--pool document`` is
``--types document``); the default shows the paper's nine types (the ``seen`` and ``unseen`` pools).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from roma.data.images import ImageError, prepare_image
from roma.degrade.grid import render_grid
from roma.degrade.params import ALL_TYPES, POOLS, expand_pools
from roma.degrade.sample import sample_chart
from roma.preflight import check_writable_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roma degrade",
        description="Render a labelled grid of degradations: rows = types, columns = clean + levels.",
    )
    parser.add_argument("image", nargs="?", type=Path, help="input image (any PIL-readable file); "
                        "default: the built-in 448-px sample chart")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("degrade-grid.png"), help="output PNG (default: %(default)s)")
    parser.add_argument("--types", nargs="+", default=None, choices=[*POOLS, *ALL_TYPES], metavar="TYPE",
                        help=f"types or pools to show (default: seen unseen); pools: {', '.join(POOLS)}; "
                             f"types: {', '.join(ALL_TYPES)}")
    parser.add_argument("--pool", nargs="+", default=None, choices=list(POOLS), metavar="POOL",
                        help="pools to show (added to --types)")  # fmt: skip
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3],
                        help="levels to show as columns (default: 1 2 3)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise fields and angles (default: 0)")
    parser.add_argument("--cell-size", type=int, default=448,
                        help="largest side of a displayed cell in px; larger images are shown reduced (default: 448)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be ≥ 0, got {args.seed}")
    if args.cell_size < 1:
        parser.error(f"--cell-size must be ≥ 1, got {args.cell_size}")
    types = list(expand_pools([*(args.types or []), *(args.pool or [])] or ["seen", "unseen"]))
    levels = sorted(set(args.levels))

    try:
        check_writable_dir(args.out.parent, what="output folder")
    except ValueError as err:
        print(f"roma degrade: {err}", file=sys.stderr)
        return 2
    if args.image is None:
        image, source = sample_chart(), "built-in sample chart"
    else:
        if not args.image.is_file():
            print(f"roma degrade: cannot read image {str(args.image)!r}: no such file", file=sys.stderr)
            return 2
        try:
            image, source = prepare_image(args.image), str(args.image)  # upright, RGB: as a model sees it
        except ImageError as err:
            print(f"roma degrade: cannot read image {str(args.image)!r}: {err}", file=sys.stderr)
            return 2
    try:
        grid, cells = render_grid(image, types=types, levels=levels, seed=args.seed, cell_size=args.cell_size)
    except (TypeError, ValueError) as err:
        print(f"roma degrade: {err}", file=sys.stderr)
        return 2

    try:
        Image.fromarray(grid).save(args.out)
    except (OSError, ValueError) as err:  # e.g. an unknown file extension, a full disk
        print(f"roma degrade: cannot write {str(args.out)!r}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"{source}: {len(types)} types × levels {levels} -> {args.out} ({grid.shape[1]}×{grid.shape[0]} px)")
    for cell in cells:
        print(f"  {cell.name:<15} level {cell.level}  PSNR {cell.psnr:5.1f} dB  {cell.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
