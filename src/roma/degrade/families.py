"""The other degradation families, one function each: ImageNet-C's remaining corruptions, geometric
and resampling transforms, capture effects and document degradations.

The contract is that of :mod:`roma.degrade.ops`: a C-contiguous ``(H, W, 3) uint8`` RGB array and
the keyword parameters drawn by :func:`roma.degrade.sample_params` in, a new ``(H, W, 3) uint8``
array of the same size out, the input untouched; every random field comes from
``np.random.default_rng(noise_seed)`` (or from parameters drawn beforehand), so one params dict
always gives the same pixels. Spatial parameters (``*_at_448``) are pixels at a 448-px short side,
scaled by ``r = min(H, W) / 448``.

Sources: the ImageNet-C types follow the definitions of Hendrycks & Dietterich (ICLR 2019) as
packaged in ``imagecorruptions`` (its severity tables are quoted on each function's first line);
frost and spatter use procedural textures instead of its image files and drawn masks, and the glass
blur shuffles pixels in one vectorised gather per iteration instead of ImageNet-C's sequential swaps.
The other families are roma's own, built from OpenCV primitives (docs/degradations.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from roma.degrade.ops import _motion_kernel, _scale, gaussian_blur

_BLACK, _WHITE = (0, 0, 0), (255, 255, 255)

# ------------------------------------------------------------------------------ ImageNet-C: noise


def shot_noise(image: np.ndarray, *, photons: float, noise_seed: int) -> np.ndarray:
    """ImageNet-C c = [60, 25, 12, 5, 3]: ``clip(Poisson(x·c) / c)`` on the [0, 1] scale (photon noise)."""
    rng = np.random.default_rng(noise_seed)
    counts = rng.poisson(image.astype(np.float64) * (photons / 255.0))  # (H, W, 3) photon counts
    return _to_uint8(counts * (255.0 / photons))


# ------------------------------------------------------------------------------ ImageNet-C: blur


def defocus_blur(image: np.ndarray, *, radius_at_448: float, alias_sigma_at_448: float) -> np.ndarray:
    """ImageNet-C c = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]: a disk of ``radius`` px whose
    edge is softened by a Gaussian of σ ``alias_sigma`` (3×3 taps, 5×5 above radius 8), edges reflected."""
    scale = _scale(image)
    radius = radius_at_448 * scale
    if radius < 0.5:
        return image.copy()
    half = math.ceil(radius) + 2  # room for the edge softening
    grid = np.arange(-half, half + 1, dtype=np.float32)
    disk = (grid[None, :] ** 2 + grid[:, None] ** 2 <= radius**2).astype(np.float32)  # (2h+1, 2h+1)
    disk /= disk.sum()
    taps = (3, 3) if radius <= 8 else (5, 5)
    kernel = cv2.GaussianBlur(disk, taps, sigmaX=max(alias_sigma_at_448 * scale, 1e-3))
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def glass_blur(
    image: np.ndarray, *, sigma_at_448: float, max_delta_at_448: float, iterations: int, noise_seed: int
) -> np.ndarray:
    """ImageNet-C c = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)] (σ, max_delta, iterations):
    blur, ``iterations`` times move every pixel to a random neighbour at most ``max_delta`` px away, blur.

    ImageNet-C swaps pixel pairs one at a time in a Python loop; here each iteration is one gather
    (``cv2.remap``, nearest, edges reflected) of independently drawn offsets in ``[-d, d]``.
    """
    height, width = image.shape[:2]
    out = gaussian_blur(image, sigma_at_448=sigma_at_448)
    delta = round(max_delta_at_448 * _scale(image))
    if delta >= 1:
        rng = np.random.default_rng(noise_seed)
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each
        for _ in range(int(iterations)):
            dy, dx = rng.integers(-delta, delta + 1, size=(2, height, width)).astype(np.float32)
            out = cv2.remap(out, cols + dx, rows + dy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return gaussian_blur(out, sigma_at_448=sigma_at_448)


def zoom_blur(image: np.ndarray, *, max_zoom: float, steps: int) -> np.ndarray:
    """ImageNet-C c = [arange(1, 1.11, .01), arange(1, 1.16, .01), arange(1, 1.21, .02), arange(1, 1.26, .02),
    arange(1, 1.31, .03)]: the mean of the image and its centre zooms by ``linspace(1, max_zoom, steps)``.

    As in ImageNet-C the unzoomed image counts twice (once itself, once as zoom 1); zooms are bilinear
    ``cv2.warpAffine`` about the centre (rounded to grey levels), accumulated in float32, rounded once.
    """
    height, width = image.shape[:2]
    acc = image.astype(np.float32)  # (H, W, 3)
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    for zoom in np.linspace(1.0, max_zoom, int(steps)):
        matrix = np.array([[zoom, 0, (1 - zoom) * centre_x], [0, zoom, (1 - zoom) * centre_y]], dtype=np.float64)
        zoomed = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        cv2.accumulate(zoomed.reshape(height, width * 3), acc.reshape(height, width * 3))
    return _to_uint8(acc / (int(steps) + 1))


# --------------------------------------------------------------------------- ImageNet-C: weather


def snow(
    image: np.ndarray,
    *,
    mean: float,
    std: float,
    zoom_at_448: float,
    threshold: float,
    radius_at_448: float,
    sigma_at_448: float,
    blend: float,
    angle: float,
    noise_seed: int,
) -> np.ndarray:
    """ImageNet-C c = [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)]
    (mean, std, zoom, threshold, radius, σ, blend).

    A flake field ``N(mean, std)`` drawn on a grid ``zoom·r`` times coarser and enlarged bilinearly,
    zeroed below ``threshold``, motion-blurred along ``angle`` (ImageNet-C's line kernel); the image
    is whitened towards ``max(x, 1.5·grey + 0.5)`` by ``1 − blend``, then the flakes and their 180°
    rotation are added.
    """
    height, width = image.shape[:2]
    scale = _scale(image)
    rng = np.random.default_rng(noise_seed)
    cell = max(zoom_at_448 * scale, 1.0)
    small = rng.normal(mean, std, size=(max(1, math.ceil(height / cell)), max(1, math.ceil(width / cell))))
    flakes = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W)
    flakes[flakes < threshold] = 0.0
    flakes = _line_blur(np.clip(flakes, 0.0, 1.0), round(radius_at_448 * scale), sigma_at_448 * scale, angle)
    x = image.astype(np.float32) / 255.0  # (H, W, 3)
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]  # (H, W, 1)
    x = blend * x + (1.0 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    x += (flakes + flakes[::-1, ::-1])[..., None]
    return _to_uint8(x * 255.0)


def frost(image: np.ndarray, *, image_weight: float, frost_weight: float, noise_seed: int) -> np.ndarray:
    """ImageNet-C c = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)]: ``w_x·x + w_f·frost``.

    ImageNet-C crops one of six photographs of frost; here the texture is procedural (no assets): a
    multi-octave value noise (patchy ice) plus a few hundred thin bright needles per 448² of area,
    tinted ice blue (:func:`_frost_texture`).
    """
    texture = _frost_texture(image.shape[0], image.shape[1], _scale(image), noise_seed)  # (H, W, 3) in [0, 1]
    out = image_weight * image.astype(np.float32) + frost_weight * 255.0 * texture
    return _to_uint8(out)


def fog(image: np.ndarray, *, strength: float, decay: float, noise_seed: int) -> np.ndarray:
    """ImageNet-C c = [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)] (strength, wibble decay):
    ``(x + strength·plasma) · max(x) / (max(x) + strength)`` with a 256² diamond-square plasma fractal
    (:func:`_plasma_fractal`) stretched to the image."""
    height, width = image.shape[:2]
    plasma = _plasma_fractal(256, decay, np.random.default_rng(noise_seed))  # (256, 256) in [0, 1]
    plasma = cv2.resize(plasma, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]  # (H, W, 1)
    x = image.astype(np.float32) / 255.0
    top = float(x.max())
    return _to_uint8((x + strength * plasma) * (top / (top + strength)) * 255.0)


# ------------------------------------------------------------------------ ImageNet-C: digital/colour


def brightness(image: np.ndarray, *, delta: float) -> np.ndarray:
    """ImageNet-C c = [.1, .2, .3, .4, .5]: HSV value ``v → min(v + delta, 1)``, hue and saturation kept.

    With hue and saturation fixed an RGB pixel is proportional to its value ``v = max(R, G, B)``, so
    the pixel is scaled by ``v' / v`` (black, ``v = 0``, becomes grey ``v'``) — the HSV round trip
    without converting, as one lookup in a 256 × 256 table of ``(v, x)``.
    """
    value = cv2.max(cv2.max(image[..., 0], image[..., 1]), image[..., 2])  # (H, W) uint8: v·255
    levels = np.arange(256, dtype=np.float64)
    target = np.minimum(levels / 255.0 + delta, 1.0) * 255.0  # (256,) v'·255 per v
    # table[v, x] = round(x · v'/v), and v' for black (v = 0, where x = 0 too): one lookup per value
    table = _to_uint8(levels[None, :] * target[:, None] / np.maximum(levels, 1.0)[:, None])  # (256, 256)
    table[0, :] = _to_uint8(target[:1])
    return table[value[..., None], image]


def contrast(image: np.ndarray, *, factor: float) -> np.ndarray:
    """ImageNet-C c = [0.4, .3, .2, .1, .05]: ``(x − m)·c + m`` with ``m`` each channel's mean over the image."""
    means = np.array(cv2.mean(image)[:3])  # (3,) channel means
    levels = np.arange(256, dtype=np.float64)[:, None]  # (256, 1)
    table = _to_uint8((levels - means) * factor + means)  # (256, 3): one lookup table per channel
    return cv2.LUT(image, table.reshape(256, 1, 3))


def saturate(image: np.ndarray, *, factor: float, offset: float) -> np.ndarray:
    """ImageNet-C c = [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 1)]: HSV saturation ``s → clip(s·a + b)``."""
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # (H, W, 3): h°, s, v
    hsv[..., 1] = np.clip(hsv[..., 1] * factor + offset, 0.0, 1.0)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0)


def elastic_transform(image: np.ndarray, *, alpha_at_448: float, sigma_at_448: float, noise_seed: int) -> np.ndarray:
    """Simard's elastic distortion, the core of ImageNet-C's ``elastic_transform`` (whose table mixes in an
    affine jitter): displacement fields ``U(−1, 1)`` smoothed by a Gaussian of σ ``sigma`` px, scaled to
    an RMS displacement of ``alpha`` px, applied by bilinear ``cv2.remap`` with reflected edges."""
    height, width = image.shape[:2]
    scale = _scale(image)
    rng = np.random.default_rng(noise_seed)
    fields = rng.uniform(-1.0, 1.0, size=(2, height, width)).astype(np.float32)  # (2, H, W)
    sigma = max(sigma_at_448 * scale, 1e-3)
    dy, dx = (cv2.GaussianBlur(f, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101) for f in fields)
    rms = float(np.sqrt(np.mean(dx**2 + dy**2) / 2)) or 1.0
    amplitude = alpha_at_448 * scale / rms
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(image, cols + amplitude * dx, rows + amplitude * dy, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT_101)  # fmt: skip


def spatter(
    image: np.ndarray, *, sigma_at_448: float, threshold: float, opacity: float, mud: int, noise_seed: int
) -> np.ndarray:
    """Liquid spatter after ImageNet-C (water drops at its severities 1–3, mud at 4–5), procedurally:
    ``N(0.65, 0.3)`` noise smoothed by σ ``sigma`` px, drops where it exceeds ``threshold``, their edges
    softened; water drops blur what lies below and tint it pale blue-grey, mud covers it in brown, with
    ``opacity``."""
    height, width = image.shape[:2]
    scale = _scale(image)
    rng = np.random.default_rng(noise_seed)
    sigma = max(sigma_at_448 * scale, 1e-3)
    liquid = cv2.GaussianBlur(rng.normal(0.65, 0.3, size=(height, width)).astype(np.float32), (0, 0), sigmaX=sigma)
    spread = float(liquid.std()) or 1.0
    drops = (liquid - 0.65) / spread * 0.3 + 0.65 > threshold  # same threshold whatever the smoothing
    mask = cv2.GaussianBlur(drops.astype(np.float32), (0, 0), sigmaX=max(0.5 * sigma, 0.5))[..., None] * opacity
    x = image.astype(np.float32)
    if mud:
        colour = np.array([63, 42, 20], dtype=np.float32)
        return _to_uint8(x * (1 - mask) + colour * mask)
    under = gaussian_blur(image, sigma_at_448=2.0 * sigma_at_448).astype(np.float32)
    colour = np.array([210, 220, 230], dtype=np.float32)
    return _to_uint8(x * (1 - mask) + (0.6 * under + 0.4 * colour) * mask)


# ------------------------------------------------------------------------------ geometric / resampling


def rotate(image: np.ndarray, *, angle: float) -> np.ndarray:
    """Rotate by ``angle`` degrees (counter-clockwise) about the centre, bilinear; uncovered corners black."""
    return _rotate(image, angle, 0.0, 0.0, _BLACK)


def perspective(
    image: np.ndarray,
    *,
    top_left_x: float, top_left_y: float, top_right_x: float, top_right_y: float,
    bottom_right_x: float, bottom_right_y: float, bottom_left_x: float, bottom_left_y: float,
) -> np.ndarray:  # fmt: skip
    """Move each corner inwards by its offsets (fractions of the width / height) and warp the image onto
    that quadrilateral (``cv2.warpPerspective``, bilinear, outside black) — a photo taken at an angle."""
    height, width = image.shape[:2]
    w, h = width - 1, height - 1
    source = np.float32([[0, 0], [w, 0], [w, h], [0, h]])  # (4, 2) x, y
    target = np.float32([
        [top_left_x * w, top_left_y * h], [w - top_right_x * w, top_right_y * h],
        [w - bottom_right_x * w, h - bottom_right_y * h], [bottom_left_x * w, h - bottom_left_y * h],
    ])  # fmt: skip
    if w == 0 or h == 0:  # a single row or column has no area to warp
        return image.copy()
    matrix = cv2.getPerspectiveTransform(source, target)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=_BLACK)  # fmt: skip


def resample(image: np.ndarray, *, factor: float) -> np.ndarray:
    """Down to ``max(1, int(side·factor))`` by nearest neighbour (no anti-aliasing: thin strokes break and
    alias), then bicubic back up — the resampling of a careless resize pipeline."""
    height, width = image.shape[:2]
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


# ------------------------------------------------------------------------------------------- capture


def low_light(image: np.ndarray, *, exposure: float, photons: float, read_noise: float, noise_seed: int) -> np.ndarray:
    """A dim exposure: linear light (sRGB γ 2.2) times ``exposure``, photon noise at ``photons`` per
    full-white pixel of the dimmed scene, Gaussian read noise σ ``read_noise`` (on [0, 1]), back to γ.
    The image stays dark (no brightening)."""
    rng = np.random.default_rng(noise_seed)
    linear = (image.astype(np.float64) / 255.0) ** 2.2 * exposure  # (H, W, 3)
    signal = rng.poisson(linear * photons) / photons + rng.normal(0.0, read_noise, size=image.shape)
    return _to_uint8(np.clip(signal, 0.0, 1.0) ** (1 / 2.2) * 255.0)


def glare(image: np.ndarray, *, strength: float, radius: float, centre_x: float, centre_y: float) -> np.ndarray:
    """A lens flare: a Gaussian bloom of σ ``radius`` (a fraction of the diagonal) at ``(centre_x,
    centre_y)`` (fractions of width, height), a horizontal streak through it and a veil of
    ``0.15·strength`` over the whole frame, screen-blended: ``1 − (1 − x)(1 − g)``."""
    height, width = image.shape[:2]
    diagonal = math.hypot(height, width)
    ys = (np.arange(height, dtype=np.float32) - centre_y * (height - 1))[:, None]  # (H, 1)
    xs = (np.arange(width, dtype=np.float32) - centre_x * (width - 1))[None, :]  # (1, W)
    spread = radius * diagonal
    bloom = np.exp(-(xs**2 + ys**2) / (2 * spread**2))  # (H, W)
    streak = np.exp(-(ys**2) / (2 * (0.03 * spread + 0.5) ** 2)) * np.exp(-np.abs(xs) / (2 * spread))
    light = np.clip(strength * (bloom + 0.5 * streak + 0.15), 0.0, 1.0)[..., None]  # (H, W, 1)
    x = image.astype(np.float32) / 255.0
    return _to_uint8((1 - (1 - x) * (1 - light)) * 255.0)


def overexposure(image: np.ndarray, *, gain: float) -> np.ndarray:
    """Exposure times ``gain`` in linear light (sRGB γ 2.2), clipped at white: highlights burn out."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    table = np.minimum((levels**2.2) * gain, 1.0) ** (1 / 2.2)  # (256,)
    return cv2.LUT(image, _to_uint8(table * 255.0))


# ------------------------------------------------------------------------------------------ documents


def scan_skew(image: np.ndarray, *, angle: float, shift_x_at_448: float, shift_y_at_448: float) -> np.ndarray:
    """A page fed askew: rotated by ``angle`` degrees about the centre and shifted, on a white scanner bed."""
    scale = _scale(image)
    return _rotate(image, angle, shift_x_at_448 * scale, shift_y_at_448 * scale, _WHITE)


def ink_bleed(image: np.ndarray, *, bleed_at_448: float, show_through: float) -> np.ndarray:
    """Ink spreading into the paper and the back of the page showing through.

    Dark strokes are widened by a grey erosion of radius ``bleed`` px and softened by a Gaussian of σ
    ``bleed / 2``; the darker of that and the page is kept. The verso (the page mirrored left-right,
    in grey) then darkens the page by ``show_through · (1 − verso)``.
    """
    radius = bleed_at_448 * _scale(image)
    x = image
    if radius >= 0.5:
        size = 2 * round(radius) + 1
        spread = cv2.erode(image, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        spread = cv2.GaussianBlur(spread, (0, 0), sigmaX=radius / 2)
        x = np.minimum(image, spread)
    verso = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, ::-1, None].astype(np.float32) / 255.0  # (H, W, 1)
    return _to_uint8(x.astype(np.float32) * (1.0 - show_through * (1.0 - verso)))


def binarize(image: np.ndarray, *, factor: float, threshold: float, noise: float, noise_seed: int) -> np.ndarray:
    """A fax: grey, scanned at ``factor`` of the resolution (area), thresholded at ``threshold`` after
    Gaussian sensor noise σ ``noise`` (on [0, 1]), sent back at full size by nearest neighbour: pure
    black and white."""
    height, width = image.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0  # (H, W)
    small = cv2.resize(grey, (max(1, int(width * factor)), max(1, int(height * factor))), interpolation=cv2.INTER_AREA)
    small = small + np.random.default_rng(noise_seed).normal(0.0, noise, size=small.shape).astype(np.float32)
    bits = np.where(small >= threshold, 255, 0).astype(np.uint8)
    full = cv2.resize(bits, (width, height), interpolation=cv2.INTER_NEAREST)
    return np.repeat(full[..., None], 3, axis=2)


def moire(
    image: np.ndarray, *, amplitude: float, period_at_448: float, angle: float, curvature: float, phase: float
) -> np.ndarray:
    """A moiré-like interference pattern, as when a screen or a halftone print is photographed.

    Fringes of period ``period`` px at ``angle`` degrees, bent by a quadratic phase ``curvature``
    (radians at the image's half-diagonal), one third of a period apart in R, G and B (colour
    fringes); each channel is multiplied by ``1 − amplitude·(½ + ½·cos φ_c)``.
    """
    height, width = image.shape[:2]
    period = max(period_at_448 * _scale(image), 2.0)
    ys = np.arange(height, dtype=np.float32)[:, None] - (height - 1) / 2  # (H, 1)
    xs = np.arange(width, dtype=np.float32)[None, :] - (width - 1) / 2  # (1, W)
    a = math.radians(angle)
    half_diagonal = max(math.hypot(height, width) / 2, 1.0)
    base = 2 * math.pi * (xs * math.cos(a) + ys * math.sin(a)) / period + curvature * (xs**2 + ys**2) / half_diagonal**2
    shifts = np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=np.float32)
    fringes = 0.5 + 0.5 * np.cos(base[..., None] + phase + shifts)  # (H, W, 3)
    return _to_uint8(image.astype(np.float32) * (1.0 - amplitude * fringes))


FAMILY_OPS: dict[str, Callable[..., np.ndarray]] = {
    "shot_noise": shot_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "saturate": saturate,
    "spatter": spatter,
    "rotate": rotate,
    "perspective": perspective,
    "resample": resample,
    "low_light": low_light,
    "glare": glare,
    "overexposure": overexposure,
    "scan_skew": scan_skew,
    "ink_bleed": ink_bleed,
    "binarize": binarize,
    "moire": moire,
}


# ------------------------------------------------------------------------------------------- helpers


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Round half to even and saturate to ``uint8`` (a new C-contiguous array)."""
    return np.ascontiguousarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _rotate(image: np.ndarray, angle: float, shift_x: float, shift_y: float, fill: tuple[int, int, int]) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), float(angle), 1.0)  # (2, 3)
    matrix[:, 2] += (shift_x, shift_y)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)  # fmt: skip


def _line_blur(layer: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """A ``(H, W) float32`` layer blurred by ImageNet-C's motion kernel (:func:`roma.degrade.ops.motion_blur`)."""
    if radius < 1 or sigma <= 0:
        return layer
    offsets, weights = _motion_kernel(radius, sigma, float(angle))
    height, width = layer.shape
    pad = int(np.abs(offsets).max())
    padded = cv2.copyMakeBorder(layer, pad, pad, pad, pad, cv2.BORDER_REPLICATE)  # (H+2p, W+2p)
    out = np.zeros_like(layer)
    for (dy, dx), w in zip(offsets, weights):
        out += np.float32(w) * padded[pad + dy : pad + dy + height, pad + dx : pad + dx + width]
    return out


def _plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size) float32`` diamond-square height map in [0, 1]; ``size`` a power of two.

    Each pass halves the step: square centres get the mean of their four corners, then edge midpoints
    the mean of their four neighbours (wrapping around), each plus ``U(−w, w)·w``, with the roughness
    ``w`` (100 at first) divided by ``decay`` per pass — the fractal of ImageNet-C's fog.
    """
    grid = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half:size:step, half:size:step] = square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape)
        centres = grid[half:size:step, half:size:step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0:size:step, half:size:step] = left / 4 + wibble * rng.uniform(-wibble, wibble, left.shape)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half:size:step, 0:size:step] = top / 4 + wibble * rng.uniform(-wibble, wibble, top.shape)
        step, wibble = half, wibble / decay
    grid -= grid.min()
    return (grid / max(grid.max(), 1e-12)).astype(np.float32)


def _frost_texture(height: int, width: int, scale: float, seed: int) -> np.ndarray:
    """A ``(H, W, 3) float32`` ice texture in [0, 1]: value-noise octaves plus bright needles, ice blue."""
    rng = np.random.default_rng(seed)
    cloud = np.zeros((height, width), dtype=np.float32)
    short = min(height, width)
    for cells, weight in ((4, 0.4), (12, 0.3), (36, 0.2), (108, 0.1)):  # cells across the short side
        shape = (max(2, round(cells * height / short)), max(2, round(cells * width / short)))
        grid = rng.random(shape, dtype=np.float32)
        cloud += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    needles = np.zeros((height, width), dtype=np.float32)
    count = max(1, round(300 * height * width / short**2))  # 300 per short-side square
    starts = rng.random((count, 2)) * (width, height)
    angles = rng.uniform(0, 2 * math.pi, count)
    lengths = rng.uniform(4, 24, count) * scale
    ends = starts + np.stack([np.cos(angles), np.sin(angles)], axis=1) * lengths[:, None]
    lines = np.round(np.stack([starts, ends], axis=1) * 16).astype(np.int32)  # (n, 2, 2), 4 fractional bits
    cv2.polylines(needles, list(lines), False, 1.0, thickness=1, lineType=cv2.LINE_AA, shift=4)
    needles = cv2.GaussianBlur(needles, (0, 0), sigmaX=max(0.6 * scale, 0.3))
    ice = np.clip(0.8 * cloud + 0.9 * needles, 0.0, 1.0)[..., None]  # (H, W, 1)
    return ice * np.array([0.85, 0.93, 1.0], dtype=np.float32)
