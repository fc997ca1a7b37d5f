"""Images as users have them → the RGB images every consumer shows the model: one decode/convert path.

The rollout (TRL's clean processing), the ROMA views, ``roma eval``, ``roma degrade`` and the SFT rows
all take their images through :func:`prepare_image`, so the clean pass and the degraded views look at
the same picture:

1. **Decode** (:func:`open_image`): a PIL image, encoded bytes, a ``{"bytes", "path"}`` cell of
   ``datasets`` or a file path; the pixels are loaded once.
2. **Orientation**: the EXIF ``Orientation`` tag is applied (``PIL.ImageOps.exif_transpose``) and removed,
   so applying it again changes nothing (``datasets`` applies it too when it decodes an ``Image`` column).
3. **Colour**: every PIL mode becomes 8-bit RGB by one rule, :func:`roma.degrade.to_rgb`'s: alpha (``RGBA``,
   ``LA``, ``PA``, palettes with transparency) over white, ``CMYK``/``YCbCr``/``LAB``/``HSV``/``P``/``L``/``1``
   by Pillow's conversion, 16-bit grey (``I;16*``) scaled by its type's range (``v · 255 / 65535``),
   32-bit grey (``I``, ``F``) by its data range. An ``RGB`` image comes back as the very same object.
4. **Cap** (:func:`cap_pixels`): an image of more than ``max_pixels`` pixels (the processor's own
   ``max_pixels``, :func:`processor_max_pixels`) is resized (Lanczos after a box reduction, Pillow's
   ``reducing_gap=3``; aspect ratio kept) to at most ``max_pixels`` pixels before anything degrades it:
   the processor would shrink it to that budget anyway, and degrading a 10000×10000 image costs minutes
   and gigabytes for pixels the model never sees.

Images the processor refuses (Qwen-VL: aspect ratio above :data:`MAX_ASPECT_RATIO`) are found from their
size alone by :func:`processor_problem`; :func:`fit_for_processor` pads them with white instead
(``image_fit="pad"``). A prompt may carry several images: :func:`row_images` reads a row's ``images``
list (TRL's and MMRL30k's column) or its single ``image``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Literal, get_args

from PIL import Image, ImageOps

ImageFit = Literal["reject", "pad"]
IMAGE_FITS: tuple[str, ...] = get_args(ImageFit)
"""What to do with an image the processor would refuse: ``reject`` (training refuses the dataset up front
naming the row; evaluation skips and lists the row) or ``pad`` (pad it with white until it is accepted)."""

MAX_ASPECT_RATIO = 200
"""Qwen-VL image processors refuse images whose long side exceeds 200 times the short side (``smart_resize``)."""

_ORIENTATION = 0x0112  # EXIF tag


class ImageError(ValueError):
    """An image that cannot be decoded or converted; the message says why."""


def open_image(value: Any) -> Image.Image:
    """A loaded PIL image from a PIL image, bytes, a ``{"bytes", "path"}`` dict or a path; ``ImageError`` else."""
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, dict):
            raw = value.get("bytes")
            if raw is None and value.get("path") and os.path.exists(value["path"]):
                raw = Path(value["path"]).read_bytes()
            if raw is None:
                raise ImageError(f"no image bytes and no readable path in {sorted(value)}")
            image = Image.open(io.BytesIO(raw))
        elif isinstance(value, (bytes, bytearray)):
            image = Image.open(io.BytesIO(bytes(value)))
        elif isinstance(value, (str, Path)) and os.path.exists(value):
            image = Image.open(value)
        elif value is None:
            raise ImageError("no image (None)")
        else:
            raise ImageError(f"cannot read an image from a {type(value).__name__}: {str(value)[:80]!r}")
        image.load()
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError(f"undecodable image: {error}") from None
    if image.width == 0 or image.height == 0:
        raise ImageError(f"empty image of size {image.width}×{image.height}")
    return image


def upright(image: Image.Image) -> Image.Image:
    """``image`` with its EXIF orientation applied (the image itself when it has none, or orientation 1)."""
    if image.getexif().get(_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def to_rgb_image(image: Image.Image) -> Image.Image:
    """``image`` as an ``RGB`` PIL image by :func:`roma.degrade.to_rgb`'s rule; an RGB image is returned as is."""
    from roma.degrade import to_rgb

    if image.mode == "RGB":
        return image
    try:
        return Image.fromarray(to_rgb(image))
    except (TypeError, ValueError) as error:
        raise ImageError(str(error)) from None


def cap_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """``image`` resized (Lanczos, aspect kept) to at most ``max_pixels`` pixels; itself when within it."""
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (image.width * image.height))
    size = (max(1, math.floor(image.width * scale)), max(1, math.floor(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)  # box-reduce first: fast, same look


def prepare_image(value: Any, *, max_pixels: int | None = None) -> Image.Image:
    """The RGB PIL image roma shows a model for ``value``: decoded, upright, RGB, capped (see the module).

    ``ImageError`` (a ``ValueError``) names why an image cannot be used.
    """
    return cap_pixels(to_rgb_image(upright(open_image(value))), max_pixels)


def row_images(example: dict[str, Any]) -> list[Any]:
    """The images of a dataset row, in prompt order: its ``images`` list, else ``[image]``; ``[]`` for none."""
    if "images" in example:
        return [image for image in (example["images"] or [])]
    image = example.get("image")
    return [] if image is None else [image]


def with_images(example: dict[str, Any], images: list[Any]) -> dict[str, Any]:
    """A copy of ``example`` holding ``images`` in the column it had (``images``, or ``image`` for one)."""
    if "images" in example:
        return {**example, "images": list(images)}
    if len(images) != 1:
        raise ValueError(f"a row with an 'image' column holds one image, got {len(images)}")
    return {**example, "image": images[0]}


def processor_max_pixels(image_processor: Any) -> int | None:
    """The pixel budget of an image processor: its ``max_pixels``, or Qwen-VL's ``size["longest_edge"]``
    (which counts pixels, not a side); ``None`` when it has none."""
    if image_processor is None:
        return None
    size = getattr(image_processor, "size", None)

    def read(name: str) -> Any:
        return size.get(name) if isinstance(size, dict) else getattr(size, name, None)

    value = getattr(image_processor, "max_pixels", None) or read("max_pixels")
    if value is None and hasattr(image_processor, "merge_size"):
        value = read("longest_edge")
    return int(value) if value else None


def processor_problem(width: int, height: int, image_processor: Any) -> str | None:
    """Why ``image_processor`` would refuse a ``width×height`` image, or ``None``; from the size alone (the
    processor's ``get_number_of_image_patches``, as vLLM uses it). Processors without it are not checked."""
    count = getattr(image_processor, "get_number_of_image_patches", None)
    if count is None:
        return None
    try:
        count(height, width)
    except ValueError as error:
        return f"the image processor refuses a {width}×{height} image: {error}"
    return None


def fit_for_processor(image: Image.Image) -> Image.Image:
    """``image`` padded with white (centred) on its short side until its aspect ratio is at most
    :data:`MAX_ASPECT_RATIO`; the image itself when it already is."""
    width, height = image.size
    if max(width, height) <= MAX_ASPECT_RATIO * min(width, height):
        return image
    size = (width, math.ceil(width / MAX_ASPECT_RATIO)) if width > height else (math.ceil(height / MAX_ASPECT_RATIO), height)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def check_image_fit(image_fit: str) -> str:
    """``image_fit`` if it is one of :data:`IMAGE_FITS`, else ``ValueError``."""
    if image_fit not in IMAGE_FITS:
        raise ValueError(f"image_fit must be one of {list(IMAGE_FITS)}, got {image_fit!r}")
    return image_fit


def prepare_row_images(
    example: dict[str, Any], image_processor: Any = None, *, image_fit: str = "reject"
) -> list[Image.Image]:
    """Every image of ``example`` through :func:`prepare_image` (capped at the processor's budget) and, with
    ``image_fit="pad"``, then :func:`fit_for_processor`. ``ImageError`` names the image (``image k of n``) that
    cannot be decoded or converted, has no image at all, or that the processor would refuse."""
    values = row_images(example)
    if not values:
        raise ImageError("the row has no image")
    max_pixels = processor_max_pixels(image_processor)
    out = []
    for k, value in enumerate(values):
        where = f"image {k + 1} of {len(values)}: " if len(values) > 1 else ""
        try:
            image = to_rgb_image(upright(open_image(value)))
        except ImageError as error:
            raise ImageError(f"{where}{error}") from None
        problem = processor_problem(image.width, image.height, image_processor)  # the size as the user has it
        if problem is None or image_fit == "pad":
            image = cap_pixels(image, max_pixels)
            image = fit_for_processor(image) if image_fit == "pad" else image
            problem = processor_problem(image.width, image.height, image_processor)  # as the processor gets it
        if problem is not None:
            raise ImageError(f"{where}{problem} (image_fit='pad' pads it instead)")
        out.append(image)
    return out


def dataset_problems(dataset: Any, image_processor: Any = None, *, image_fit: str = "reject") -> list[tuple[str, str]]:
    """``(row id, reason)`` for every row of ``dataset`` that training cannot use, checked before the first
    step from the image headers (no pixel is decoded): a repeated ``id`` (views are keyed by it), no image,
    an image that cannot be opened or whose PIL mode has no RGB rule, and — with ``image_fit="reject"`` — an
    image the processor would refuse. Rows without an ``id`` are named ``row <index>``. An
    ``IterableDataset`` is not scanned (its rows are checked when they are used)."""
    import datasets as hf_datasets

    from roma.degrade.image import PIL_MODES

    if isinstance(dataset, hf_datasets.IterableDataset):
        return []
    if isinstance(dataset, hf_datasets.Dataset):
        for column in ("image", "images"):
            if column in dataset.column_names:
                dataset = undecoded_column(dataset, column)
        rows: Any = dataset.iter(batch_size=256)
        rows = (dict(zip(batch, values)) for batch in rows for values in zip(*batch.values()))
    else:
        rows = iter(dataset)
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        name = str(row["id"]) if "id" in row else f"row {index}"
        if "id" in row:
            if name in seen:
                problems.append((name, f"repeats the id of row {seen[name]} (views are keyed by the id)"))
            seen.setdefault(name, index)
        values = row_images(row)
        if not values:
            problems.append((name, "has no image"))
        for k, value in enumerate(values):
            where = f"image {k + 1} of {len(values)}: " if len(values) > 1 else ""
            try:
                width, height, mode = _header(value)
            except ImageError as error:
                problems.append((name, f"{where}{error}"))
                continue
            if mode not in PIL_MODES:
                problems.append((name, f"{where}PIL mode {mode!r} has no RGB rule (accepted: {', '.join(PIL_MODES)})"))
            if image_fit == "reject":
                problem = processor_problem(width, height, image_processor)
                if problem is not None:
                    problems.append((name, f"{where}{problem}"))
    return problems


def _header(value: Any) -> tuple[int, int, str]:
    """``(width, height, mode)`` of an image value, read from its header only."""
    if isinstance(value, Image.Image):
        return value.width, value.height, value.mode
    try:
        if isinstance(value, dict) and value.get("bytes") is not None:
            source: Any = io.BytesIO(value["bytes"])
        elif isinstance(value, dict) and value.get("path") and os.path.exists(value["path"]):
            source = value["path"]
        elif isinstance(value, (bytes, bytearray)):
            source = io.BytesIO(bytes(value))
        elif isinstance(value, (str, Path)) and os.path.exists(value):
            source = value
        else:
            raise ImageError(f"no readable image in a {type(value).__name__}")
        with Image.open(source) as image:
            size, mode = image.size, image.mode
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError(f"undecodable image: {error}") from None
    if size[0] == 0 or size[1] == 0:
        raise ImageError(f"empty image of size {size[0]}×{size[1]}")
    return size[0], size[1], mode


def undecoded_column(dataset: Any, column: str) -> Any:
    """``dataset`` with an ``Image`` (or list-of-``Image``) column cast to ``decode=False``."""
    import datasets as hf_datasets

    feature = dataset.features[column]
    inner = getattr(feature, "feature", None)
    if isinstance(feature, hf_datasets.Image):
        cast: Any = hf_datasets.Image(decode=False)
    elif isinstance(inner, hf_datasets.Image):
        cast = type(feature)(hf_datasets.Image(decode=False))
    else:
        return dataset
    enabled = hf_datasets.is_progress_bar_enabled()
    hf_datasets.disable_progress_bars()
    try:
        return dataset.cast_column(column, cast)
    finally:
        if enabled:
            hf_datasets.enable_progress_bars()
