"""The degradation table: pools, levels, training ranges, and parameter sampling.

Parameters are sampled first and applied afterwards (as in kornia's augmentations): a draw is a small
JSON-serialisable dict that fully determines the degraded pixels, so it can be logged and replayed.
Every random choice — a training-range value, a motion angle, the seed of a noise field — comes from
the ``np.random.Generator`` the caller passes in.

Spatial parameters (keys ending in ``_at_448``) are in pixels at a 448-px short side; the operations
in :mod:`roma.degrade.ops` scale them by ``r = min(H, W) / 448``, so one draw means the same blur on
every image size. Factors are relative; noise, JPEG and posterize act per pixel.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import numpy as np

SEEN: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "jpeg", "downscale")
UNSEEN: tuple[str, ...] = ("motion_blur", "salt_pepper", "speckle_noise", "posterize", "pixelate")
TYPES: tuple[str, ...] = SEEN + UNSEEN
POOLS: dict[str, tuple[str, ...]] = {"seen": SEEN, "unseen": UNSEEN}  # training pool, held-out pool
LEVELS: tuple[int | str, ...] = (1, 2, 3, "train")
REFERENCE_SHORT_SIDE: int = 448
Level = Literal[1, 2, 3, "train"]

# The spec table (docs/degradations.md): the main parameter at levels 1, 2, 3.
LEVEL_VALUES: dict[str, tuple[Any, Any, Any]] = {
    "gaussian_noise": (0.08, 0.18, 0.38),  # σ on the [0, 1] scale                   ImageNet-C sev 1/3/5
    "gaussian_blur": (1.0, 2.0, 4.0),  # σ, px at a 448-px short side                       sev 1/2/4
    "jpeg": (25, 15, 7),  # Pillow quality                                                sev 1/3/5
    "downscale": (0.6, 0.4, 0.25),  # size factor, area down then bilinear up    pixelate sev 1/3/5
    "motion_blur": ((10, 3.0), (15, 5.0), (15, 12.0)),  # (radius, σ), px at 448          sev 1/2/4
    "salt_pepper": (0.03, 0.09, 0.27),  # fraction of channel values replaced  impulse sev 1/3/5
    "speckle_noise": (0.15, 0.35, 0.60),  # σ in x + x·N(0, σ)                            sev 1/3/5
    "posterize": (4, 3, 2),  # bits kept per channel
    "pixelate": (0.6, 0.4, 0.25),  # size factor, box down then nearest up                sev 1/3/5
}
# Training ranges of the seen types (level="train"); each level 3 lies outside its range.
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "gaussian_noise": (0.02, 0.26),  # U[0.02, 0.26]
    "gaussian_blur": (0.3, 3.0),  # U[0.3, 3.0]
    "jpeg": (10, 90),  # U{10, …, 90}, integers
    "downscale": (0.3, 0.9),  # U[0.3, 0.9]
}
MOTION_ANGLE_RANGE: tuple[float, float] = (-45.0, 45.0)  # degrees, ImageNet-C's U(−45°, 45°)

# The keys of each type's params dict, with (kind, lowest, highest) for validation in ``check_params``.
PARAM_BOUNDS: dict[str, dict[str, tuple[str, float, float]]] = {
    "gaussian_noise": {"sigma": ("float", 0.0, 1.0), "noise_seed": ("int", 0, 2**64 - 1)},
    "gaussian_blur": {"sigma_at_448": ("float", 0.0, 64.0)},
    "jpeg": {"quality": ("int", 0, 100)},
    "downscale": {"factor": ("float", 1e-6, 1.0)},
    "motion_blur": {
        "radius_at_448": ("float", 0.0, 448.0),
        "sigma_at_448": ("float", 1e-3, 448.0),
        "angle": ("float", -360.0, 360.0),
    },
    "salt_pepper": {"amount": ("float", 0.0, 1.0), "noise_seed": ("int", 0, 2**64 - 1)},
    "speckle_noise": {"sigma": ("float", 0.0, 10.0), "noise_seed": ("int", 0, 2**64 - 1)},
    "posterize": {"bits": ("int", 1, 8)},
    "pixelate": {"factor": ("float", 1e-6, 1.0)},
}


def check_type(name: Any) -> str:
    """``name`` if it is a known degradation type, else a ``ValueError`` listing the valid ones."""
    if not isinstance(name, str) or name not in TYPES:
        raise ValueError(f"unknown degradation type {name!r}; valid types: {', '.join(TYPES)}")
    return name


def check_level(level: Any) -> int | str:
    """``level`` as ``1``, ``2``, ``3`` or ``"train"``, else a ``ValueError``."""
    if isinstance(level, numbers.Integral) and not isinstance(level, bool) and int(level) in (1, 2, 3):
        return int(level)
    if isinstance(level, str) and level == "train":
        return level
    raise ValueError(f"unknown level {level!r}; valid levels: 1, 2, 3, 'train' (training range, seen types only)")


def sample_params(name: str, level: Level, rng: np.random.Generator) -> dict[str, Any]:
    """Draw the parameters of type ``name`` at ``level`` (1, 2, 3 or ``"train"``) from ``rng``.

    Levels 1–3 fix the main parameter (``LEVEL_VALUES``); ``"train"`` draws it from the type's
    training range (``TRAIN_RANGES``, seen types only). Noise seeds and motion angles are drawn from
    ``rng`` at every level. The result holds only Python ``int``/``float`` values.
    """
    name, level = check_type(name), check_level(level)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if level == "train":
        if name not in TRAIN_RANGES:
            raise ValueError(
                f"{name!r} is an unseen type and has no training range; level 'train' is only for the seen "
                f"types {', '.join(SEEN)} (use level 1, 2 or 3)"
            )
        low, high = TRAIN_RANGES[name]
        value = int(rng.integers(low, high, endpoint=True)) if name == "jpeg" else float(rng.uniform(low, high))
    else:
        value = LEVEL_VALUES[name][level - 1]

    if name in ("gaussian_noise", "speckle_noise"):
        return {"sigma": float(value), "noise_seed": _noise_seed(rng)}
    if name == "salt_pepper":
        return {"amount": float(value), "noise_seed": _noise_seed(rng)}
    if name == "gaussian_blur":
        return {"sigma_at_448": float(value)}
    if name == "jpeg":
        return {"quality": int(value)}
    if name in ("downscale", "pixelate"):
        return {"factor": float(value)}
    if name == "motion_blur":
        radius, sigma = value
        angle = float(rng.uniform(*MOTION_ANGLE_RANGE))
        return {"radius_at_448": int(radius), "sigma_at_448": float(sigma), "angle": angle}
    if name == "posterize":
        return {"bits": int(value)}
    raise AssertionError(f"no sampler for {name!r}")  # unreachable: check_type() accepted it


def _noise_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63))


def check_params(name: str, params: Any) -> dict[str, Any]:
    """``params`` validated against ``PARAM_BOUNDS[name]`` (exact key set, kinds, ranges)."""
    name = check_type(name)
    bounds = PARAM_BOUNDS[name]
    if not isinstance(params, dict):
        raise TypeError(f"params of {name!r} must be a dict with keys {sorted(bounds)}, got {type(params).__name__}")
    missing, extra = sorted(set(bounds) - set(params)), sorted(set(params) - set(bounds))
    if missing or extra:
        raise ValueError(
            f"params of {name!r} must have exactly the keys {sorted(bounds)}; missing {missing}, unexpected {extra}"
        )
    for key, (kind, low, high) in bounds.items():
        value = params[key]
        if kind == "int":
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        else:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not low <= value <= high:
            want = "an integer" if kind == "int" else "a finite number"
            raise ValueError(f"{name} parameter {key!r} must be {want} in [{low}, {high}], got {value!r}")
    return params


def describe(name: str, params: dict[str, Any]) -> str:
    """A short ASCII label of one draw, e.g. ``"sigma=0.18"`` or ``"q=15"`` (for grids and plots)."""
    name = check_type(name)
    if name in ("gaussian_noise", "speckle_noise"):
        return f"sigma={params['sigma']:.2f}"
    if name == "salt_pepper":
        return f"amount={params['amount']:.2f}"
    if name == "gaussian_blur":
        return f"sigma={params['sigma_at_448']:.2g}px@448"
    if name == "jpeg":
        return f"q={params['quality']}"
    if name in ("downscale", "pixelate"):
        return f"factor={params['factor']:.2f}"
    if name == "motion_blur":
        return f"r={params['radius_at_448']:g} sigma={params['sigma_at_448']:g} angle={params['angle']:+.0f}"
    if name == "posterize":
        return f"{params['bits']} bits"
    raise AssertionError(f"no label for {name!r}")  # unreachable: check_type() accepted it
