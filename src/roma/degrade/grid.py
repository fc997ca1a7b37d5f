"""A labelled grid of degradations for people to look at: rows = types, columns = clean + levels.

Layout (all sizes in pixels; ``cell_h × cell_w`` is the displayed image size)::

    ┌─────────┬───────────┬───────────┬───
    │         │  clean    │  level 1  │  …     header row, GridLayout.header_height tall
    ├─────────┼───────────┼───────────┼───
    │ type    │  image    │  image    │        one row per type: the image, then a caption line
    │ (pool)  │  caption  │  caption  │        ("σ=0.18 · 24.1 dB": parameters and PSNR)
    └─────────┴───────────┴───────────┴───

Each column is ``col_w + gap`` wide after a ``label_width`` label column, with
``col_w = max(cell_w, min_column_width)`` (images are centred in it), each row
``cell_h + caption_height + gap`` tall after the header, and a ``gap`` closes the right and bottom
edges. Cells show the image at ``min(1, cell_size / max(H, W))`` of its size (area resampling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from roma.degrade.api import apply, derive_seed
from roma.degrade.image import to_rgb
from roma.degrade.params import POOLS, check_level, check_type, describe, sample_params


@dataclass(frozen=True)
class GridLayout:
    """Fixed sizes of the grid's frame, in pixels."""

    label_width: int = 170
    """Width of the left column holding each row's type name and pool."""
    header_height: int = 30
    """Height of the top row holding the column titles (``clean``, ``level 1``, …)."""
    caption_height: int = 22
    """Height of the caption line under each cell (the parameters and the PSNR against the clean image)."""
    gap: int = 8
    """Space between columns and rows and along the right and bottom edges."""
    min_column_width: int = 190
    """Columns are at least this wide so captions fit; narrower images are centred in them."""
    font_size: int = 14
    """Size of all labels."""
    background: tuple[int, int, int] = (228, 228, 228)
    """Colour of the frame, grey so that white images keep visible edges."""


@dataclass(frozen=True)
class GridCell:
    """What one degraded cell shows: its type, level, parameters and PSNR against the clean image (dB)."""

    name: str
    level: int
    params: dict
    psnr: float


def cell_shape(height: int, width: int, cell_size: int) -> tuple[int, int]:
    """``(h, w)`` of a displayed cell: the image scaled by ``min(1, cell_size / max(H, W))``, ≥ 1 px."""
    scale = min(1.0, cell_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def psnr(clean: np.ndarray, degraded: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two ``(H, W, 3) uint8`` images (``inf`` when equal)."""
    mse = float(np.mean((clean.astype(np.float64) - degraded.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def render_grid(
    image: Image.Image | np.ndarray,
    *,
    types: Sequence[str],
    levels: Sequence[int] = (1, 2, 3),
    seed: int = 0,
    cell_size: int = 448,
    layout: GridLayout = GridLayout(),
) -> tuple[np.ndarray, list[GridCell]]:
    """``(grid (Hg, Wg, 3) uint8, one GridCell per degraded cell in row-major order)``.

    Cell ``(type, level)`` is ``degrade(image, type, level, seed=derive_seed(seed, "grid", type, level))``
    shown at the cell size; the first column is the clean image.
    """
    types = [check_type(name) for name in types]
    levels = [check_level(level) for level in levels]
    if not types or not levels or "train" in levels:
        raise ValueError(f"need at least one type and levels among 1, 2, 3; got types={types}, levels={levels}")
    if isinstance(cell_size, bool) or not isinstance(cell_size, int) or cell_size < 1:
        raise ValueError(f"cell_size must be a positive int, got {cell_size!r}")
    clean = to_rgb(image)
    cell_h, cell_w = cell_shape(*clean.shape[:2], cell_size)
    col_w = max(cell_w, layout.min_column_width)
    n_cols = 1 + len(levels)
    width = layout.label_width + n_cols * (col_w + layout.gap) + layout.gap
    height = layout.header_height + len(types) * (cell_h + layout.caption_height + layout.gap) + layout.gap

    canvas = Image.new("RGB", (width, height), layout.background)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=layout.font_size)
    titles = ["clean"] + [f"level {level}" for level in levels]
    for col, title in enumerate(titles):
        x = layout.label_width + layout.gap + col * (col_w + layout.gap)
        draw.text((x + col_w / 2, layout.header_height / 2), title, fill="black", font=font, anchor="mm")

    cells = []
    for row, name in enumerate(types):
        y = layout.header_height + row * (cell_h + layout.caption_height + layout.gap)
        pool = next(p for p, names in POOLS.items() if name in names)
        label_y = y + cell_h / 2
        draw.text((layout.gap, label_y - 2), name, fill="black", font=font, anchor="ld")
        draw.text((layout.gap, label_y + 2), f"({pool})", fill=(90, 90, 90), font=font, anchor="la")
        views = [(clean, "clean")]
        for level in levels:
            params = sample_params(name, level, np.random.default_rng(derive_seed(seed, "grid", name, level)))
            degraded = apply(clean, name, params)
            cells.append(GridCell(name, level, params, psnr(clean, degraded)))
            views.append((degraded, f"{describe(name, params)} · {cells[-1].psnr:.1f} dB"))
        for col, (pixels, caption) in enumerate(views):
            x = layout.label_width + layout.gap + col * (col_w + layout.gap)
            canvas.paste(Image.fromarray(_fit(pixels, cell_h, cell_w)), (x + (col_w - cell_w) // 2, y))
            draw.text((x + col_w / 2, y + cell_h + layout.caption_height / 2), caption, fill="black", font=font,
                      anchor="mm")  # fmt: skip
    return np.asarray(canvas).copy(), cells


def _fit(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    if pixels.shape[:2] == (height, width):
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
