"""The degradation table: pools, levels, training ranges, and parameter sampling (all 31 types).

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
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

SEEN: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "jpeg", "downscale")
UNSEEN: tuple[str, ...] = ("motion_blur", "salt_pepper", "speckle_noise", "posterize", "pixelate")
TYPES: tuple[str, ...] = SEEN + UNSEEN  # the paper's nine
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


# The other families (docs/degradations.md): ImageNet-C's remaining corruptions (with its four
# "extra" ones), geometric / resampling transforms, capture effects and document degradations.
# ImageNet-C's impulse_noise, pixelate and jpeg_compression are roma's salt_pepper, pixelate and jpeg.
IMAGENET_C: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "salt_pepper", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip
GEOMETRIC: tuple[str, ...] = ("rotate", "perspective", "resample")
CAPTURE: tuple[str, ...] = ("low_light", "glare", "overexposure")
DOCUMENT: tuple[str, ...] = ("scan_skew", "ink_bleed", "binarize", "moire")
ALL_TYPES: tuple[str, ...] = TYPES + tuple(
    dict.fromkeys(name for name in IMAGENET_C + GEOMETRIC + CAPTURE + DOCUMENT if name not in TYPES)
)
POOLS: dict[str, tuple[str, ...]] = {
    "seen": SEEN, "unseen": UNSEEN, "imagenet-c": IMAGENET_C, "geometric": GEOMETRIC, "capture": CAPTURE,
    "document": DOCUMENT, "all": ALL_TYPES,
}  # fmt: skip

# The fixed parameters of the other types at levels 1, 2, 3 (docs/degradations.md has the table);
# ``sample_params`` adds the random parts (noise seeds, angles, positions, signs; see _draw_family).
# Comments: the ImageNet-C severities (imagecorruptions' tables) each level takes, or "ours".
FAMILY_LEVELS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "shot_noise": ({"photons": 60.0}, {"photons": 12.0}, {"photons": 3.0}),  # sev 1/3/5
    "defocus_blur": tuple({"radius_at_448": r, "alias_sigma_at_448": a} for r, a in ((3.0, 0.1), (6.0, 0.5), (10.0, 0.5))),  # sev 1/3/5
    "glass_blur": tuple({"sigma_at_448": s, "max_delta_at_448": d, "iterations": i}
                        for s, d, i in ((0.7, 1.0, 2), (1.0, 2.0, 3), (1.5, 4.0, 2))),  # sev 1/3/5
    "zoom_blur": tuple({"max_zoom": z, "steps": 11} for z in (1.10, 1.20, 1.30)),  # sev 1/3/5
    "snow": tuple(dict(zip(("mean", "std", "zoom_at_448", "threshold", "radius_at_448", "sigma_at_448", "blend"), c))
                  for c in ((0.1, 0.3, 3.0, 0.5, 10.0, 4.0, 0.8), (0.55, 0.3, 4.0, 0.9, 12.0, 8.0, 0.7),
                            (0.55, 0.3, 2.5, 0.85, 12.0, 12.0, 0.55))),  # sev 1/3/5
    "frost": tuple({"image_weight": a, "frost_weight": b} for a, b in ((1.0, 0.4), (0.7, 0.7), (0.6, 0.75))),  # sev 1/3/5
    "fog": tuple({"strength": a, "decay": b} for a, b in ((1.5, 2.0), (2.5, 1.7), (3.0, 1.4))),  # sev 1/3/5
    "brightness": ({"delta": 0.1}, {"delta": 0.3}, {"delta": 0.5}),  # sev 1/3/5
    "contrast": ({"factor": 0.4}, {"factor": 0.2}, {"factor": 0.05}),  # sev 1/3/5
    "elastic_transform": tuple({"alpha_at_448": a, "sigma_at_448": 8.0} for a in (1.0, 2.0, 3.5)),  # ours
    "saturate": ({"factor": 2.0, "offset": 0.0}, {"factor": 5.0, "offset": 0.1}, {"factor": 20.0, "offset": 1.0}),  # sev 3/4/5
    "spatter": ({"sigma_at_448": 4.0, "threshold": 0.69, "opacity": 0.6, "mud": 0},
                {"sigma_at_448": 3.0, "threshold": 0.67, "opacity": 0.8, "mud": 0},
                {"sigma_at_448": 5.0, "threshold": 0.85, "opacity": 0.9, "mud": 1}),  # water 1/3, mud 5
    "rotate": ({"angle": 5.0}, {"angle": 15.0}, {"angle": 30.0}),  # ± (random sign)
    "perspective": ({"distortion": 0.05}, {"distortion": 0.10}, {"distortion": 0.20}),  # corner offsets U[0, d]
    "resample": ({"factor": 0.5}, {"factor": 0.33}, {"factor": 0.2}),
    "low_light": tuple({"exposure": e, "photons": p, "read_noise": n}
                       for e, p, n in ((0.35, 400.0, 0.005), (0.2, 200.0, 0.01), (0.08, 100.0, 0.02))),
    "glare": tuple({"strength": s, "radius": r} for s, r in ((0.5, 0.15), (0.75, 0.25), (0.95, 0.35))),
    "overexposure": ({"gain": 1.8}, {"gain": 3.0}, {"gain": 5.0}),
    "scan_skew": tuple({"angle": a, "shift_at_448": s} for a, s in ((1.0, 2.0), (2.5, 5.0), (5.0, 10.0))),
    "ink_bleed": tuple({"bleed_at_448": b, "show_through": t} for b, t in ((0.75, 0.1), (1.5, 0.2), (2.5, 0.35))),
    "binarize": tuple({"factor": f, "threshold": 0.55, "noise": n} for f, n in ((1.0, 0.0), (0.6, 0.08), (0.4, 0.15))),
    "moire": ({"amplitude": 0.15}, {"amplitude": 0.3}, {"amplitude": 0.5}),
}  # fmt: skip
GLARE_CENTRE_RANGE: tuple[float, float] = (0.2, 0.8)  # fraction of width / height
MOIRE_PERIOD_RANGE: tuple[float, float] = (5.0, 12.0)  # px at 448
MOIRE_CURVATURE_RANGE: tuple[float, float] = (-3.0, 3.0)  # radians at the half-diagonal
SNOW_ANGLE_RANGE: tuple[float, float] = (-135.0, -45.0)  # degrees, ImageNet-C's
_SEED = ("int", 0, 2**64 - 1)
_CORNERS = ("top_left_x", "top_left_y", "top_right_x", "top_right_y",
            "bottom_right_x", "bottom_right_y", "bottom_left_x", "bottom_left_y")  # fmt: skip
PARAM_BOUNDS.update({
    "shot_noise": {"photons": ("float", 1e-3, 1e6), "noise_seed": _SEED},
    "defocus_blur": {"radius_at_448": ("float", 0.0, 100.0), "alias_sigma_at_448": ("float", 0.0, 10.0)},
    "glass_blur": {"sigma_at_448": ("float", 0.0, 64.0), "max_delta_at_448": ("float", 0.0, 64.0),
                   "iterations": ("int", 0, 10), "noise_seed": _SEED},
    "zoom_blur": {"max_zoom": ("float", 1.0, 4.0), "steps": ("int", 1, 64)},
    "snow": {"mean": ("float", -1.0, 1.0), "std": ("float", 0.0, 1.0), "zoom_at_448": ("float", 0.0, 64.0),
             "threshold": ("float", 0.0, 1.0), "radius_at_448": ("float", 0.0, 100.0),
             "sigma_at_448": ("float", 1e-3, 100.0), "blend": ("float", 0.0, 1.0),
             "angle": ("float", -360.0, 360.0), "noise_seed": _SEED},
    "frost": {"image_weight": ("float", 0.0, 1.0), "frost_weight": ("float", 0.0, 1.0), "noise_seed": _SEED},
    "fog": {"strength": ("float", 0.0, 10.0), "decay": ("float", 1.0, 10.0), "noise_seed": _SEED},
    "brightness": {"delta": ("float", -1.0, 1.0)},
    "contrast": {"factor": ("float", 0.0, 10.0)},
    "elastic_transform": {"alpha_at_448": ("float", 0.0, 100.0), "sigma_at_448": ("float", 1e-3, 100.0),
                          "noise_seed": _SEED},
    "saturate": {"factor": ("float", 0.0, 100.0), "offset": ("float", -1.0, 1.0)},
    "spatter": {"sigma_at_448": ("float", 1e-3, 64.0), "threshold": ("float", 0.0, 2.0),
                "opacity": ("float", 0.0, 1.0), "mud": ("int", 0, 1), "noise_seed": _SEED},
    "rotate": {"angle": ("float", -360.0, 360.0)},
    "perspective": {key: ("float", 0.0, 0.45) for key in _CORNERS},
    "resample": {"factor": ("float", 1e-6, 1.0)},
    "low_light": {"exposure": ("float", 0.0, 1.0), "photons": ("float", 1e-3, 1e6),
                  "read_noise": ("float", 0.0, 1.0), "noise_seed": _SEED},
    "glare": {"strength": ("float", 0.0, 1.0), "radius": ("float", 1e-3, 10.0),
              "centre_x": ("float", 0.0, 1.0), "centre_y": ("float", 0.0, 1.0)},
    "overexposure": {"gain": ("float", 1e-3, 100.0)},
    "scan_skew": {"angle": ("float", -360.0, 360.0), "shift_x_at_448": ("float", -448.0, 448.0),
                  "shift_y_at_448": ("float", -448.0, 448.0)},
    "ink_bleed": {"bleed_at_448": ("float", 0.0, 64.0), "show_through": ("float", 0.0, 1.0)},
    "binarize": {"factor": ("float", 1e-6, 1.0), "threshold": ("float", 0.0, 1.0), "noise": ("float", 0.0, 1.0),
                 "noise_seed": _SEED},
    "moire": {"amplitude": ("float", 0.0, 1.0), "period_at_448": ("float", 1.0, 448.0),
              "angle": ("float", -360.0, 360.0), "curvature": ("float", -100.0, 100.0),
              "phase": ("float", -100.0, 100.0)},
})  # fmt: skip


def check_type(name: Any) -> str:
    """``name`` if it is a known degradation type, else a ``ValueError`` listing the valid ones."""
    if not isinstance(name, str) or name not in ALL_TYPES:
        raise ValueError(f"unknown degradation type {name!r}; valid types: {', '.join(ALL_TYPES)}")
    return name


def check_pool(pool: Any) -> tuple[str, ...]:
    """The types of a named pool (a key of ``POOLS``) or of a sequence of type names, else a ``ValueError``."""
    if isinstance(pool, str):
        if pool not in POOLS:
            raise ValueError(f"unknown degradation pool {pool!r}; valid pools: {', '.join(POOLS)}")
        return POOLS[pool]
    names = tuple(check_type(name) for name in pool)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"a pool must be a non-empty list of distinct types, got {list(names)}")
    return names


def expand_pools(names: Sequence[str]) -> tuple[str, ...]:
    """Type names and pool names (``["document", "fog"]``) as the distinct types they name, in order."""
    return tuple(dict.fromkeys(t for name in names for t in (POOLS[name] if name in POOLS else (check_type(name),))))


def check_level(level: Any) -> int | str:
    """``level`` as ``1``, ``2``, ``3`` or ``"train"``, else a ``ValueError``."""
    if isinstance(level, numbers.Integral) and not isinstance(level, bool) and int(level) in (1, 2, 3):
        return int(level)
    if isinstance(level, str) and level == "train":
        return level
    raise ValueError(f"unknown level {level!r}; valid levels: 1, 2, 3, 'train' (training range, seen types only)")


def sample_params(name: str, level: Level, rng: np.random.Generator) -> dict[str, Any]:
    """Draw the parameters of type ``name`` at ``level`` (1, 2, 3 or ``"train"``) from ``rng``.

    Levels 1–3 fix the main parameter (``LEVEL_VALUES``; the other families' fixed parameters are in
    ``FAMILY_LEVELS``); ``"train"`` draws it from the type's training range (``TRAIN_RANGES``, seen
    types only). Noise seeds, angles, signs and positions are drawn from ``rng`` at every level. The
    result holds only Python ``int``/``float`` values.
    """
    name, level = check_type(name), check_level(level)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if level == "train":
        if name not in TRAIN_RANGES:
            kind = "an unseen type" if name in UNSEEN else "not a seen type"
            raise ValueError(
                f"{name!r} is {kind} and has no training range; level 'train' is only for the seen "
                f"types {', '.join(SEEN)} (use level 1, 2 or 3)"
            )
        low, high = TRAIN_RANGES[name]
        value = int(rng.integers(low, high, endpoint=True)) if name == "jpeg" else float(rng.uniform(low, high))
    elif name in FAMILY_LEVELS:
        return _draw_family(name, FAMILY_LEVELS[name][level - 1], rng)
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


def _draw_family(name: str, fixed: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The params of one of the other families: the level's fixed values plus the random parts."""
    params = {key: float(v) if isinstance(v, float) else int(v) for key, v in fixed.items()}
    if name in ("rotate", "scan_skew"):  # the level fixes the magnitude; the sign is drawn
        params["angle"] *= 1.0 if rng.random() < 0.5 else -1.0
    if name == "scan_skew":
        shift = params.pop("shift_at_448")
        params["shift_x_at_448"], params["shift_y_at_448"] = (float(v) for v in rng.uniform(-shift, shift, 2))
    elif name == "perspective":
        distortion = params.pop("distortion")
        params = {key: float(v) for key, v in zip(_CORNERS, rng.uniform(0.0, distortion, len(_CORNERS)))}
    elif name == "snow":
        params["angle"] = float(rng.uniform(*SNOW_ANGLE_RANGE))
    elif name == "glare":
        params["centre_x"], params["centre_y"] = (float(v) for v in rng.uniform(*GLARE_CENTRE_RANGE, 2))
    elif name == "moire":
        params["period_at_448"] = float(rng.uniform(*MOIRE_PERIOD_RANGE))
        params["angle"] = float(rng.uniform(0.0, 180.0))
        params["curvature"] = float(rng.uniform(*MOIRE_CURVATURE_RANGE))
        params["phase"] = float(rng.uniform(0.0, 2 * math.pi))
    if "noise_seed" in PARAM_BOUNDS[name]:
        params["noise_seed"] = _noise_seed(rng)
    return params


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
    if name == "perspective":
        return f"corners<={max(params[k] for k in _CORNERS):.2f}"
    keys = _LABEL_KEYS.get(name, tuple(FAMILY_LEVELS[name][0])[:2])
    return " ".join(f"{key.removesuffix('_at_448')}={params[key]:.3g}" for key in keys)


_LABEL_KEYS = {"snow": ("threshold", "sigma_at_448"), "glass_blur": ("sigma_at_448", "max_delta_at_448"),
               "zoom_blur": ("max_zoom",), "low_light": ("exposure", "read_noise"),
               "binarize": ("factor", "noise"), "spatter": ("threshold", "mud"), "scan_skew": ("angle",)}  # fmt: skip  # unreachable: check_type() accepted it
