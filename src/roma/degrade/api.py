"""Seeds, single degradations and sets of distinct degraded views.

``derive_seed`` turns parts like ``(run seed, example id, type, level, view index)`` into one seed;
``degrade`` and ``sample_views`` draw parameters from ``np.random.default_rng`` of such a seed and
apply them, so the trainer and the evaluation can recreate the very same degraded pixels anywhere.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from roma.degrade import ops
from roma.degrade.families import FAMILY_OPS
from roma.degrade.image import to_rgb
from roma.degrade.params import SEEN, Level, check_level, check_params, check_type, sample_params

OPS = {**ops.OPS, **FAMILY_OPS}
"""Every degradation type's function (:mod:`roma.degrade.ops`, :mod:`roma.degrade.families`) by name."""


def derive_seed(*parts: int | str | float) -> int:
    """A seed in ``[0, 2**63)`` from ``parts``, stable across processes, platforms and Python versions.

    Each part is encoded with its type (so ``1`` and ``"1"`` differ) and the parts are joined with a
    separator (so ``(1, 23)`` and ``(12, 3)`` differ), then hashed with BLAKE2b (8-byte digest).
    Parts must be ``int`` (numpy integers included), ``str`` or finite ``float``.
    """
    encoded = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (numbers.Integral, str, float)):
            raise TypeError(f"derive_seed parts must be int, str or float, got {part!r} ({type(part).__name__})")
        if isinstance(part, numbers.Integral):
            encoded.append(f"i:{int(part)}")
        elif isinstance(part, str):
            encoded.append(f"s:{part}")
        else:
            encoded.append(f"f:{float(part)!r}")
    digest = hashlib.blake2b("\x1f".join(encoded).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def apply(image: Image.Image | np.ndarray, name: str, params: dict[str, Any]) -> np.ndarray:
    """Degrade ``image`` by type ``name`` with ``params`` (from :func:`sample_params`): ``(H, W, 3) uint8``.

    ``image`` is any input :func:`roma.degrade.to_rgb` accepts; the output has the input's size and
    depends only on ``image``, ``name`` and ``params``.
    """
    name = check_type(name)
    params = check_params(name, params)
    return OPS[name](to_rgb(image), **params)


def degrade(image: Image.Image | np.ndarray, name: str, level: Level, *, seed: int) -> np.ndarray:
    """``apply(image, name, sample_params(name, level, np.random.default_rng(seed)))``."""
    params = sample_params(name, level, np.random.default_rng(_check_seed(seed)))
    return apply(image, name, params)


class View(NamedTuple):
    """One degraded view: the type, its logged parameters and the ``(H, W, 3) uint8`` pixels."""

    name: str
    params: dict[str, Any]
    image: np.ndarray


def sample_views(
    image: Image.Image | np.ndarray,
    k: int,
    *,
    seed: int,
    pool: Sequence[str] = SEEN,
    level: Level = "train",
) -> list[View]:
    """``k`` views of ``image``, each by a different type drawn from ``pool``, at ``level``.

    The types are drawn without replacement by ``np.random.default_rng(seed)``; view ``i`` of type
    ``name`` then equals ``degrade(image, name, level, seed=derive_seed(seed, "view", i, name, level))``.
    """
    seed = _check_seed(seed)
    pool = tuple(check_type(name) for name in pool)
    if len(set(pool)) != len(pool):
        raise ValueError(f"pool must not repeat a type, got {list(pool)}")
    level = check_level(level)
    unseen = [name for name in pool if name not in SEEN]
    if level == "train" and unseen:
        raise ValueError(
            f"level 'train' needs a pool of seen types ({', '.join(SEEN)}); {', '.join(unseen)} "
            "have no training range (use level 1, 2 or 3)"
        )
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int, got {k!r} ({type(k).__name__})")
    if not 0 <= k <= len(pool):
        raise ValueError(
            f"k={k} views of distinct types need 0 ≤ k ≤ {len(pool)} (the pool size); pool: {', '.join(pool)}"
        )
    rgb = to_rgb(image)
    names = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:k]]
    views = []
    for i, name in enumerate(names):
        rng = np.random.default_rng(derive_seed(seed, "view", i, name, level))
        params = sample_params(name, level, rng)
        views.append(View(name, params, OPS[name](rgb, **params)))
    return views


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int (e.g. from derive_seed), got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int (e.g. from derive_seed), got {seed}")
    return int(seed)
