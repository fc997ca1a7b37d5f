"""The built-in sample image: a bar chart with text of several sizes, drawn with Pillow.

The degradation table was calibrated by eye on a 448-px chart with 12-px text; this is such a chart
(title 20 px, labels 12–14 px, footnote 10 px), so a grid of it shows at which level text of each
size stops being legible. It is drawn in code, deterministically, with Pillow's bundled font.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_BARS = (("North", 42, (31, 119, 180)), ("East", 27, (255, 127, 14)), ("South", 35, (44, 160, 44)),
         ("West", 18, (214, 39, 40)), ("Online", 46, (148, 103, 189)))  # fmt: skip


def sample_chart(size: int = 448) -> np.ndarray:
    """A ``(size, size, 3) uint8`` bar chart; ``size`` ≥ 64 (the layout is defined at 448 px and scaled)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 64:
        raise ValueError(f"size must be an int ≥ 64, got {size!r}")
    s = size / 448  # layout unit: 1 px at 448

    def font(px: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.load_default(size=max(6, round(px * s)))

    def xy(x: float, y: float) -> tuple[float, float]:
        return (x * s, y * s)

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.text(xy(224, 14), "Quarterly sales by region", fill="black", font=font(20), anchor="mt")
    draw.text(xy(224, 40), "Q3 2024, thousands of units", fill=(90, 90, 90), font=font(12), anchor="mt")

    left, right, top, bottom = 60, 430, 70, 360  # plot area at 448 px
    for value in range(0, 51, 10):
        y = bottom - (bottom - top) * value / 50
        draw.line([xy(left, y), xy(right, y)], fill=(225, 225, 225), width=max(1, round(s)))
        draw.text(xy(left - 6, y), str(value), fill="black", font=font(12), anchor="rm")
    draw.line([xy(left, top), xy(left, bottom), xy(right, bottom)], fill="black", width=max(1, round(2 * s)))

    slot = (right - left) / len(_BARS)
    for i, (label, value, colour) in enumerate(_BARS):
        x0, x1 = left + slot * i + 12, left + slot * (i + 1) - 12
        y = bottom - (bottom - top) * value / 50
        draw.rectangle([xy(x0, y), xy(x1, bottom)], fill=colour)
        draw.text(xy((x0 + x1) / 2, y - 4), f"{value}.{(value * 7) % 10}", fill="black", font=font(13), anchor="mb")
        draw.text(xy((x0 + x1) / 2, bottom + 6), label, fill="black", font=font(14), anchor="mt")

    draw.text(xy(224, 392), "Total 170.6 · best: Online (+12% vs Q2)", fill="black", font=font(14), anchor="mt")
    draw.text(xy(224, 418), "Source: regional reports; figures rounded to 0.1 k.", fill=(60, 60, 60),
              font=font(10), anchor="mt")  # fmt: skip
    return np.asarray(img).copy()
