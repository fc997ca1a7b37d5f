"""roma.degrade's other families (ImageNet-C, geometric, capture, document): pools, the input
contract, determinism across processes, level monotonicity, hand-checked behaviour, speed rows."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roma.degrade import (
    ALL_TYPES,
    FAMILY_LEVELS,
    IMAGENET_C,
    POOLS,
    SEEN,
    TYPES,
    UNSEEN,
    apply,
    check_params,
    check_pool,
    degrade,
    describe,
    sample_params,
)
from roma.degrade.params import expand_pools
from roma.degrade.sample import sample_chart

NEW_TYPES = tuple(name for name in ALL_TYPES if name not in TYPES)
ROOT = Path(__file__).resolve().parents[1]


def _image(height, width, seed=0):
    """A ``(H, W, 3) uint8`` image with flat blocks, edges and some texture."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 6 + 2, width // 6 + 2, 3)).astype(np.float64)
    image = np.repeat(np.repeat(blocks, 6, axis=0), 6, axis=1)[:height, :width] + rng.normal(0, 10, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- pools


def test_pools_and_families():
    assert list(POOLS) == ["seen", "unseen", "imagenet-c", "geometric", "capture", "document", "all"]
    assert POOLS["seen"] == SEEN and POOLS["unseen"] == UNSEEN
    assert ALL_TYPES[:9] == TYPES and len(ALL_TYPES) == len(set(ALL_TYPES)) == 31
    assert set(ALL_TYPES) == {name for pool in POOLS.values() for name in pool}
    # ImageNet-C's 15 corruptions and its 4 extras; impulse noise, pixelate and JPEG are roma's own types
    assert len(IMAGENET_C) == 19 and {"salt_pepper", "pixelate", "jpeg", "motion_blur"} <= set(IMAGENET_C)
    assert POOLS["geometric"] == ("rotate", "perspective", "resample")
    assert POOLS["capture"] == ("low_light", "glare", "overexposure")
    assert POOLS["document"] == ("scan_skew", "ink_bleed", "binarize", "moire")
    assert set(FAMILY_LEVELS) == set(NEW_TYPES)


def test_check_pool():
    assert check_pool("geometric") == ("rotate", "perspective", "resample")
    assert check_pool(["fog", "jpeg"]) == ("fog", "jpeg")
    assert expand_pools(["capture", "fog", "glare"]) == ("low_light", "glare", "overexposure", "fog")
    with pytest.raises(ValueError, match=r"unknown degradation pool 'weather'; valid pools: seen, unseen, imagenet-c"):
        check_pool("weather")
    with pytest.raises(ValueError, match=r"unknown degradation type 'rain'"):
        check_pool(["fog", "rain"])
    with pytest.raises(ValueError, match=r"non-empty list of distinct types, got \['fog', 'fog'\]"):
        check_pool(["fog", "fog"])


@pytest.mark.parametrize("name", NEW_TYPES)
def test_params_are_logged_checked_and_have_no_training_range(name):
    for level in (1, 2, 3):
        params = sample_params(name, level, np.random.default_rng(level))
        assert json.loads(json.dumps(params)) == params
        assert all(type(v) in (int, float) for v in params.values())
        assert check_params(name, params) is params
        assert describe(name, params).isascii() and len(describe(name, params)) <= 40
        fixed = {k: v for k, v in FAMILY_LEVELS[name][level - 1].items() if k in params}
        if name not in ("rotate", "scan_skew"):  # their level fixes |angle|, the sign is drawn
            assert {k: params[k] for k in fixed} == fixed
    with pytest.raises(ValueError, match=rf"'{name}' is not a seen type and has no training range"):
        sample_params(name, "train", np.random.default_rng(0))


def test_random_parts_are_drawn_in_their_ranges():
    rng = np.random.default_rng(0)
    angles = [sample_params("rotate", 3, rng)["angle"] for _ in range(200)]
    assert set(angles) == {-30.0, 30.0}
    corners = np.array([list(sample_params("perspective", 2, rng).values()) for _ in range(200)])  # (200, 8)
    assert corners.shape == (200, 8) and corners.min() >= 0 and 0.095 < corners.max() <= 0.10
    skews = [sample_params("scan_skew", 1, rng) for _ in range(200)]
    assert {abs(s["angle"]) for s in skews} == {1.0} and max(abs(s["shift_x_at_448"]) for s in skews) <= 2.0
    snow = [sample_params("snow", 1, rng)["angle"] for _ in range(200)]
    assert -135 <= min(snow) and max(snow) <= -45


# ------------------------------------------------------------------------------------------ contract


# Size, dtype and input kept: tests/test_degrade.py::test_every_type_and_level_keeps_size_dtype_and_input.


@pytest.mark.parametrize("name", NEW_TYPES)
def test_distance_to_the_clean_image_grows_with_the_level(name):
    chart = sample_chart(224)
    for seed in (0, 1):
        errors = [np.abs(degrade(chart, name, lv, seed=seed).astype(np.int16) - chart).mean() for lv in (1, 2, 3)]
        assert 0 < errors[0] < errors[1] < errors[2], (name, seed, errors)


def test_seeded_types_differ_between_seeds_and_repeat_within_one():
    image = _image(224, 240)  # spatial parameters scale: at 48 px glass blur's 2-px shuffle rounds to 0
    seeded = [name for name in NEW_TYPES if name in ("rotate", "perspective", "glare", "scan_skew", "moire", "snow")
              or "noise_seed" in sample_params(name, 2, np.random.default_rng(0))]
    assert len(seeded) == 14
    for name in seeded:
        assert not np.array_equal(degrade(image, name, 2, seed=1), degrade(image, name, 2, seed=2)), name
        assert degrade(image, name, 2, seed=1).tobytes() == degrade(image.copy(), name, 2, seed=1).tobytes()


def test_same_bytes_in_another_process():
    code = (
        "import hashlib, json, numpy as np\n"
        "from roma.degrade import ALL_TYPES, TYPES, degrade\n"
        "from roma.degrade.sample import sample_chart\n"
        "img = sample_chart(96)[:, :80]\n"
        "print(json.dumps({n: [hashlib.sha256(degrade(img, n, lv, seed=11).tobytes()).hexdigest()[:16]"
        " for lv in (1, 2, 3)] for n in ALL_TYPES if n not in TYPES}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    theirs = json.loads(result.stdout)
    image = sample_chart(96)[:, :80]
    assert theirs == {n: [_digest(degrade(image, n, lv, seed=11)) for lv in (1, 2, 3)] for n in NEW_TYPES}


# ---------------------------------------------------------------------------- hand-checked behaviour


def test_identity_settings_return_the_image():
    image = _image(30, 41)
    zero_corners = dict.fromkeys(sample_params("perspective", 1, np.random.default_rng(0)), 0.0)
    assert np.array_equal(apply(image, "perspective", zero_corners), image)
    assert np.array_equal(apply(image, "rotate", {"angle": 0.0}), image)
    assert np.array_equal(apply(image, "scan_skew", {"angle": 0.0, "shift_x_at_448": 0.0, "shift_y_at_448": 0.0}), image)
    assert np.array_equal(apply(image, "resample", {"factor": 1.0}), image)
    assert np.array_equal(apply(image, "zoom_blur", {"max_zoom": 1.0, "steps": 5}), image)
    assert np.array_equal(apply(image, "contrast", {"factor": 1.0}), image)
    assert np.array_equal(apply(image, "overexposure", {"gain": 1.0}), image)
    assert np.array_equal(apply(image, "ink_bleed", {"bleed_at_448": 0.0, "show_through": 0.0}), image)


def test_contrast_brightness_and_saturate_by_hand():
    image = np.array([[[0, 100, 200], [100, 100, 100]]], dtype=np.uint8)  # (1, 2, 3)
    # channel means (50, 100, 150); (x − m)·0.2 + m
    assert apply(image, "contrast", {"factor": 0.2}).tolist() == [[[40, 100, 160], [60, 100, 140]]]
    # v = 200/255 → min(v + 0.3, 1) = 1: the pixel scales by 255/200; grey 100 → 100 + 76.5 = 176.5 → 176
    assert apply(image, "brightness", {"delta": 0.3}).tolist() == [[[0, 128, 255], [176, 176, 176]]]
    black = np.zeros((1, 1, 3), dtype=np.uint8)
    assert apply(black, "brightness", {"delta": 0.5}).tolist() == [[[128, 128, 128]]]  # 127.5 → 128
    # saturation 0.5 → 1: the smallest channel drops to 0, the others keep their place between
    assert apply(image, "saturate", {"factor": 2.0, "offset": 0.0}).tolist() == [[[0, 100, 200], [100, 100, 100]]]
    pastel = np.array([[[100, 150, 200]]], dtype=np.uint8)  # v 200/255, s 0.5
    assert apply(pastel, "saturate", {"factor": 2.0, "offset": 0.0}).tolist() == [[[0, 100, 200]]]


def test_overexposure_and_low_light_in_linear_light():
    grey = np.full((4, 4, 3), 128, dtype=np.uint8)
    # (128/255)^2.2 · 3 = 0.6582 → ^(1/2.2) = 0.8268 → 210.8 → 211; white stays white
    assert set(apply(grey, "overexposure", {"gain": 3.0}).ravel().tolist()) == {211}
    assert set(apply(np.full((2, 2, 3), 255, np.uint8), "overexposure", {"gain": 3.0}).ravel().tolist()) == {255}
    # almost no noise (many photons, no read noise): 255 · 0.25^(1/2.2) = 135.8 for white
    params = {"exposure": 0.25, "photons": 1e6, "read_noise": 0.0, "noise_seed": 0}
    out = apply(np.full((8, 8, 3), 255, np.uint8), "low_light", params)
    assert abs(float(out.mean()) - 135.8) <= 0.5


def test_shot_noise_is_poisson():
    flat = np.full((128, 128, 3), 51, dtype=np.uint8)  # 0.2 on [0, 1]
    out = apply(flat, "shot_noise", {"photons": 60.0, "noise_seed": 3}).astype(np.float64) / 255
    # Poisson(12) / 60: mean 0.2, std sqrt(12) / 60 = 0.0577 (rounding to grey levels adds ~0.001)
    assert abs(out.mean() - 0.2) < 0.002 and abs(out.std() - 0.0577) < 0.002


def test_binarize_is_black_and_white_and_grey():
    out = degrade(_image(40, 50), "binarize", 3, seed=0)
    assert set(np.unique(out).tolist()) <= {0, 255}
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_geometric_fill_colours():
    white_page = np.full((64, 64, 3), 200, dtype=np.uint8)
    skewed = apply(white_page, "scan_skew", {"angle": 5.0, "shift_x_at_448": 0.0, "shift_y_at_448": 0.0})
    rotated = apply(white_page, "rotate", {"angle": 30.0})
    assert skewed[0, 0].tolist() == [255, 255, 255] and rotated[0, 0].tolist() == [0, 0, 0]
    assert skewed[32, 32].tolist() == rotated[32, 32].tolist() == [200, 200, 200]


def test_spatial_parameters_scale_with_the_short_side():
    small, large = sample_chart(112), sample_chart(448)
    for name in ("defocus_blur", "elastic_transform", "ink_bleed"):
        a = degrade(small, name, 3, seed=1).astype(np.int16) - small
        b = degrade(large, name, 3, seed=1).astype(np.int16) - large
        # the same draw blurs / bends the same fraction of the picture: mean |change| within a factor 1.6
        ratio = np.abs(a).mean() / np.abs(b).mean()
        assert 1 / 1.6 < ratio < 1.6, (name, ratio)


# ---------------------------------------------------------------------------------------- speed rows


def test_every_type_has_a_speed_row():
    spec = importlib.util.spec_from_file_location("degrade_speed", ROOT / "benchmarks" / "degrade_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert [case.name for case in module.CASES] == list(ALL_TYPES)
    assert all(case.level in (1, 2, 3) for case in module.CASES if case.name in NEW_TYPES)
    assert module.main(["--images", "1", "--size", "64", "--runs", "1", "--types", "fog", "moire"]) == 0
