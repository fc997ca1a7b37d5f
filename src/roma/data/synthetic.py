"""The synthetic visual-reasoning suite: small seeded scenes whose answers need the image.

Five families mirror the kinds of question the paper's benchmarks ask:

==========  ==========================================================  ===========  ======================
family      question                                                    answer       mirrors
==========  ==========================================================  ===========  ======================
``count``   "How many red shapes are in the image?" (0–4 of them, red /  number       MMStar (counting)
            green / blue asked, among at most 6 shapes of 15–20 px)
``color``   "Which colour do most of the shapes in the image have?"     text (word)  MMStar (attributes)
            (2–3 shapes of that colour, 1–2 of other colours)
``chart``   "What is the value of bar B in the chart?" (three bars,     number       ChartQA
            values 1–8, gridlines labelled every 2 units)
``tallest`` "Which bar in the chart is the tallest?" (options bar A,    choice       ChartQA / MMStar
            bar B, bar C; one tallest bar)                                           (multiple choice)
``arith``   "What is the sum of the two numbers in the image?" or "…    number       MathVista
            the larger number minus the smaller number…" (two digits
            1–9, glyphs ~12 px high)
==========  ==========================================================  ===========  ======================

Every example is drawn from a **scene**, a small JSON-able dict that fully determines the image
(:func:`render`) and the question, answer and worked solution (:func:`solve`). The image is cut into a
4×4 grid of cells, one cell per vision token of the tiny model at the default 128 px (patch 16, spatial
merge 2); each object sits in its own cell with a small random offset. Sizes are given at 128 px and
scale with ``image_size``.

Calibration, for a ~1.5 M-parameter Qwen3-VL trained from random weights for a few minutes (measured,
see ``docs/sft.md``):

- **Mid-grey background.** The processor maps pixels to ``(x - 0.5) / 0.5``, so a white background
  is a large constant input to every patch that drowns the marks; the tiny model then stayed at chance
  for 900+ steps even on counting. On mid-grey (0 after normalisation) the same counting task is
  learnt in ~100 steps.
- **Marks one token wide.** Shapes of 15–20 px, digits ~12 px high and one bar per column of tokens:
  large enough to be unambiguous on the clean image (the tests read every answer back off the pixels),
  small enough that Level-3 degradations destroy part of the evidence — a 0.25 downscale or pixelation
  leaves 3–4 px per digit (a template-matching reader then reads 35–43 % of the digits right, against
  99–100 % under the other seven types), blur softens the bar tops, strong noise moves colours across
  the red/orange and blue/purple boundaries.
- **What a tiny model can learn in minutes.** Colour, presence, bar height and ~12 px digits are
  learnt; telling circles, squares and triangles apart (at 15–26 px) stayed at chance for 600+ steps,
  and so did reading an object's quadrant, so no family depends on shape kind or absolute position.
  Multiple-choice options come in a fixed order (the letter follows from the reasoning).
- **Short worked solutions** (``<think>There are 3 red shapes.</think>\\boxed{3}``, ~15–20 tokens)
  that name the evidence before the answer; ``arith`` writes ``<think>7 + 5 = 12</think>`` so the
  reading and the arithmetic are separate steps.

Splits: ``load_split("train" | "validation" | "test", n)`` seeds the generator with :data:`SPLIT_SEEDS`
and keeps only scenes whose content hash (pixel offsets and sizes excluded) falls in that split's
buckets, so no scene appears in two splits whatever ``n`` is.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from roma.data.schema import LETTERS, make_prompt, prompt_text, validate_example
from roma.data.schema import features as schema_features

FAMILIES: tuple[str, ...] = ("count", "color", "chart", "tallest", "arith")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (225, 200, 30),
    "green": (40, 160, 70),
    "blue": (45, 85, 225),
    "purple": (150, 70, 190),
}
COUNT_TARGETS: tuple[str, ...] = ("red", "green", "blue")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BAR_NAMES: str = "ABC"
BAR_MAX: int = 8
DIGIT_PX = 16  # font size of the arith digits at 128 px (glyphs about 12 px high)

GRID = 4  # cells per side
BASE_SIZE = 128  # all pixel sizes below are at this image side and scale with image_size
BACKGROUND = (128, 128, 128)  # mid-grey: 0 after the processor's (x - 0.5) / 0.5 normalisation
INK = (20, 20, 20)

SPLIT_SEEDS: dict[str, int] = {"train": 1_000, "validation": 2_000, "test": 3_000}
_N_BUCKETS = 10
SPLIT_BUCKETS: dict[str, tuple[int, ...]] = {"train": tuple(range(8)), "validation": (8,), "test": (9,)}
_PIXEL_FIELDS = frozenset({"x", "y", "size"})  # layout detail left out of the split key


# --------------------------------------------------------------------------------------------- scenes
# Each sampler draws one scene with a numpy Generator: semantic content first, then pixel layout.


def _cells(rng: np.random.Generator, k: int) -> list[tuple[int, int]]:
    """``k`` distinct (row, col) cells of the grid."""
    flat = rng.choice(GRID * GRID, size=k, replace=False)
    return [(int(i) // GRID, int(i) % GRID) for i in flat]


def _place(rng: np.random.Generator, cell: tuple[int, int], size: int, max_offset: int | None = None):
    """Centre of a mark of ``size`` px (at 128 px) in ``cell``, moved by up to ``max_offset`` px each way.

    ``None`` allows the largest offset that keeps a 1 px gap to the cell border. Smaller offsets keep
    a mark on the same patches of its vision token, which makes fine shapes (digits, triangles) easier to learn.
    """
    cell_px = BASE_SIZE // GRID
    largest = (cell_px - size) // 2 - 1
    max_offset = largest if max_offset is None else min(max_offset, largest)
    dx, dy = (int(v) for v in rng.integers(-max_offset, max_offset + 1, size=2))
    row, col = cell
    return {"x": col * cell_px + cell_px // 2 + dx, "y": row * cell_px + cell_px // 2 + dy, "size": size}


def _shape(
    rng: np.random.Generator, kind: str, colour: str, cell: tuple[int, int], sizes: tuple[int, int]
) -> dict[str, Any]:
    """A shape record; its size is drawn from ``sizes`` = [low, high]."""
    size = int(rng.integers(sizes[0], sizes[1] + 1))
    return {"kind": kind, "colour": colour, "cell": list(cell), **_place(rng, cell, size)}


def _sample_count(rng: np.random.Generator) -> dict[str, Any]:
    target = str(rng.choice(COUNT_TARGETS))
    n_target = int(rng.integers(0, 5))  # the answer, uniform over 0..4
    n_other = int(rng.integers(1 if n_target == 0 else 0, 7 - n_target))  # at most 6 shapes in all
    others = [c for c in COLOURS if c != target]
    colours = [target] * n_target + [str(rng.choice(others)) for _ in range(n_other)]
    cells = _cells(rng, len(colours))
    shapes = [_shape(rng, str(rng.choice(SHAPES)), c, cell, (15, 20)) for c, cell in zip(colours, cells)]
    return {"family": "count", "target": target, "shapes": shapes}


def _sample_color(rng: np.random.Generator) -> dict[str, Any]:
    majority = str(rng.choice(list(COLOURS)))  # the answer, uniform over the six colours
    n_major = int(rng.integers(2, 4))
    others = [str(c) for c in rng.choice([c for c in COLOURS if c != majority], size=int(rng.integers(1, 3)),
                                         replace=False)]  # one shape each: the majority colour is unique
    colours = [majority] * n_major + others
    cells = _cells(rng, len(colours))
    shapes = [_shape(rng, str(rng.choice(SHAPES)), c, cell, (15, 20)) for c, cell in zip(colours, cells)]
    return {"family": "color", "shapes": shapes}


def _sample_chart(rng: np.random.Generator) -> dict[str, Any]:
    values = [int(v) for v in rng.integers(1, BAR_MAX + 1, size=len(BAR_NAMES))]
    return {"family": "chart", "values": values, "target": str(rng.choice(list(BAR_NAMES)))}


def _sample_arith(rng: np.random.Generator) -> dict[str, Any]:
    digits = [int(v) for v in rng.integers(1, 10, size=2)]
    op = str(rng.choice(["sum", "difference"]))
    cells = sorted(_cells(rng, 2))  # reading order: top to bottom, left to right
    numbers = [{"value": d, "cell": list(cell), **_place(rng, cell, 14, 2)} for d, cell in zip(digits, cells)]
    return {"family": "arith", "op": op, "numbers": numbers}


def _sample_tallest(rng: np.random.Generator) -> dict[str, Any]:
    values = [int(v) for v in rng.integers(1, BAR_MAX + 1, size=len(BAR_NAMES))]
    while values.count(max(values)) > 1:  # one tallest bar
        values = [int(v) for v in rng.integers(1, BAR_MAX + 1, size=len(BAR_NAMES))]
    return {"family": "tallest", "values": values}


_SAMPLERS: dict[str, Callable[[np.random.Generator], dict[str, Any]]] = {
    "count": _sample_count,
    "color": _sample_color,
    "chart": _sample_chart,
    "arith": _sample_arith,
    "tallest": _sample_tallest,
}


# ------------------------------------------------------------------------------------ question + answer


@dataclass(frozen=True)
class Solved:
    """What a scene asks and answers: the question, option texts, gold answer and the worked reasoning."""

    question: str
    choices: list[str]
    answer: str
    answer_type: str
    reasoning: str  # the text inside <think>…</think>


def solve(scene: dict[str, Any]) -> Solved:
    """The question, answer and worked reasoning of a scene (the scene alone decides them)."""
    family = scene["family"]
    if family == "count":
        n = sum(s["colour"] == scene["target"] for s in scene["shapes"])
        noun = "shape" if n == 1 else "shapes"
        return Solved(
            f"How many {scene['target']} shapes are in the image?", [], str(n), "number",
            f"There {'is' if n == 1 else 'are'} {n} {scene['target']} {noun}.",
        )
    if family == "color":
        counts = Counter(s["colour"] for s in scene["shapes"]).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            raise ValueError(f"colour scene without a unique majority colour: {counts}")
        colour = counts[0][0]
        return Solved(
            "Which colour do most of the shapes in the image have?", [], colour, "text", f"Most shapes are {colour}.",
        )
    if family == "chart":
        value = scene["values"][BAR_NAMES.index(scene["target"])]
        return Solved(
            f"What is the value of bar {scene['target']} in the chart?", [], str(value), "number",
            f"Bar {scene['target']} reaches {value}.",
        )
    if family == "arith":
        a, b = (n["value"] for n in scene["numbers"])
        if scene["op"] == "sum":
            question, work, value = "What is the sum of the two numbers in the image?", f"{a} + {b}", a + b
        elif scene["op"] == "difference":
            question = "What is the larger number minus the smaller number in the image?"
            work, value = f"{max(a, b)} - {min(a, b)}", max(a, b) - min(a, b)
        else:
            raise ValueError(f"unknown arith op {scene['op']!r}; expected 'sum' or 'difference'")
        return Solved(question, [], str(value), "number", f"{work} = {value}")
    if family == "tallest":
        name = BAR_NAMES[scene["values"].index(max(scene["values"]))]
        return Solved(
            "Which bar in the chart is the tallest?", [f"bar {b}" for b in BAR_NAMES], LETTERS[BAR_NAMES.index(name)],
            "choice", f"Bar {name} is the tallest.",
        )
    raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")


def solution_text(solved: Solved) -> str:
    """The worked solution the SFT warm-up imitates: ``<think>reasoning</think>\\boxed{answer}``."""
    return f"<think>{solved.reasoning}</think>\\boxed{{{solved.answer}}}"


# ------------------------------------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font (no font file needed) at ``px`` pixels."""
    return ImageFont.load_default(size=px)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: dict[str, Any], scale: float) -> None:
    x, y, half = shape["x"] * scale, shape["y"] * scale, shape["size"] * scale / 2
    fill = COLOURS[shape["colour"]]
    box = [x - half, y - half, x + half - 1, y + half - 1]
    if shape["kind"] == "circle":
        draw.ellipse(box, fill=fill)
    elif shape["kind"] == "square":
        draw.rectangle(box, fill=fill)
    elif shape["kind"] == "triangle":
        draw.polygon([(x, y - half), (x + half - 1, y + half - 1), (x - half, y + half - 1)], fill=fill)
    else:
        raise ValueError(f"unknown shape kind {shape['kind']!r}; expected one of {list(SHAPES)}")


def _draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, px: float) -> None:
    """``text`` centred on ``xy`` (the middle of its ink box)."""
    draw.text(xy, text, fill=INK, font=_font(max(6, round(px))), anchor="mm")


# chart layout at 128 px: the first column of cells holds the axis labels, bar i fills the middle of column
# i + 1, so each bar lies in one column of vision tokens
_CHART_BASELINE = 112
_CHART_UNIT = 12
_CHART_AXIS = 28
_CHART_BAR = 16


def _draw_chart(draw: ImageDraw.ImageDraw, scene: dict[str, Any], scale: float) -> None:
    s = scale
    cell = BASE_SIZE // GRID
    line = max(1, round(s))
    for tick in range(0, BAR_MAX + 1, 2):  # light gridlines with their labels
        y = (_CHART_BASELINE - tick * _CHART_UNIT) * s
        draw.line([(_CHART_AXIS * s, y), ((BASE_SIZE - 1) * s, y)], fill=(176, 176, 176), width=line)
        _draw_text(draw, ((_CHART_AXIS - 10) * s, y), str(tick), 10 * s)
    top = _CHART_BASELINE - BAR_MAX * _CHART_UNIT
    draw.line([(_CHART_AXIS * s, top * s), (_CHART_AXIS * s, _CHART_BASELINE * s)], fill=INK, width=line)
    for i, (name, value) in enumerate(zip(BAR_NAMES, scene["values"])):
        centre = (i + 1) * cell + cell // 2
        box = [
            (centre - _CHART_BAR // 2) * s, (_CHART_BASELINE - value * _CHART_UNIT) * s,
            (centre + _CHART_BAR // 2) * s - 1, _CHART_BASELINE * s - 1,
        ]
        draw.rectangle(box, fill=COLOURS["blue"])
        _draw_text(draw, (centre * s, (_CHART_BASELINE + 9) * s), name, 10 * s)
    draw.line([(_CHART_AXIS * s, _CHART_BASELINE * s), ((BASE_SIZE - 1) * s, _CHART_BASELINE * s)], fill=INK,
              width=line)


def render(scene: dict[str, Any], image_size: int = BASE_SIZE) -> Image.Image:
    """Draw a scene as an ``image_size``×``image_size`` RGB image (``image_size`` a multiple of 32)."""
    if not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32 (patch 16 × merge 2), got {image_size!r}")
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    scale = image_size / BASE_SIZE
    family = scene["family"]
    if family in ("count", "color"):
        for shape in scene["shapes"]:
            _draw_shape(draw, shape, scale)
    elif family in ("chart", "tallest"):
        _draw_chart(draw, scene, scale)
    elif family == "arith":
        for number in scene["numbers"]:
            _draw_text(draw, (number["x"] * scale, number["y"] * scale), str(number["value"]), DIGIT_PX * scale)
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")
    return image


# ---------------------------------------------------------------------------------------- generation


def _scene_key(scene: Any) -> Any:
    """The scene without its pixel layout: two scenes with the same key ask the same thing of the same content."""
    if isinstance(scene, dict):
        return {k: _scene_key(v) for k, v in scene.items() if k not in _PIXEL_FIELDS}
    if isinstance(scene, list):
        return [_scene_key(v) for v in scene]
    return scene


def scene_bucket(scene: dict[str, Any]) -> int:
    """A stable hash bucket in ``[0, 10)`` of the scene's content; the buckets decide the split."""
    key = json.dumps(_scene_key(scene), sort_keys=True).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % _N_BUCKETS


def _check_families(families: Sequence[str] | None) -> tuple[str, ...]:
    if families is None:
        return FAMILIES
    if isinstance(families, str):
        raise TypeError(f"families must be a sequence of family names, got the string {families!r}")
    chosen = tuple(families)
    unknown = [f for f in chosen if f not in FAMILIES]
    if not chosen or unknown:
        raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {list(chosen)}")
    return chosen


def _scenes(n: int, seed: int, families: tuple[str, ...], split: str | None) -> list[dict[str, Any]]:
    """Example ``i`` has family ``families[i % len]`` and its own generator seeded by ``(seed, i)``."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if split is not None and split not in SPLIT_BUCKETS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_BUCKETS)}")
    scenes = []
    for i in range(n):
        family = families[i % len(families)]
        rng = np.random.default_rng([seed, i])
        scene = _SAMPLERS[family](rng)
        while split is not None and scene_bucket(scene) not in SPLIT_BUCKETS[split]:
            scene = _SAMPLERS[family](rng)
        scenes.append(scene)
    return scenes


def _example(scene: dict[str, Any], example_id: str, image_size: int) -> dict[str, Any]:
    solved = solve(scene)
    example = {
        "id": example_id,
        "task": scene["family"],
        "image": render(scene, image_size),
        "prompt": make_prompt(solved.question, solved.choices or None),
        "answer": solved.answer,
        "choices": solved.choices,
        "answer_type": solved.answer_type,
        "tolerance": 0.0,
        "solution": solution_text(solved),
        "scene": json.dumps(scene, sort_keys=True),
    }
    validate_example(example, source=example_id)
    return example


def generate(
    n: int,
    *,
    seed: int,
    families: Sequence[str] | None = None,
    image_size: int = BASE_SIZE,
    split: str | None = None,
):
    """``n`` examples (families in turn) as a ``datasets.Dataset`` in roma's schema plus ``solution``/``scene``.

    Same ``(n, seed, families, image_size, split)`` → identical images and answers; the first ``m`` examples
    of a larger ``n`` are the ``m`` examples of the smaller one. ``split`` keeps only scenes of that split's
    hash buckets (see :func:`load_split`); ``None`` keeps every scene.
    """
    import datasets

    chosen = _check_families(families)
    prefix = split or "any"
    rows = [
        _example(scene, f"syn-{prefix}-{seed}-{i:06d}", image_size)
        for i, scene in enumerate(_scenes(n, seed, chosen, split))
    ]
    features = schema_features({"solution": datasets.Value("string"), "scene": datasets.Value("string")})
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)


def load_split(name: str, n: int, *, families: Sequence[str] | None = None, image_size: int = BASE_SIZE):
    """``n`` examples of the ``train`` / ``validation`` / ``test`` split; splits never share a scene."""
    if name not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {name!r}; expected one of {list(SPLIT_SEEDS)}")
    return generate(n, seed=SPLIT_SEEDS[name], families=families, image_size=image_size, split=name)


def tokenizer_corpus(*, seed: int = 0, n: int = 2000) -> list[str]:
    """Texts the tokenizer must handle well: prompt texts, worked solutions, and every answer word and number."""
    texts = []
    for scene in _scenes(n, seed, FAMILIES, None):
        solved = solve(scene)
        texts.append(prompt_text(solved.question, solved.choices or None))
        texts.append(solution_text(solved))
    texts += [" ".join(COLOURS), " ".join(SHAPES), " ".join(str(i) for i in range(101))]
    return texts
