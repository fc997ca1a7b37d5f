"""The nine degradations, one function each: ``op(image, **params) -> image``.

Every function takes a C-contiguous ``(H, W, 3) uint8`` RGB array (see :func:`roma.degrade.to_rgb`)
and keyword parameters as drawn by :func:`roma.degrade.sample_params`, and returns a new
``(H, W, 3) uint8`` array of the same size; the input is never modified. All of them are
deterministic: noise fields come from ``np.random.default_rng(noise_seed)``.

Spatial parameters (``*_at_448``) are pixels at a 448-px short side and are scaled by
``r = min(H, W) / 448`` here.

Reference behaviour (checked in tests/test_degrade.py):
- ``jpeg`` and ``pixelate`` are bit-identical to ``imagecorruptions`` at the same parameter
  (Pillow encode/decode; Pillow BOX down, NEAREST up, with the same output sizes).
- ``motion_blur`` is ImageNet-C's shift-and-add of a half-Gaussian line kernel (within ±1 grey level).
- ``gaussian_blur`` matches ``skimage.filters.gaussian`` (truncate 4, edge replication) within ±1.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from statistics import NormalDist

import cv2
import numpy as np
from PIL import Image

from roma.degrade.params import REFERENCE_SHORT_SIDE

_QUANTILE_BITS = 16  # noise is drawn by inverse-CDF lookup on a 2**16-point grid


def gaussian_noise(image: np.ndarray, *, sigma: float, noise_seed: int) -> np.ndarray:
    """``clip(x + N(0, σ))`` per channel value, on the [0, 1] scale (ImageNet-C ``gaussian_noise``).

    Because ``x`` is an integer grey level, ``round(x + 255·σ·z) = x + round(255·σ·z)``: the noise is
    rounded to grey levels first and added with saturation, which is exact. ``z`` is a standard normal
    drawn by inverse-CDF lookup of 16-bit uniforms (see :func:`_standard_normal_quantiles`).
    """
    noise_levels = np.rint(_standard_normal_quantiles() * (255.0 * sigma)).astype(np.int16)  # (65536,)
    noise = np.take(noise_levels, _uniform16(noise_seed, image.shape))  # (H, W, 3) int16
    return cv2.add(image, noise, dtype=cv2.CV_8U)  # saturating x + noise


def speckle_noise(image: np.ndarray, *, sigma: float, noise_seed: int) -> np.ndarray:
    """``clip(x + x·N(0, σ))`` per channel value (ImageNet-C ``speckle_noise``), rounded to grey levels."""
    factors = (1.0 + _standard_normal_quantiles() * sigma).astype(np.float32)  # (65536,) 1 + σ·z
    factor = np.take(factors, _uniform16(noise_seed, image.shape))  # (H, W, 3) float32
    return cv2.multiply(image, factor, dtype=cv2.CV_8U)  # saturating round(x · (1 + σ·z))


def salt_pepper(image: np.ndarray, *, amount: float, noise_seed: int) -> np.ndarray:
    """Replace a fraction ``amount`` of the channel values, half by 255 (salt) and half by 0 (pepper).

    Like ``skimage.util.random_noise(mode="s&p")`` used by ImageNet-C's ``impulse_noise``: each of the
    H·W·3 values is replaced independently, so a pixel may get salt in one channel only. Each value
    draws a 16-bit uniform ``u``: salt when ``u < t``, pepper when ``u ≥ 65536 - t``, with
    ``t = round(amount · 32768)`` (so ``amount = 1`` replaces everything).
    """
    threshold = round(amount * 2 ** (_QUANTILE_BITS - 1))
    height, width = image.shape[:2]
    u = _uniform16(noise_seed, image.shape).reshape(height, width * 3)  # (H, W·3) uint16
    salt = cv2.compare(u, threshold, cv2.CMP_LT)  # (H, W·3) 255 where salted
    keep = cv2.compare(u, 2**_QUANTILE_BITS - threshold, cv2.CMP_LT)  # 0 where peppered
    out = cv2.bitwise_or(image.reshape(height, width * 3), salt)
    cv2.bitwise_and(out, keep, dst=out)
    return out.reshape(height, width, 3)


def gaussian_blur(image: np.ndarray, *, sigma_at_448: float) -> np.ndarray:
    """Gaussian blur with σ = ``sigma_at_448 · r`` px, kernel radius ``int(4σ + 0.5)``, edges replicated.

    The kernel is skimage's (``skimage.filters.gaussian``: truncate 4.0, ``mode="nearest"``), applied
    separably in float and rounded once.
    """
    sigma = sigma_at_448 * _scale(image)
    radius = int(4.0 * sigma + 0.5)
    if radius == 0:  # the kernel is a single tap: nothing to blur
        return image.copy()
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)  # (2·radius + 1,)
    return cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REPLICATE)


def motion_blur(image: np.ndarray, *, radius_at_448: float, sigma_at_448: float, angle: float) -> np.ndarray:
    """ImageNet-C's motion blur: a shift-and-add of ``2·radius + 1`` copies along ``angle`` (degrees).

    Copy ``i`` is shifted by ``(ceil(i·sin a − ½), ceil(i·cos a − ½))`` pixels (row, column) and weighted
    by the half-Gaussian ``exp(−i² / 2σ²)``, normalised to sum 1, with ``radius = round(radius_at_448·r)``
    and ``σ = sigma_at_448·r``. Borders are replicated (ImageNet-C's ``shift``). Equal shifts are merged,
    then the copies are accumulated in float32 from one replicate-padded frame and rounded once — about
    twice as fast as ``cv2.filter2D`` with the equivalent dense kernel, which it runs through a DFT.
    """
    scale = _scale(image)
    offsets, weights = _motion_kernel(round(radius_at_448 * scale), sigma_at_448 * scale, float(angle))
    if len(weights) == 1:  # radius 0: the only copy is the image itself
        return image.copy()
    height, width = image.shape[:2]
    pad = int(np.abs(offsets).max())
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)  # (H+2p, W+2p, 3)
    padded = padded.reshape(height + 2 * pad, (width + 2 * pad) * 3)  # 2-D views keep OpenCV happy
    acc = np.zeros((height, width * 3), dtype=np.float32)  # (H, W·3)
    # accumulateWeighted computes acc ← (1 − a)·acc + a·src; with a_i = w_i / (w_0 + … + w_i) the
    # running result after copy i is Σ_{j≤i} w_j·src_j / Σ_{j≤i} w_j, i.e. the normalised sum at the end.
    cumulative = np.cumsum(weights)
    for (dy, dx), w, total in zip(offsets, weights, cumulative):
        row, col = pad + int(dy), 3 * (pad + int(dx))
        cv2.accumulateWeighted(padded[row : row + height, col : col + 3 * width], acc, float(w / total))
    return cv2.convertScaleAbs(acc).reshape(height, width, 3)  # round and saturate to uint8


@functools.lru_cache(maxsize=256)
def _motion_kernel(radius: int, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets (n, 2) int (dy, dx), weights (n,) float64)`` of ImageNet-C's line kernel.

    Copies with equal shifts are merged and zero weights dropped; the order stays that of ``i``, so
    the first copy (``i = 0``, no shift) has the largest weight.
    """
    a = math.radians(angle)
    merged: dict[tuple[int, int], float] = {}
    for i in range(2 * radius + 1):
        weight = math.exp(-(i**2) / (2.0 * sigma**2))
        if weight > 0.0:
            shift = (math.ceil(i * math.sin(a) - 0.5), math.ceil(i * math.cos(a) - 0.5))
            merged[shift] = merged.get(shift, 0.0) + weight
    offsets = np.array(list(merged), dtype=np.int64).reshape(-1, 2)  # (n, 2)
    weights = np.array(list(merged.values()), dtype=np.float64)  # (n,)
    weights /= weights.sum()
    offsets.setflags(write=False)
    weights.setflags(write=False)
    return offsets, weights


def jpeg(image: np.ndarray, *, quality: int) -> np.ndarray:
    """Encode with Pillow at ``quality`` (its default 4:2:0 chroma subsampling) and decode back."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    with Image.open(buffer) as decoded:  # a 3-component JPEG decodes to mode RGB
        return np.array(decoded)


def downscale(image: np.ndarray, *, factor: float) -> np.ndarray:
    """Resize to ``max(1, int(side·factor))`` with area averaging, then back up bilinearly.

    Area averaging is the anti-aliased way a lower-resolution capture would record the scene;
    bilinear (rather than bicubic) upsampling does not ring or overshoot.
    """
    height, width = image.shape[:2]
    small = cv2.resize(image, _reduced_size(width, height, factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def pixelate(image: np.ndarray, *, factor: float) -> np.ndarray:
    """ImageNet-C's pixelate: Pillow BOX down to ``max(1, int(side·factor))``, then NEAREST back up."""
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize(_reduced_size(width, height, factor), Image.Resampling.BOX)
    return np.array(small.resize((width, height), Image.Resampling.NEAREST))


def posterize(image: np.ndarray, *, bits: int) -> np.ndarray:
    """Keep the ``bits`` most significant bits of every channel value (as ``PIL.ImageOps.posterize``)."""
    return np.bitwise_and(image, np.uint8((0xFF << (8 - int(bits))) & 0xFF))


OPS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "jpeg": jpeg,
    "downscale": downscale,
    "motion_blur": motion_blur,
    "salt_pepper": salt_pepper,
    "speckle_noise": speckle_noise,
    "posterize": posterize,
    "pixelate": pixelate,
}


def _scale(image: np.ndarray) -> float:
    """``r = min(H, W) / 448``: how spatial parameters given at a 448-px short side grow with the image."""
    return min(image.shape[:2]) / REFERENCE_SHORT_SIDE


def _reduced_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """``(w, h)`` after scaling by ``factor``, truncated like ImageNet-C and at least one pixel."""
    return max(1, int(width * factor)), max(1, int(height * factor))


def _uniform16(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform ``uint16`` values of ``shape`` from ``np.random.default_rng(seed)``, platform-independent.

    The raw 64-bit words of the generator are split into four 16-bit values each (little-endian, so
    big-endian machines get the same numbers); this is ~1.7× faster than ``rng.integers(..., uint16)``.
    """
    count = math.prod(shape)
    words = np.random.default_rng(seed).bit_generator.random_raw((count + 3) // 4)  # (⌈n/4⌉,) uint64
    return words.astype("<u8", copy=False).view("<u2")[:count].reshape(shape)


@functools.cache
def _standard_normal_quantiles() -> np.ndarray:
    """``Φ⁻¹((k + ½) / 65536)`` for ``k = 0 … 65535``: a 16-bit uniform maps to a standard normal.

    Each grid point carries probability 2⁻¹⁶, so after rounding to grey levels every outcome's
    probability is within 2⁻¹⁶ of the exact normal's; the tails are cut at ±4.3σ (probability 1.5e-5).
    """
    n = 2**_QUANTILE_BITS
    half = [NormalDist().inv_cdf((k + 0.5) / n) for k in range(n // 2, n)]  # z ≥ 0; Φ⁻¹ is odd
    upper = np.array(half, dtype=np.float64)
    table = np.concatenate([-upper[::-1], upper])  # (65536,) increasing
    table.setflags(write=False)
    return table
