"""The synthetic suite: determinism, answers recomputed from the scene *and* from the pixels, splits, balance."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from roma.data import synthetic
from roma.data.schema import COLUMNS, LETTERS, validate_example
from roma.data.synthetic import FAMILIES, SPLIT_SEEDS, generate, load_split, scene_bucket, tokenizer_corpus

PALETTE = {  # the colour names a question may use, and the RGB they are drawn with
    "red": (220, 40, 40), "orange": (240, 140, 30), "yellow": (225, 200, 30),
    "green": (40, 160, 70), "blue": (45, 85, 225), "purple": (150, 70, 190),
}


@pytest.fixture(scope="module")
def mixed():
    """300 examples, 60 per family (families alternate)."""
    return generate(300, seed=11)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)  # (H, W, 3)


# ------------------------------------------------------------------- reference answers from the scene


def reference_answer(scene: dict) -> str:
    """An independent re-derivation of the gold answer from the scene description."""
    family = scene["family"]
    if family == "count":
        return str(len([s for s in scene["shapes"] if s["colour"] == scene["target"]]))
    if family == "color":  # the colour of more shapes than any other colour
        colours = [s["colour"] for s in scene["shapes"]]
        best = max(colours, key=colours.count)
        assert sum(colours.count(c) == colours.count(best) for c in set(colours)) == 1  # a unique majority
        return best
    if family == "chart":
        return str(dict(zip("ABC", scene["values"]))[scene["target"]])
    if family == "arith":
        a, b = (n["value"] for n in scene["numbers"])
        return str(a + b if scene["op"] == "sum" else abs(a - b))
    if family == "tallest":  # options: bar A, bar B, bar C, in this order
        return "ABC"[scene["values"].index(max(scene["values"]))]
    raise AssertionError(family)


# -------------------------------------------------------------------- answers read off the pixels


def colour_mask(image, colour: str) -> np.ndarray:
    return (pixels(image) == PALETTE[colour]).all(axis=-1)  # (H, W); shapes are drawn without anti-aliasing


def cells_holding(mask: np.ndarray, grid: int = 4) -> list[tuple[int, int]]:
    step = mask.shape[0] // grid
    return [(r, c) for r in range(grid) for c in range(grid) if mask[r * step:(r + 1) * step, c * step:(c + 1) * step].any()]


def bar_heights(image) -> list[int]:
    """The values of the three bars, read off the blue columns: heights in multiples of 12 px (at 128 px)."""
    columns = colour_mask(image, "blue").sum(axis=0)  # (W,) bar height in px, 0 between bars
    runs = [int(h) for h, _ in itertools.groupby(columns) if h > 0]
    assert len(runs) == 3, runs  # three bars, each of constant height
    unit = 12 * image.size[0] // 128
    assert all(h % unit == 0 for h in runs), runs
    return [h // unit for h in runs]


INK_THRESHOLD = (synthetic.INK[0] + synthetic.BACKGROUND[0]) // 2  # halfway between ink and background grey


def digit_templates(px: int) -> dict[int, np.ndarray]:
    font = ImageFont.load_default(size=px)
    templates = {}
    for d in range(1, 10):
        canvas = Image.new("L", (4 * px, 4 * px), synthetic.BACKGROUND[0])
        ImageDraw.Draw(canvas).text((2 * px, 2 * px), str(d), fill=synthetic.INK[0], font=font, anchor="mm")
        ink = np.asarray(canvas) < INK_THRESHOLD
        ys, xs = np.nonzero(ink)
        templates[d] = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return templates


def read_digits(image, templates) -> list[int]:
    """The digits of an arith image in reading order: one per inked cell, matched exactly against templates."""
    ink = pixels(image).mean(axis=-1) < INK_THRESHOLD
    step = ink.shape[0] // 4
    digits = []
    for r, c in cells_holding(ink):
        cell = ink[r * step:(r + 1) * step, c * step:(c + 1) * step]
        ys, xs = np.nonzero(cell)
        crop = cell[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        matches = [d for d, t in templates.items() if t.shape == crop.shape and (t == crop).all()]
        assert len(matches) == 1, f"cell {(r, c)} matches digits {matches}"
        digits.append(matches[0])
    return digits


def answer_from_pixels(row: dict, templates) -> str:
    scene, image = json.loads(row["scene"]), row["image"]
    family = row["task"]
    if family == "count":
        return str(len(cells_holding(colour_mask(image, scene["target"]))))
    if family == "color":
        return max(PALETTE, key=lambda c: len(cells_holding(colour_mask(image, c))))
    if family in ("chart", "tallest"):
        heights = bar_heights(image)
        if family == "tallest":
            return LETTERS[heights.index(max(heights))]
        return str(heights["ABC".index(scene["target"])])
    if family == "arith":
        a, b = read_digits(image, templates)
        return str(a + b) if "sum" in row["prompt"][0]["content"][1]["text"] else str(abs(a - b))
    raise AssertionError(family)


# ---------------------------------------------------------------------------------------------- tests


def test_same_seed_same_examples_and_different_seed_different():
    a, b, c = generate(10, seed=5), generate(10, seed=5), generate(10, seed=6)
    for x, y in zip(a, b):
        assert np.array_equal(pixels(x["image"]), pixels(y["image"]))
        assert (x["id"], x["answer"], x["scene"], x["prompt"]) == (y["id"], y["answer"], y["scene"], y["prompt"])
    assert [x["scene"] for x in a] != [x["scene"] for x in c]
    assert sum(not np.array_equal(pixels(x["image"]), pixels(z["image"])) for x, z in zip(a, c)) == 10


def test_a_longer_run_extends_a_shorter_one():
    short, long = generate(7, seed=2), generate(12, seed=2)
    assert short["scene"] == long["scene"][:7] and short["id"] == long["id"][:7]


def test_families_alternate_and_every_row_validates(mixed):
    assert mixed["task"][:10] == list(FAMILIES) * 2
    assert set(COLUMNS) | {"solution", "scene"} == set(mixed.column_names)
    for row in mixed:
        validate_example(row, source=row["id"])
        assert re.fullmatch(r"<think>[^<>]+</think>\\boxed\{" + re.escape(row["answer"]) + r"\}", row["solution"])
        assert row["prompt"][0]["content"][0]["type"] == "image"
        assert row["tolerance"] == 0.0
    assert len(set(mixed["id"])) == len(mixed)


def test_answer_recomputed_from_scene_for_every_family(mixed):
    for row in mixed:
        assert row["answer"] == reference_answer(json.loads(row["scene"])), row["id"]


@pytest.mark.parametrize("image_size", [128, 96])
def test_the_image_shows_the_scene_answer(image_size):
    """Read every answer back off the pixels (colours, fill ratios, bar heights, digit glyphs)."""
    rows = generate(150, seed=3, image_size=image_size)
    templates = digit_templates(synthetic.DIGIT_PX * image_size // 128)
    for row in rows:
        assert answer_from_pixels(row, templates) == row["answer"], row["id"]


def test_answer_types_per_family(mixed):
    kinds = {(t, a) for t, a in zip(mixed["task"], mixed["answer_type"])}
    assert kinds == {("count", "number"), ("color", "text"), ("chart", "number"), ("tallest", "choice"),
                     ("arith", "number")}
    tallest = mixed.filter(lambda r: r["task"] == "tallest")
    assert all(c == ["bar A", "bar B", "bar C"] for c in tallest["choices"])
    assert all(c == [] for t, c in zip(mixed["task"], mixed["choices"]) if t != "tallest")


def test_answers_are_balanced_within_each_family():
    rows = generate(500, seed=7)  # 100 per family
    for family in FAMILIES:
        answers = Counter(a for t, a in zip(rows["task"], rows["answer"]) if t == family)
        top, n = answers.most_common(1)[0][1], sum(answers.values())
        assert top / n <= 0.5, (family, answers)
        assert len(answers) >= 3, (family, answers)  # no family collapses onto a couple of answers
    letters = Counter(a for t, a in zip(rows["task"], rows["answer"]) if t == "tallest")
    assert set(letters) == set("ABC")


def test_splits_share_no_example():
    splits = {name: load_split(name, 150) for name in SPLIT_SEEDS}
    ids = {name: set(ds["id"]) for name, ds in splits.items()}
    scenes = {name: set(ds["scene"]) for name, ds in splits.items()}

    def content(scene_json: str) -> str:  # the scene without pixel offsets and sizes
        scene = json.loads(scene_json)
        for shape in scene.get("shapes", []) + scene.get("numbers", []):
            for key in ("x", "y", "size"):
                shape.pop(key)
        return json.dumps(scene, sort_keys=True)

    contents = {name: {content(s) for s in ds["scene"]} for name, ds in splits.items()}
    names = list(SPLIT_SEEDS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not ids[a] & ids[b] and not scenes[a] & scenes[b] and not contents[a] & contents[b], (a, b)
    for name, ds in splits.items():
        assert {scene_bucket(json.loads(s)) for s in ds["scene"]} <= set(synthetic.SPLIT_BUCKETS[name])


@pytest.mark.parametrize("image_size", [64, 128, 160])
def test_images_have_exactly_the_requested_size(image_size):
    rows = generate(10, seed=0, image_size=image_size)
    assert {(im.size, im.mode) for im in rows["image"]} == {((image_size, image_size), "RGB")}


def test_bad_arguments_are_refused_with_the_accepted_values():
    with pytest.raises(ValueError, match=r"image_size must be a positive multiple of 32 .* got 100"):
        generate(2, seed=0, image_size=100)
    with pytest.raises(ValueError, match=r"families must be a non-empty subset of \['count', 'color'.*got \['cnt'\]"):
        generate(2, seed=0, families=["cnt"])
    with pytest.raises(TypeError, match="families must be a sequence of family names, got the string 'count'"):
        generate(2, seed=0, families="count")
    with pytest.raises(ValueError, match=r"unknown split 'dev'; expected one of \['train', 'validation', 'test'\]"):
        load_split("dev", 2)
    with pytest.raises(ValueError, match="n must be an int >= 0, got -1"):
        generate(-1, seed=0)


def test_tokenizer_corpus_holds_prompts_solutions_and_vocabulary():
    corpus = tokenizer_corpus(seed=0, n=50)
    assert corpus == tokenizer_corpus(seed=0, n=50)
    rows = generate(50, seed=0)
    text = "\n".join(corpus)
    assert all(row["solution"] in corpus for row in rows)
    assert all(row["prompt"][0]["content"][1]["text"] in corpus for row in rows)
    assert all(word in text for word in [*PALETTE, "circle", "square", "triangle", "Options:", "\\boxed{"])


def digit_boxes(row) -> np.ndarray:
    """(H, W) mask of the ink bounding box of each digit of an arith example (strokes and the grey between)."""
    ink = pixels(row["image"]).mean(axis=-1) < INK_THRESHOLD
    step = ink.shape[0] // 4
    boxes = np.zeros_like(ink)
    for number in json.loads(row["scene"])["numbers"]:
        r, c = number["cell"]
        ys, xs = np.nonzero(ink[r * step:(r + 1) * step, c * step:(c + 1) * step])
        boxes[r * step + ys.min():r * step + ys.max() + 1, c * step + xs.min():c * step + xs.max() + 1] = True
    return boxes


def test_level3_degradations_change_the_digits():
    """At Level 3 every degradation type alters the digits (the fine detail of arith) by > 20 grey levels.

    Measured on the digits' bounding boxes, not the strokes alone: speckle noise is multiplicative and
    leaves the near-black strokes almost unchanged, but it buries them in the noise of the grey around them.
    """
    degrade = pytest.importorskip("roma.degrade")
    for row in generate(3, seed=0, families=["arith"]):
        clean, boxes = pixels(row["image"]), digit_boxes(row)
        for name in (*degrade.SEEN, *degrade.UNSEEN):
            view = np.asarray(degrade.degrade(row["image"], name, 3, seed=0), dtype=np.int16)
            assert view.shape == clean.shape
            change = np.abs(view - clean).mean(axis=-1)[boxes].mean()  # mean grey-level change on the digits
            assert change > 20, (row["id"], name, change)
