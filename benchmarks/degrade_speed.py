"""Speed of roma.degrade against albumentations 2.0.8 and imagecorruptions 1.1.2, in images/s.

32 RGB 512×512 images, one thread (``cv2.setNumThreads(1)``), each type at ImageNet-C severity 3
(the speed anchors of the degradation spec), the same pixel parameters for every library. Each run
times every library over all images, in an order that rotates from run to run (A/B/C, B/C/A, …), so
that load from other processes hits all of them alike; the table shows the median over runs and the
ratio roma / other, and the geometric mean of the ratios over the types each library has. Ratios are
given by the wall clock and by the process's CPU time: on a busy machine the wall clock also counts
time spent waiting for a core, the CPU time only the work done. Where the
two compute the same thing (jpeg, pixelate, gaussian_blur, motion_blur) it also prints the largest
difference to imagecorruptions in grey levels. The other families' rows (the rest of ImageNet-C,
geometric, capture, document) draw roma's parameters at the level matching ImageNet-C severity 3 per
image; the other libraries run their closest transform (listed in each row), so those ratios compare
cost, not identical pixels; a type no library has is timed for roma alone.

The compared libraries are not roma dependencies; install them into a separate venv:

    python3 -m venv benchmarks/.venv-bench
    benchmarks/.venv-bench/bin/pip install --no-deps -e .
    benchmarks/.venv-bench/bin/pip install numpy==2.4.6 pillow==13.0.0 opencv-python-headless==5.0.0.93 \\
        albumentations==2.0.8 'setuptools<81' scikit-image==0.26.0 scipy==1.17.1
    benchmarks/.venv-bench/bin/pip install --no-deps imagecorruptions==1.1.2
    benchmarks/.venv-bench/bin/python benchmarks/degrade_speed.py

``--no-deps`` keeps torch & co. out (roma.degrade needs only numpy, Pillow and OpenCV) and stops
imagecorruptions from pulling ``opencv-python``, whose ``cv2`` would replace the headless build.
``setuptools<81`` provides the ``pkg_resources`` imagecorruptions imports. Its ``gaussian_blur``
passes ``multichannel=True``, which scikit-image ≥ 0.19 no longer accepts: this script shims that
call to ``channel_axis=-1`` (same result). Without either library the script still times roma.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from roma.degrade import ALL_TYPES, apply, derive_seed, sample_params
from roma.degrade.params import PARAM_BOUNDS
from roma.degrade.sample import sample_chart

R512 = 512 / 448  # roma's spatial parameters are given at a 448-px short side


@dataclass(frozen=True)
class Case:
    """One row of the table: roma's parameters and the matching calls of the other libraries."""

    name: str
    setting: str
    params: dict[str, Any]
    albumentations: Callable[[Any], Any] | None  # module -> transform, or None when it lacks the type
    imagecorruptions: str | None  # its corruption name (called at severity 3), or None
    compare: bool = False  # print max |roma - imagecorruptions|
    level: int | None = None  # draw roma's parameters at this level per image instead of ``params``


CASES = [
    Case("gaussian_noise", "σ 0.18", {"sigma": 0.18},
         lambda A: A.GaussNoise(std_range=(0.18, 0.18), mean_range=(0.0, 0.0), per_channel=True, p=1.0),
         "gaussian_noise"),
    Case("gaussian_blur", "σ 3 px", {"sigma_at_448": 3 / R512},
         lambda A: A.GaussianBlur(sigma_limit=(3.0, 3.0), blur_limit=0, p=1.0), "gaussian_blur", compare=True),
    Case("jpeg", "quality 15", {"quality": 15},
         lambda A: A.ImageCompression(compression_type="jpeg", quality_range=(15, 15), p=1.0),
         "jpeg_compression", compare=True),
    Case("downscale", "factor 0.4", {"factor": 0.4},
         lambda A: A.Downscale(scale_range=(0.4, 0.4),
                               interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=1.0),
         None),
    Case("motion_blur", "(15, 8) px", {"radius_at_448": 15 / R512, "sigma_at_448": 8 / R512},
         lambda A: A.MotionBlur(blur_limit=(31, 31), p=1.0), "motion_blur", compare=True),
    Case("salt_pepper", "amount 0.09", {"amount": 0.09},
         lambda A: A.SaltAndPepper(amount=(0.09, 0.09), salt_vs_pepper=(0.5, 0.5), p=1.0), "impulse_noise"),
    Case("speckle_noise", "c 0.35", {"sigma": 0.35},
         lambda A: A.MultiplicativeNoise(multiplier=(1 - 0.35 * math.sqrt(3), 1 + 0.35 * math.sqrt(3)),
                                         per_channel=True, elementwise=True, p=1.0),
         "speckle_noise"),
    Case("posterize", "3 bits", {"bits": 3}, lambda A: A.Posterize(num_bits=3, p=1.0), None),
    Case("pixelate", "factor 0.4", {"factor": 0.4},
         lambda A: A.Downscale(scale_range=(0.4, 0.4),
                               interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_NEAREST}, p=1.0),
         "pixelate", compare=True),
    # The other families: roma at the level that matches ImageNet-C severity 3 where it has the type
    # (each image draws its own parameters: seeds, angles, positions), the others at severity 3.
    Case("shot_noise", "L2 (sev 3)", {}, lambda A: A.ShotNoise(scale_range=(1 / 12, 1 / 12), p=1.0), "shot_noise",
         level=2),
    Case("defocus_blur", "L2 (sev 3)", {}, lambda A: A.Defocus(radius=(6, 6), alias_blur=(0.5, 0.5), p=1.0),
         "defocus_blur", level=2),
    # imagecorruptions' glass blur swaps pixels in a Python loop (seconds per 512² image): not timed here
    Case("glass_blur", "L2 (sev 3)", {}, lambda A: A.GlassBlur(sigma=1.0, max_delta=2, iterations=3, p=1.0),
         None, level=2),
    Case("zoom_blur", "L2 (sev 3)", {},
         lambda A: A.ZoomBlur(max_factor=(1.2, 1.2), step_factor=(0.02, 0.02), p=1.0), "zoom_blur", level=2),
    Case("snow", "L2 (sev 3)", {}, lambda A: A.RandomSnow(p=1.0), "snow", level=2),
    Case("frost", "L2 (sev 3)", {}, None, "frost", level=2),
    Case("fog", "L2 (sev 3)", {}, lambda A: A.RandomFog(p=1.0), "fog", level=2),
    Case("brightness", "L2 (sev 3)", {},
         lambda A: A.RandomBrightnessContrast(brightness_limit=(0.3, 0.3), contrast_limit=(0, 0), p=1.0),
         "brightness", level=2),
    Case("contrast", "L2 (sev 3)", {},
         lambda A: A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=(-0.8, -0.8), p=1.0),
         "contrast", level=2),
    Case("elastic_transform", "L2", {}, lambda A: A.ElasticTransform(alpha=30, sigma=8, p=1.0),
         "elastic_transform", level=2),
    Case("spatter", "L2 (sev 3)", {}, lambda A: A.Spatter(mode="mud", p=1.0), "spatter", level=2),
    Case("saturate", "L1 (sev 3)", {}, lambda A: A.ColorJitter(brightness=0, contrast=0, saturation=(2, 2), hue=0,
                                                                p=1.0), "saturate", level=1),
    Case("rotate", "L2 (15°)", {}, lambda A: A.Rotate(limit=(15, 15), border_mode=cv2.BORDER_CONSTANT, p=1.0),
         None, level=2),
    Case("perspective", "L2 (0.1)", {}, lambda A: A.Perspective(scale=(0.1, 0.1), keep_size=True, p=1.0), None,
         level=2),
    Case("resample", "L2 (0.33)", {},
         lambda A: A.Downscale(scale_range=(0.33, 0.33),
                               interpolation_pair={"downscale": cv2.INTER_NEAREST, "upscale": cv2.INTER_CUBIC}, p=1.0),
         None, level=2),
    Case("low_light", "L2", {}, None, None, level=2),
    Case("glare", "L2", {}, lambda A: A.RandomSunFlare(p=1.0), None, level=2),
    Case("overexposure", "L2", {}, None, None, level=2),
    Case("scan_skew", "L2", {}, None, None, level=2),
    Case("ink_bleed", "L2", {}, None, None, level=2),
    Case("binarize", "L2", {}, None, None, level=2),
    Case("moire", "L2", {}, None, None, level=2),
]  # fmt: skip
assert [case.name for case in CASES] == list(ALL_TYPES)


def load_albumentations() -> Any | None:
    try:
        import albumentations
    except ImportError as err:
        print(f"albumentations not available ({err}); see this script's docstring to install 2.0.8")
        return None
    return albumentations


def load_imagecorruptions() -> Callable[..., np.ndarray] | None:
    try:
        import imagecorruptions
        import imagecorruptions.corruptions as corruptions
        from skimage.filters import gaussian
    except ImportError as err:
        print(f"imagecorruptions not available ({err}); see this script's docstring to install 1.1.2")
        return None

    def gaussian_shim(image: np.ndarray, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> np.ndarray:
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, *args, **kwargs)

    corruptions.gaussian = gaussian_shim  # scikit-image ≥ 0.19 dropped `multichannel`
    if "float_" not in np.__dict__:
        np.float_ = np.float64  # noqa: NPY201 — NumPy 2 dropped the alias its fog (plasma fractal) uses
    return imagecorruptions.corrupt


def make_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` different ``(size, size, 3) uint8`` images: the sample chart, shifted and tinted, with texture."""
    rng = np.random.default_rng(seed)
    chart = sample_chart(size).astype(np.float32)
    images = []
    for i in range(count):
        texture = cv2.GaussianBlur(rng.normal(0.0, 40.0, (size, size, 3)).astype(np.float32), (0, 0), 6)
        tint = rng.uniform(0.8, 1.0, 3).astype(np.float32)
        image = np.roll(chart, shift=(7 * i, 13 * i), axis=(0, 1)) * tint + texture
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def throughput(fn: Callable[[np.ndarray, int], Any], images: list[np.ndarray]) -> tuple[float, float]:
    """``(images/s by the wall clock, images/s by this process's CPU time)`` over one pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i, image in enumerate(images):
        fn(image, i)
    return len(images) / (time.perf_counter() - wall), len(images) / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32, help="number of images (default: 32)")
    parser.add_argument("--size", type=int, default=512, help="image side in px (default: 512)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per library and type (default: 7)")
    parser.add_argument("--types", nargs="+", default=list(ALL_TYPES), choices=ALL_TYPES, help="types to time")
    args = parser.parse_args(argv)
    if args.size != 512:
        print(f"note: the parameters are set for 512-px images; at {args.size} px roma's spatial parameters "
              "scale with the image while the other libraries' do not")  # fmt: skip
    cv2.setNumThreads(1)
    images = make_images(args.images, args.size)
    A = load_albumentations()
    corrupt = load_imagecorruptions()
    np.random.seed(0)  # noqa: NPY002 — imagecorruptions draws from numpy's global generator

    rows = []
    for case in (c for c in CASES if c.name in args.types):
        noise = "noise_seed" in PARAM_BOUNDS[case.name]
        params = [{**case.params, "noise_seed": i} if noise else dict(case.params) for i in range(len(images))]
        if case.name == "motion_blur":
            angles = np.random.default_rng(1).uniform(-45, 45, len(images))
            params = [{**p, "angle": float(a)} for p, a in zip(params, angles)]
        if case.level is not None:
            params = [sample_params(case.name, case.level, np.random.default_rng(derive_seed(0, i)))
                      for i in range(len(images))]  # fmt: skip
        fns: dict[str, Callable[[np.ndarray, int], Any]] = {
            "roma": lambda image, i, name=case.name, params=params: apply(image, name, params[i])
        }
        if A is not None and case.albumentations is not None:
            try:
                transform = case.albumentations(A)
            except (AttributeError, TypeError, ValueError) as err:  # another albumentations version
                print(f"  albumentations: cannot build the {case.name} transform ({err})")
            else:
                fns["albumentations"] = lambda image, i, t=transform: t(image=image)["image"]
        if corrupt is not None and case.imagecorruptions is not None:
            fns["imagecorruptions"] = lambda image, i, n=case.imagecorruptions: corrupt(image, 3, n)
        for lib, fn in list(fns.items()):  # warm-up: caches, lazy imports, OpenCV kernels
            try:
                throughput(fn, images[:2])
            except Exception as err:  # noqa: BLE001 — another library's bug must not stop the table
                print(f"  {lib} failed on {case.name} ({type(err).__name__}: {err}); row without it")
                del fns[lib]
        timings: dict[str, list[tuple[float, float]]] = {lib: [] for lib in fns}
        order = list(fns)
        for run in range(args.runs):
            for lib in order[run % len(order) :] + order[: run % len(order)]:
                timings[lib].append(throughput(fns[lib], images))
        speed = {lib: statistics.median(wall for wall, _ in values) for lib, values in timings.items()}
        cpu_speed = {lib: statistics.median(cpu for _, cpu in values) for lib, values in timings.items()}
        delta = agreement(case, images[:4], corrupt) if case.compare and corrupt is not None else None
        rows.append((case, speed, cpu_speed, delta))
        print(f"  timed {case.name}: " + ", ".join(f"{lib} {s:.0f}/s" for lib, s in speed.items()), flush=True)

    print_table(rows, args)
    return 0


def agreement(case: Case, images: list[np.ndarray], corrupt: Callable[..., np.ndarray]) -> int:
    """Largest |roma − imagecorruptions| in grey levels over ``images``, with the same parameters."""
    worst = 0
    for i, image in enumerate(images):
        params = dict(case.params)
        if case.name == "motion_blur":
            # imagecorruptions draws its angle from numpy's global generator: draw the same one first
            np.random.seed(100 + i)  # noqa: NPY002
            params["angle"] = float(np.random.uniform(-45, 45))  # noqa: NPY002
            np.random.seed(100 + i)  # noqa: NPY002
        ours = apply(image, case.name, params).astype(np.int16)
        theirs = corrupt(image, 3, case.imagecorruptions).astype(np.int16)
        worst = max(worst, int(np.abs(ours - theirs).max()))
    return worst


def print_table(rows: list[tuple[Case, dict[str, float], dict[str, float], int | None]], args: argparse.Namespace) -> None:
    print(f"\n{args.images} RGB {args.size}×{args.size} images, 1 thread, median of {args.runs} alternating runs; "
          "images/s by the wall clock, ratio = roma / other by the wall clock and (in brackets) by CPU time\n")  # fmt: skip
    print("| type | setting | roma | albumentations 2.0.8 | ratio | imagecorruptions 1.1.2 | ratio | max abs diff to IC |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {"albumentations": [], "imagecorruptions": []}
    cpu_ratios: dict[str, list[float]] = {"albumentations": [], "imagecorruptions": []}
    for case, speed, cpu_speed, delta in rows:
        cells = [case.name, case.setting, f"{speed['roma']:.0f}"]
        for lib in ("albumentations", "imagecorruptions"):
            if lib in speed:
                ratios[lib].append(speed["roma"] / speed[lib])
                cpu_ratios[lib].append(cpu_speed["roma"] / cpu_speed[lib])
                cells += [f"{speed[lib]:.0f}", f"{ratios[lib][-1]:.2f}× ({cpu_ratios[lib][-1]:.2f}×)"]
            else:
                cells += ["—", "—"]
        cells.append("—" if delta is None else str(delta))
        print("| " + " | ".join(cells) + " |")
    print()
    for lib, values in ratios.items():
        if values:
            print(f"geometric mean of roma / {lib} over its {len(values)} types: {geometric_mean(values):.2f}× "
                  f"(by CPU time {geometric_mean(cpu_ratios[lib]):.2f}×)")  # fmt: skip


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


if __name__ == "__main__":
    raise SystemExit(main())
