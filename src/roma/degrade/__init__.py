"""Image degradations: the seen / unseen pools, severity levels and training ranges of ROMA.

The paper's nine types in two pools (docs/degradations.md has the full table)::

    SEEN   = gaussian_noise, gaussian_blur, jpeg, downscale            (used in training)
    UNSEEN = motion_blur, salt_pepper, speckle_noise, posterize, pixelate   (held out)

and 22 more (:mod:`roma.degrade.families`) for robustness evaluation, in the named ``POOLS``
``imagenet-c``, ``geometric``, ``capture``, ``document`` and ``all`` (``ALL_TYPES``, 31 types).

Levels 1–3 are fixed severities; level 3 of every seen type lies outside its training range
(``level="train"``). Parameters are sampled first, then applied deterministically::

    rng = np.random.default_rng(derive_seed(seed, example_id, "jpeg", 3))
    params = sample_params("jpeg", 3, rng)       # {"quality": 7} — JSON-serialisable, logged
    pixels = apply(image, "jpeg", params)        # (H, W, 3) uint8, the input's size

or in one call ``degrade(image, "jpeg", 3, seed=...)``; ``sample_views(image, k, seed=...)`` draws
``k`` views of distinct types. Inputs may be PIL images of any common mode or uint8 arrays
(:func:`to_rgb`); outputs are always ``H×W×3 uint8`` RGB of the input's size.
"""

from roma.degrade.api import OPS, View, apply, degrade, derive_seed, sample_views
from roma.degrade.image import to_rgb
from roma.degrade.params import (
    ALL_TYPES,
    CAPTURE,
    DOCUMENT,
    FAMILY_LEVELS,
    GEOMETRIC,
    IMAGENET_C,
    LEVEL_VALUES,
    LEVELS,
    POOLS,
    SEEN,
    TRAIN_RANGES,
    TYPES,
    UNSEEN,
    check_params,
    check_pool,
    describe,
    sample_params,
)

__all__ = [
    "ALL_TYPES",
    "CAPTURE",
    "DOCUMENT",
    "FAMILY_LEVELS",
    "GEOMETRIC",
    "IMAGENET_C",
    "check_pool",
    "LEVELS",
    "LEVEL_VALUES",
    "OPS",
    "POOLS",
    "SEEN",
    "TRAIN_RANGES",
    "TYPES",
    "UNSEEN",
    "View",
    "apply",
    "check_params",
    "degrade",
    "derive_seed",
    "describe",
    "sample_params",
    "sample_views",
    "to_rgb",
]
