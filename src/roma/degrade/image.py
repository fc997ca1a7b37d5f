"""Input conversion: whatever image a user passes becomes one ``H×W×3 uint8`` RGB array.

Accepted inputs:

- a PIL image of mode ``RGB``, ``RGBA``, ``RGBa``, ``RGBX``, ``L``, ``LA``, ``1``, ``P``, ``PA``,
  ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` or 16-bit grey (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``);
- a ``numpy.ndarray`` of dtype ``uint8`` shaped ``H×W`` (grey), ``H×W×1`` (grey), ``H×W×3`` (RGB)
  or ``H×W×4`` (RGBA).

Images with an alpha channel are composited over white, as ``transformers``' ``convert_to_rgb`` does
before a vision-language processor sees them, so a degraded view and the processor's own view of
the clean image share the same background. Grey images with more than 8 bits are scaled to 8 bits by
their range:

- 16-bit grey (``I;16*``) by the range of its type: ``round(v · 255 / 65535)``;
- 32-bit grey (``I`` integers, ``F`` floats), which have no fixed range, by the range of their data:
  ``round((v - min) · 255 / (max - min))``; a constant image becomes ``clip(round(v), 0, 255)``;
  ``NaN`` counts as ``min`` and ``±inf`` are clipped to the finite range.

Anything else — other dtypes, channel counts, other PIL modes, empty images, other types — raises a
``TypeError`` or ``ValueError`` that names what was given and what is accepted.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PIL_MODES: tuple[str, ...] = (
    "RGB", "RGBA", "RGBa", "RGBX", "L", "LA", "1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV",
    "I;16", "I;16L", "I;16B", "I;16N", "I", "F",
)  # fmt: skip
ARRAY_SHAPES: str = "H×W, H×W×1, H×W×3 or H×W×4"
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})


def to_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous ``(H, W, 3) uint8`` RGB array (the input itself when it already is one).

    The result may share memory with ``image`` and may be read-only: callers must not write to it.
    """
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise TypeError(
        f"expected a PIL.Image.Image or a numpy.ndarray, got {type(image).__module__}.{type(image).__qualname__}"
    )


def _from_pil(image: Image.Image) -> np.ndarray:
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"empty image: PIL image of size {width}×{height} (width×height); both must be ≥ 1")
    mode = image.mode
    if mode not in PIL_MODES:
        raise ValueError(
            f"unsupported PIL image mode {mode!r}; accepted modes: {', '.join(PIL_MODES)} "
            "(convert it yourself, e.g. image.convert('RGB'))"
        )
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(image))
    if mode.startswith("I;16"):
        grey16 = np.asarray(image).astype(np.uint32)  # (H, W) values 0..65535, byte order handled by PIL
        grey = ((grey16 * 255 + 32767) // 65535).astype(np.uint8)  # round(v · 255 / 65535)
        return np.repeat(grey[:, :, None], 3, axis=2)  # (H, W, 3)
    if mode in ("I", "F"):
        return np.repeat(_stretch(np.asarray(image))[:, :, None], 3, axis=2)  # (H, W, 3)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return _over_white(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise TypeError(
            f"expected an image array of dtype uint8 (values 0..255), got dtype {array.dtype}; "
            "scale float images in [0, 1] with (x * 255).round().astype(np.uint8)"
        )
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an image array shaped {ARRAY_SHAPES}, got {array.ndim} dimensions {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"empty image: array of shape {array.shape}; height and width must be ≥ 1")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    channels = array.shape[2]
    if channels == 3:
        return np.ascontiguousarray(array)
    if channels == 1:
        return np.repeat(array, 3, axis=2)  # (H, W, 1) -> (H, W, 3)
    if channels == 4:
        return _over_white(Image.fromarray(np.ascontiguousarray(array), mode="RGBA"))
    hint = ""
    if array.shape[0] in (1, 3, 4) and array.shape[2] > 4:
        hint = "; it looks channel-first (C×H×W): pass array.transpose(1, 2, 0)"
    raise ValueError(
        f"expected an image array shaped {ARRAY_SHAPES} (1, 3 or 4 channels), got shape {array.shape} "
        f"with {channels} channels{hint}"
    )


def _over_white(rgba: Image.Image) -> np.ndarray:
    """An RGBA image composited over opaque white, as ``(H, W, 3) uint8``."""
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


def _stretch(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` 32-bit grey (int or float) scaled by its data range to ``(H, W) uint8``."""
    data = values.astype(np.float64)  # (H, W)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(data.shape, np.uint8)
    low, high = float(finite.min()), float(finite.max())
    data = np.nan_to_num(data, nan=low, posinf=high, neginf=low)
    if high == low:
        return np.full(data.shape, np.clip(round(low), 0, 255), np.uint8)
    return np.round((data - low) * (255.0 / (high - low))).astype(np.uint8)
