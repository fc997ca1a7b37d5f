"""The degraded views of a training step (method.md §2): sampling, processing, and the naive-aug rollouts.

Pure functions of ``(args, step, examples, image processor)``: the same arguments give the same pixels on
every process and after a resume. ``K`` degraded views of every prompt image, of ``K`` distinct seen types
(drawn once per step and shared by the batch, ``view_sampling="step"``, or per image) with
training-range parameters, seeded by ``derive_seed(view_seed, step, example id, view index, type)``. A
prompt with several images: view k degrades each of them by its one type, with parameters and noise drawn
per image (image ``j > 0`` from the seed extended by ``("image", j)``). Views reach the policy's image
processor as RGB PIL images (never as arrays, whose channel axis a processor may guess wrong for a 3-px tall
image); each view image must give its clean image's ``image_grid_thw`` (same vision-token count, so the same
token sequence), else ``RuntimeError``. They travel with their
sample through TRL's shuffle and split as per-sample entries (see :data:`ROMA_KEYS`).
"""

from typing import Any

import numpy as np
import torch
from PIL import Image

from roma.data.images import row_images, with_images
from roma.degrade import apply, derive_seed, sample_params, sample_views
from roma.train.config import RomaConfig

# Per-sample entries RomaTrainer adds to TRL's batch. Each is a tensor or a list whose first dimension
# is the sample, so TRL's shuffle_sequence_dict / split_tensor_dict move them with their sample.
ROMA_KEYS: tuple[str, ...] = (
    "roma_success",  # (N,) bool, m_i
    "roma_view_pixel_values",  # N tensors (K, rows_i, D): the views of sample i's images, processed (rows of
    # its n_i images, in order)
    "roma_view_group",  # (N,) long: samples with the same value show the same views (one prompt's G samples)
    "roma_view_types",  # N tuples of K degradation type names ("a+b": per image, view_image_types="independent")
    "roma_view_params",  # N tuples of K parameter dicts (replayable with roma.degrade.apply); for a prompt of
    # several images, K tuples of one dict per image
    "roma_aux_view",  # (N,) long, the view j of the auxiliary policy gradient (§5)
)

View = tuple[str, Any, Any]  # (type name, parameters, H×W×3 uint8 pixels); tuples of them per image for n > 1


def step_view_plan(args: RomaConfig, step: int) -> tuple[list[str] | None, int | None]:
    """With ``view_sampling="step"``: the step's K distinct types and its auxiliary view; else (None, None)."""
    if args.view_sampling != "step":
        return None, None
    pool, k = args.view_pool, args.roma_views
    order = np.random.default_rng(derive_seed(args.view_seed, step, "types")).permutation(len(pool))
    aux_view = int(np.random.default_rng(derive_seed(args.view_seed, step, "aux")).integers(k))
    return [pool[i] for i in order[:k]], aux_view


def degraded_views(
    args: RomaConfig, images: list[Image.Image], example_id: str, step: int, types: list[str] | None
) -> list[View]:
    """K views of a prompt's images: of the given types, or drawn for this example. View k degrades image 0
    by its type; every other image ``j`` by the same type (``view_image_types="shared"``) or by the k-th of
    its own K distinct types (``"independent"``, drawn from the view seed extended by ``("image", j)``). The
    parameters and noise of image ``j > 0`` are drawn from the view's seed extended by ``("image", j)``, so
    image 0 is degraded as a prompt's only image would be."""
    level = args.degradation_level
    if types is None:
        seed = derive_seed(args.view_seed, step, example_id)
        first = sample_views(images[0], args.roma_views, seed=seed, pool=args.view_pool, level=level)
        names = _image_types(args, [view.name for view in first], seed, len(images))
        out = []
        for k, view in enumerate(first):
            params, pixels = [view.params], [view.image]
            for j, image in enumerate(images[1:], start=1):
                rng = np.random.default_rng(derive_seed(seed, "image", j, "view", k, names[j][k], level))
                params.append(sample_params(names[j][k], level, rng))
                pixels.append(apply(image, names[j][k], params[-1]))
            out.append(_view([row[k] for row in names], params, pixels))
        return out
    names = _image_types(args, list(types), derive_seed(args.view_seed, step, example_id), len(images))
    out = []
    for k in range(len(types)):
        params, pixels = [], []
        for j, image in enumerate(images):
            extra = () if j == 0 else ("image", j)
            rng = np.random.default_rng(derive_seed(args.view_seed, step, example_id, k, names[j][k], *extra))
            params.append(sample_params(names[j][k], level, rng))
            pixels.append(apply(image, names[j][k], params[-1]))
        out.append(_view([row[k] for row in names], params, pixels))
    return out


def _image_types(args: RomaConfig, first: list[str], seed: int, num_images: int) -> list[list[str]]:
    """(n, K) the type of view k for image j: ``first`` for image 0 and, with ``view_image_types="shared"``,
    for every image; with ``"independent"`` image ``j > 0`` draws K distinct types of the pool."""
    names = [first]
    pool = args.view_pool
    for j in range(1, num_images):
        if args.view_image_types == "shared":
            names.append(first)
        else:
            order = np.random.default_rng(derive_seed(seed, "image", j, "types")).permutation(len(pool))
            names.append([pool[i] for i in order[: len(first)]])
    return names


def _view(names: list[str], params: list[dict[str, Any]], pixels: list[np.ndarray]) -> View:
    """A view of one image as ``(name, params, pixels)``, of several as ``(name, (params, ...), (pixels, ...))``;
    the name is the images' one type, or their types joined by ``+`` when they differ."""
    name = names[0] if len(set(names)) == 1 else "+".join(names)
    if len(pixels) == 1:
        return name, params[0], pixels[0]
    return name, tuple(params), tuple(pixels)


def _view_images(view: View) -> list[Image.Image]:
    """The degraded images of one view, as RGB PIL images (the processor never guesses a channel axis)."""
    pixels = view[2] if isinstance(view[2], tuple) else (view[2],)
    return [Image.fromarray(np.asarray(p, dtype=np.uint8), mode="RGB") for p in pixels]


def process_views(image_processor: Any, views: list[View], clean_grid: torch.Tensor, example_id: str) -> torch.Tensor:
    """Run the views through the image processor: (K, rows, D) pixel rows, kept on the CPU until used.

    ``clean_grid``: (n, 3) — or (3,) for one image — the ``image_grid_thw`` of the prompt's n clean images;
    ``rows`` is the sum of their rows, in image order. ``RuntimeError`` when a view's grid differs.
    """
    images = [image for view in views for image in _view_images(view)]  # K · n, view-major
    processed = image_processor(images=images, return_tensors="pt")
    grids = processed["image_grid_thw"]  # (K · n, 3)
    clean_grid = clean_grid.to(grids.device).reshape(-1, 3).repeat(len(views), 1)  # (K · n, 3)
    if grids.shape != clean_grid.shape or not bool((grids == clean_grid).all()):
        raise RuntimeError(
            f"the degraded views {[name for name, _, _ in views]} of example {example_id!r} have image_grid_thw "
            f"{grids.tolist()}, the clean images {clean_grid[: len(images) // len(views)].tolist()}: a view must keep "
            "the image's pixel size, so that it has the same vision tokens"
        )
    pixel_values = processed["pixel_values"]  # (K · rows, D)
    return pixel_values.view(len(views), -1, pixel_values.shape[-1])  # (K, rows, D)


def make_views(
    args: RomaConfig,
    step: int,
    examples: list[dict[str, Any]],
    image_grid_thw: torch.Tensor,
    image_processor: Any,
    device: torch.device | str = "cpu",
    num_images: list[int] | None = None,
) -> dict[str, Any]:
    """The per-sample ROMA entries (:data:`ROMA_KEYS` but the success mask) of a local generation batch.

    ``examples``: the N dataset rows of the batch (a prompt's G samples repeat its row), images already
    prepared (:func:`roma.data.images.prepare_row_images`); ``image_grid_thw``: (sum n_i, 3), the clean grids
    of every sample's images in order; ``num_images``: (N,) n_i, the images of each sample (default: one
    each). The samples of one example id share its views (computed once) and its ``roma_view_group``, the
    position of the id's first sample in ``examples``.
    """
    types, step_aux_view = step_view_plan(args, step)
    counts = [1] * len(examples) if num_images is None else list(num_images)
    offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
    per_example: dict[str, tuple[torch.Tensor, tuple[str, ...], tuple[Any, ...], int, int]] = {}
    entries = []
    for i, example in enumerate(examples):
        example_id = _example_id(example)
        if example_id not in per_example:
            images = _example_images(example)
            if len(images) != counts[i]:
                raise ValueError(f"example {example_id!r} has {len(images)} images, its prompt {counts[i]}")
            views = degraded_views(args, images, example_id, step, types)
            clean_grid = image_grid_thw[offsets[i] : offsets[i + 1]]  # (n_i, 3)
            pixel_values = process_views(image_processor, views, clean_grid, example_id)  # (K, rows, D)
            if step_aux_view is None:
                aux_seed = derive_seed(args.view_seed, step, example_id, "aux")
                aux_view = int(np.random.default_rng(aux_seed).integers(args.roma_views))
            else:
                aux_view = step_aux_view
            names = tuple(name for name, _, _ in views)
            params = tuple(view_params for _, view_params, _ in views)
            per_example[example_id] = (pixel_values, names, params, aux_view, i)
        entries.append(per_example[example_id])
    return {
        "roma_view_pixel_values": [entry[0] for entry in entries],
        "roma_view_group": torch.tensor([entry[4] for entry in entries], device=device),
        "roma_view_types": [entry[1] for entry in entries],
        "roma_view_params": [entry[2] for entry in entries],
        "roma_aux_view": torch.tensor([entry[3] for entry in entries], device=device),
    }


def degrade_rollout_images(args: RomaConfig, step: int, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """naive_aug: each example's images replaced by one training-range view (shared by its G rollouts); every
    image of a prompt by the view's type, image ``j > 0`` with parameters drawn from the seed and ``("image", j)``."""
    degraded = []
    for example in examples:
        example_id = _example_id(example)
        seed = derive_seed(args.view_seed, step, example_id, "naive_aug")
        images = _example_images(example)
        (view,) = sample_views(images[0], 1, seed=seed, pool=args.view_pool, level=args.degradation_level)
        pixels = [view.image]
        for j, image in enumerate(images[1:], start=1):
            rng = np.random.default_rng(derive_seed(seed, "image", j, "view", 0, view.name, args.degradation_level))
            pixels.append(apply(image, view.name, sample_params(view.name, args.degradation_level, rng)))
        degraded.append(with_images(example, [Image.fromarray(p) for p in pixels]))
    return degraded


def _example_id(example: dict[str, Any]) -> str:
    """The example's ``id`` (str), which seeds its views; ``ValueError`` without one."""
    if "id" not in example:
        raise ValueError(
            f"degraded views are seeded by the example id, but the dataset row has no 'id' column (columns: "
            f"{sorted(example)}); add a unique id per example"
        )
    return str(example["id"])


def _example_images(example: dict[str, Any]) -> list[Image.Image | np.ndarray]:
    """The images of a dataset row (``images``, or ``image``); ``ValueError`` naming the row without one."""
    images = row_images(example)
    if not images:
        raise ValueError(f"example {example.get('id')!r} has no image to degrade")
    return images
