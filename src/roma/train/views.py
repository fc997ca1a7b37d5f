"""The degraded views of a training step (method.md §2): sampling, processing, and the naive-aug rollouts.

Pure functions of ``(args, step, examples, image processor)``: the same arguments give the same pixels on
every process and after a resume. ``K`` degraded views of every prompt image, of ``K`` distinct seen types
(drawn once per step and shared by the batch, ``view_sampling="step"``, or per image) with
training-range parameters, seeded by ``derive_seed(view_seed, step, example id, view index, type)``. They
are processed by the policy's image processor; a view must give the clean image's ``image_grid_thw``
(same vision-token count, so the same token sequence), else ``RuntimeError``. They travel with their
sample through TRL's shuffle and split as per-sample entries (see :data:`ROMA_KEYS`).
"""

from typing import Any

import numpy as np
import torch
from PIL import Image

from roma.degrade import apply, derive_seed, sample_params, sample_views
from roma.train.config import RomaConfig

# Per-sample entries RomaTrainer adds to TRL's batch. Each is a tensor or a list whose first dimension
# is the sample, so TRL's shuffle_sequence_dict / split_tensor_dict move them with their sample.
ROMA_KEYS: tuple[str, ...] = (
    "roma_success",  # (N,) bool, m_i
    "roma_view_pixel_values",  # N tensors (K, rows_i, D): the views of sample i's image, processed
    "roma_view_group",  # (N,) long: samples with the same value show the same views (one prompt's G samples)
    "roma_view_types",  # N tuples of K degradation type names
    "roma_view_params",  # N tuples of K parameter dicts (replayable with roma.degrade.apply)
    "roma_aux_view",  # (N,) long, the view j of the auxiliary policy gradient (§5)
)

View = tuple[str, dict[str, Any], np.ndarray]  # (type name, parameters, H×W×3 uint8 pixels)


def step_view_plan(args: RomaConfig, step: int) -> tuple[list[str] | None, int | None]:
    """With ``view_sampling="step"``: the step's K distinct types and its auxiliary view; else (None, None)."""
    if args.view_sampling != "step":
        return None, None
    pool, k = args.view_pool, args.roma_views
    order = np.random.default_rng(derive_seed(args.view_seed, step, "types")).permutation(len(pool))
    aux_view = int(np.random.default_rng(derive_seed(args.view_seed, step, "aux")).integers(k))
    return [pool[i] for i in order[:k]], aux_view


def degraded_views(
    args: RomaConfig, image: Image.Image | np.ndarray, example_id: str, step: int, types: list[str] | None
) -> list[View]:
    """K (type, params, pixels) views of one image: of the given types, or drawn for this example."""
    level = args.degradation_level
    if types is None:
        seed = derive_seed(args.view_seed, step, example_id)
        views = sample_views(image, args.roma_views, seed=seed, pool=args.view_pool, level=level)
        return [(view.name, view.params, view.image) for view in views]
    out = []
    for k, name in enumerate(types):
        rng = np.random.default_rng(derive_seed(args.view_seed, step, example_id, k, name))
        params = sample_params(name, level, rng)
        out.append((name, params, apply(image, name, params)))
    return out


def process_views(image_processor: Any, views: list[View], clean_grid: torch.Tensor, example_id: str) -> torch.Tensor:
    """Run the views through the image processor: (K, rows, D) pixel rows, kept on the CPU until used.

    ``clean_grid``: (3,) the clean image's ``image_grid_thw``; ``RuntimeError`` when a view's grid differs.
    """
    processed = image_processor(images=[pixels for _, _, pixels in views], return_tensors="pt")
    grids = processed["image_grid_thw"]  # (K, 3)
    clean_grid = clean_grid.to(grids.device)
    if not bool((grids == clean_grid).all()):
        raise RuntimeError(
            f"the degraded views {[name for name, _, _ in views]} of example {example_id!r} have image_grid_thw "
            f"{grids.tolist()}, the clean image {clean_grid.tolist()}: a view must keep the image's pixel size, "
            "so that it has the same vision tokens"
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
) -> dict[str, Any]:
    """The per-sample ROMA entries (:data:`ROMA_KEYS` but the success mask) of a local generation batch.

    ``examples``: the N dataset rows of the batch (a prompt's G samples repeat its row); ``image_grid_thw``:
    (N, 3), the clean grid of each sample's single image. The samples of one example id share its views
    (computed once) and its ``roma_view_group``, the position of the id's first sample in ``examples``.
    """
    types, step_aux_view = step_view_plan(args, step)
    per_example: dict[str, tuple[torch.Tensor, tuple[str, ...], tuple[dict[str, Any], ...], int, int]] = {}
    entries = []
    for i, example in enumerate(examples):
        example_id = _example_id(example)
        if example_id not in per_example:
            views = degraded_views(args, _example_image(example), example_id, step, types)
            pixel_values = process_views(image_processor, views, image_grid_thw[i], example_id)  # (K, rows, D)
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
    """naive_aug: each example's image replaced by one training-range view (shared by its G rollouts)."""
    degraded = []
    for example in examples:
        example_id = _example_id(example)
        seed = derive_seed(args.view_seed, step, example_id, "naive_aug")
        (view,) = sample_views(_example_image(example), 1, seed=seed, pool=args.view_pool, level=args.degradation_level)
        image = Image.fromarray(view.image)
        if "images" in example:
            degraded.append({**example, "images": [image]})
        else:
            degraded.append({**example, "image": image})
    return degraded


def _example_id(example: dict[str, Any]) -> str:
    """The example's ``id`` (str), which seeds its views; ``ValueError`` without one."""
    if "id" not in example:
        raise ValueError(
            f"degraded views are seeded by the example id, but the dataset row has no 'id' column (columns: "
            f"{sorted(example)}); add a unique id per example"
        )
    return str(example["id"])


def _example_image(example: dict[str, Any]) -> Image.Image | np.ndarray:
    """The single image of a dataset row (``image``, or a one-element ``images``)."""
    if "images" in example:
        images = example["images"]
        if images is None or len(images) != 1:
            raise ValueError(
                f"ROMA degrades one image per prompt; example {example.get('id')!r} has "
                f"{0 if images is None else len(images)} images"
            )
        return images[0]
    if example.get("image") is None:
        raise ValueError(f"example {example.get('id')!r} has no image to degrade")
    return example["image"]
