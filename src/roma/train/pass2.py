"""Pass 2 of a ROMA step (method.md §3–§5, §7): the completions of pass 1 teacher-forced under degraded views.

A *pair* ``(k, i)`` is sequence ``i`` of the micro-batch with its image replaced by its view ``k``. Pass 2
runs only the pairs a term reads, and autograd only on those that receive gradient:

1. **Plan** (:func:`plan_pairs`, pure): which pairs run without autograd, which with it, and whether a
   selection comes in between — from the masks, the auxiliary views, ``K``, ``worst_case`` and whether
   parameters are sharded. :func:`selected_pairs` (pure) gives the pairs that run after the selection.
2. **Run** (:func:`run_pairs`): executes a plan with the forward passed in as a callable
   ``f(pairs) -> (M, T)`` (:func:`view_logps_fn` builds the trainer's) and the selection passed in as a
   callable (:func:`roma.losses.select_views`); :class:`PairLogps` collects the log-probs and places them
   into ``(K, N, T)`` tensors.

With ``worst_case`` ``"batch"`` / ``"sequence"`` and ``K > 1`` the auxiliary pair ``(j_i, i)`` of each
sequence runs with autograd and every other pair the penalty reads without; the selection reads both
(detached); then the selected pairs that have not run with autograd do. ``"token"`` / ``"mean"`` (and
``K = 1``) run every pair with autograd. Each pair runs at most once with and once without autograd.
With sharded parameters (ZeRO-3, FSDP) every forward gathers parameters collectively, so every process
must run the same forwards: the plan then covers every row and the selected pairs run with autograd
whether or not they are auxiliary pairs, so the number of forwards does not depend on the data.

Pass 2 never samples a token from a degraded image and never builds a full-vocabulary log-softmax:
log-probs come from TRL's fused LM head, which gathers the sampled tokens only.
"""

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

Pair = tuple[int, int]  # (view k, sequence i)
Forward = Callable[[list[Pair]], torch.Tensor]  # M pairs -> (M, T) log-probs


@dataclass(frozen=True)
class PairPlan:
    """Which pairs pass 2 runs before the selection; see :func:`plan_pairs`."""

    num_views: int  # K
    penalty_pairs: tuple[Pair, ...]  # every pair the penalty may read, view-major: (k, i) for k < K, i in rows
    aux_pairs: tuple[Pair, ...]  # (j_i, i) of every sequence L_aux reads
    detached: tuple[Pair, ...]  # run first, without autograd: inputs of the selection only
    with_grad: tuple[Pair, ...]  # run with autograd before the selection
    select: bool  # whether a one-view-per-sequence selection follows (then selected_pairs)
    uniform: bool  # sharded parameters: every row runs, the selected pairs always run again

    @property
    def penalty_rows(self) -> tuple[int, ...]:
        """The sequences the penalty's pairs cover, in order."""
        return tuple(i for k, i in self.penalty_pairs if k == 0)


def plan_pairs(
    penalty_mask: Sequence[bool],  # (N,) the sequences L_inv reads (m_i, or all)
    aux_mask: Sequence[bool],  # (N,) the sequences L_aux reads
    aux_view: Sequence[int],  # (N,) j_i, the auxiliary view of each sequence
    *,
    num_views: int,
    worst_case: str,
    penalty_on: bool,
    aux_on: bool,
    uniform: bool,
) -> PairPlan:
    """The pairs of one micro-batch's pass 2 up to the selection (pure; see the module docstring).

    ``penalty_on`` / ``aux_on``: whether λ_kl / λ_aux is non-zero (a term that is off reads no pair).
    ``uniform``: parameters are sharded, so every row runs whatever the masks say.
    """
    if not len(penalty_mask) == len(aux_mask) == len(aux_view):
        raise ValueError(
            f"penalty_mask, aux_mask and aux_view must have one entry per sequence, got lengths "
            f"{len(penalty_mask)}, {len(aux_mask)}, {len(aux_view)}"
        )
    if num_views < 1 or any(not 0 <= j < num_views for j in aux_view):
        raise ValueError(f"auxiliary views must lie in [0, K={num_views}), got {list(aux_view)}")

    def rows(mask: Sequence[bool]) -> list[int]:
        return [i for i, keep in enumerate(mask) if uniform or keep]

    aux_pairs = [(aux_view[i], i) for i in rows(aux_mask)] if aux_on else []
    penalty_rows = rows(penalty_mask) if penalty_on else []
    penalty_pairs = [(k, i) for k in range(num_views) for i in penalty_rows]
    select = num_views > 1 and worst_case in ("batch", "sequence") and bool(penalty_rows)
    if select:
        auxiliary = set(aux_pairs)
        detached = [pair for pair in penalty_pairs if pair not in auxiliary]
        with_grad = aux_pairs
    else:  # every pair with autograd, then the auxiliary pairs the penalty does not read
        passed = set(penalty_pairs)
        detached = []
        with_grad = penalty_pairs + [pair for pair in aux_pairs if pair not in passed]
    return PairPlan(
        num_views, tuple(penalty_pairs), tuple(aux_pairs), tuple(detached), tuple(with_grad), select, uniform
    )


def selected_pairs(plan: PairPlan, sequence_view: Sequence[int]) -> tuple[list[Pair], list[Pair]]:
    """``(selected, to_run)`` after the selection (pure): each penalty row's pair under its selected view
    ``sequence_view[i]`` (-1: the penalty reads none, so no pair — except with sharded parameters, where the
    row takes view 0, unused), and those of them that must still run with autograd."""
    selected = [(max(sequence_view[i], 0), i) for i in plan.penalty_rows if plan.uniform or sequence_view[i] >= 0]
    if plan.uniform:
        return selected, selected
    ran = set(plan.with_grad)
    return selected, [pair for pair in selected if pair not in ran]


class Pass2Logps(NamedTuple):
    """What :func:`run_pairs` returns."""

    with_grad: "PairLogps"  # every pair run with autograd
    selection: Any  # the selection callable's result (None without a selection)
    penalty_slots: list[tuple[int, Pair]]  # (slot, pair) the penalty reads: K slots, or slot 0 after a selection


def run_pairs(
    plan: PairPlan,
    forward: Forward,
    *,
    select: Callable[[torch.Tensor], Any],
    filler: torch.Tensor,
    no_grad: Callable[[], AbstractContextManager],
) -> Pass2Logps:
    """Execute ``plan``: the detached pairs inside ``no_grad()`` (first, while only the clean graph is
    held), then the autograd pairs; with a selection, ``select(views)`` on the detached ``(K, N, T)``
    log-probs (``filler`` (N, T) where no pair ran) must return an object with a ``sequence_view`` (N,)
    tensor (:class:`roma.losses.ViewSelection`), and the selected pairs of :func:`selected_pairs` run."""
    detached = PairLogps()  # every pair run, detached: what the selection reads
    if plan.detached:
        with no_grad():
            detached.add(list(plan.detached), forward(list(plan.detached)))  # (|detached|, T)
    values = forward(list(plan.with_grad))  # (|with_grad|, T)
    with_grad = PairLogps().add(list(plan.with_grad), values)
    slots = [(k, (k, i)) for k, i in plan.penalty_pairs]  # view k of row i in slot k
    if not plan.select:
        return Pass2Logps(with_grad, None, slots)
    detached.add(list(plan.with_grad), values.detach())
    selection = select(detached.place(slots, plan.num_views, filler))  # on (K, N, T)
    chosen, to_run = selected_pairs(plan, selection.sequence_view.tolist())
    with_grad.add(to_run, forward(to_run))
    return Pass2Logps(with_grad, selection, [(0, pair) for pair in chosen])


class PairLogps:
    """Teacher-forced log-probs of ``(view k, row i)`` pairs, gathered from one or more pass-2 calls.

    ``add(pairs, values)`` records the (M, T) ``values`` of M pairs (a later entry for a pair replaces an
    earlier one); ``place`` scatters recorded pairs into a ``(num, N, T)`` tensor, autograd included.
    """

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []  # (M_p, T) each
        self._row: dict[Pair, int] = {}  # pair -> row of torch.cat(_parts)
        self._size = 0

    def add(self, pairs: list[Pair], values: torch.Tensor) -> "PairLogps":
        if values.shape[0] != len(pairs):
            raise ValueError(f"got {values.shape[0]} rows of log-probs for {len(pairs)} pairs")
        self._parts.append(values)
        self._row.update({pair: self._size + position for position, pair in enumerate(pairs)})
        self._size += len(pairs)
        return self

    def __contains__(self, pair: Pair) -> bool:
        return pair in self._row

    def place(self, entries: list[tuple[int, Pair]], num: int, filler: torch.Tensor) -> torch.Tensor:
        """``(num, N, T)``: ``filler`` (N, T), detached, in every slot, and at ``[slot, i]`` the recorded
        log-probs of ``pair = (k, i)`` for each ``(slot, pair)`` of ``entries``."""
        out = filler.detach().unsqueeze(0).repeat(num, 1, 1)
        if not entries:
            return out
        device = filler.device
        slots = torch.tensor([slot for slot, _ in entries], device=device)
        rows = torch.tensor([pair[1] for _, pair in entries], device=device)
        positions = torch.tensor([self._row[pair] for _, pair in entries], device=device)
        return out.index_put((slots, rows), torch.cat(self._parts)[positions])


def view_logps_fn(
    inputs: dict[str, Any],
    *,
    model: Any,
    per_token_logps: Callable[..., torch.Tensor],
    prepare_input: Callable[[torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
    share_encoding: bool,
    view_batch_size: int | None,
) -> Callable[[list[Pair]], torch.Tensor]:
    """``f(pairs) -> (M, T)``: for each of the M ``(view k, row i)`` pairs, ℓ of sample i's completion with
    its image replaced by its view k, teacher-forced up to the longest completion among the pairs (0
    beyond it). One call runs forwards of ``view_batch_size`` pairs (default: as many as the call has
    distinct rows, i.e. one view's worth); with ``share_encoding`` the call first encodes each distinct
    view image — view k of a ``roma_view_group`` — once. Autograd follows the caller's grad mode; no pair,
    no forward.

    ``per_token_logps(input_ids, attention_mask, logits_to_keep, **kw) -> (M, T')`` is the log-probs of
    TRL's ``_get_per_token_logps_and_entropies`` on the unwrapped ``model`` (no DDP forward, no collective
    per view, as TRL's own extra passes); ``prepare_input`` moves a tensor to the model's device;
    ``autocast`` is the accelerator's autocast context.
    """
    prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]  # (N, P)
    completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]  # (N, T)
    views = inputs["roma_view_pixel_values"]  # N tensors (K, rows_i, D)
    groups = inputs["roma_view_group"].tolist()  # (N,) samples of one group show the same views
    num_images = inputs.get("num_images") or [1] * len(views)  # (N,) n_i images per sample
    sample_grids = torch.split(inputs["image_grid_thw"], list(num_images))  # N tensors (n_i, 3)
    per_token = {key: inputs[key] for key in ("token_type_ids", "mm_token_type_ids") if key in inputs}

    def view_logps(pairs: list[Pair]) -> torch.Tensor:
        if not pairs:
            return completion_mask.new_zeros((0, completion_mask.shape[1]), dtype=torch.float32)
        rows = torch.tensor([i for _, i in pairs], device=prompt_ids.device)  # (M,)
        length = int(completion_mask[rows].sum(-1).max().clamp(min=1))  # T' ≤ T, the longest
        input_ids = torch.cat([prompt_ids[rows], completion_ids[rows, :length]], dim=1)  # (M, P + T')
        attention_mask = torch.cat([prompt_mask[rows], completion_mask[rows, :length]], dim=1)
        extra = {key: value[rows, : prompt_ids.shape[1] + length] for key, value in per_token.items()}
        batch_size = view_batch_size or len({i for _, i in pairs})
        grids = [sample_grids[i] for _, i in pairs]  # (M,) the (n_i, 3) grids of each pair's images
        if share_encoding:
            images = [(k, groups[i]) for k, i in pairs]  # (M,) the distinct view each pair shows
            pixels = [views[i][k] for k, i in pairs]  # (M,) its (rows, D) pixel rows
            logps = shared_encoding_logps(
                model, autocast, prepare_input, images, pixels, grids, input_ids, attention_mask, length,
                batch_size, extra,
            )
        else:
            logps = per_token_logps(
                input_ids,
                attention_mask,
                length,
                batch_size=batch_size,
                pixel_values=prepare_input(torch.cat([views[i][k] for k, i in pairs])),
                image_grid_thw=torch.cat(grids),
                num_images=[len(grid) for grid in grids],
                **extra,
            )  # (M, T')
        return torch.nn.functional.pad(logps, (0, completion_mask.shape[1] - length))  # (M, T)

    return view_logps


def shared_encoding_logps(
    model: Any,
    autocast: Callable[[], AbstractContextManager],
    prepare_input: Callable[[torch.Tensor], torch.Tensor],
    images: list[tuple[int, int]],
    pixels: list[torch.Tensor],
    image_grid_thw: list[torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    length: int,
    batch_size: int,
    extra: dict[str, torch.Tensor],
) -> torch.Tensor:
    """(M, T') completion log-probs of M pairs (rows of ``input_ids`` (M, P + T')): the vision tower runs once
    over the distinct views — ``images[m]`` names pair m's view as ``(view k, view group)``, ``pixels[m]``
    holds the (rows, D) pixel rows of its n_m images and ``image_grid_thw[m]`` their (n_m, 3) grids — and each
    forward of ``batch_size`` pairs reads their images' encodings from ``mm_encoder_outputs``, through TRL's
    fused LM head."""
    view_index: dict[tuple[int, int], int] = {}  # (view k, view group) -> distinct view
    distinct: list[torch.Tensor] = []
    distinct_grids: list[torch.Tensor] = []
    first_image: list[int] = []  # per distinct view: the position of its first image among all encoded images
    images_of: list[list[int]] = []  # (M,) the encoded images of each pair, in prompt order
    for position, key in enumerate(images):
        if key not in view_index:
            view_index[key] = len(distinct)
            first_image.append(sum(len(grid) for grid in distinct_grids))
            distinct.append(pixels[position])
            distinct_grids.append(image_grid_thw[position])
        start = first_image[view_index[key]]
        images_of.append(list(range(start, start + len(image_grid_thw[position]))))
    grids = torch.cat(distinct_grids)  # (images, 3)
    with autocast():
        encoded = model.get_image_features(prepare_input(torch.cat(distinct)), grids, return_dict=True)
    if not isinstance(encoded.pooler_output, (tuple, list)) or len(encoded.pooler_output) != len(grids):
        raise RuntimeError(
            f"{type(model).__name__}.get_image_features returned no per-image pooler_output for "
            f"{len(grids)} images, so the views' encodings cannot be shared; set share_view_encoding=False"
        )
    all_logps = []
    for start in range(0, len(images), batch_size):
        end = min(start + batch_size, len(images))
        labels = input_ids[start:end].masked_fill(attention_mask[start:end] == 0, -100)
        labels[:, :-length] = -100  # only the completion tokens are scored
        chunk = {key: value[start:end] for key, value in extra.items()}
        with autocast():
            outputs = model(
                input_ids=input_ids[start:end],
                attention_mask=attention_mask[start:end],
                image_grid_thw=torch.cat(image_grid_thw[start:end]),
                mm_encoder_outputs={"image": _select_images(encoded, [d for m in images_of[start:end] for d in m])},
                labels=labels,
                fused_lm_head=True,
                **chunk,
            )
        all_logps.append(outputs.log_probs[:, -length:])
    return torch.cat(all_logps)  # (M, T')


def _select_images(encoded: Any, index: list[int]) -> Any:
    """A vision encoder output (``get_image_features(..., return_dict=True)``) for the images ``index``, in
    that order, as ``mm_encoder_outputs["image"]`` takes it: the per-image ``pooler_output`` and, for
    Qwen3-VL, the per-layer ``deepstack_features`` re-indexed; the fields over all patches left out."""
    fields = {"pooler_output": tuple(encoded.pooler_output[d] for d in index)}
    deepstack = getattr(encoded, "deepstack_features", None)
    if deepstack is not None:
        fields["deepstack_features"] = [tuple(layer[d] for d in index) for layer in deepstack]
    return type(encoded)(**fields)
