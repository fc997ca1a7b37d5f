"""The loss math of ROMA (method.md §1, §3–§5, §7) as pure tensor functions.

Shape vocabulary, used in every signature and comment of this file:

- ``B`` prompts, ``G`` generations per prompt, ``N = B·G`` sequences (completions);
- ``T`` completion tokens (right-padded; the completion mask says which count);
- ``K`` degraded views of each image (``K'`` for a subset of them);
- ``V`` vocabulary size;
- ``S`` successful sequences (``success[i]`` is True), ``S ≤ N``.

Conventions: masks are ``True``/``1`` where a token *counts*; whatever sits on an uncounted token (padding
after the end of a completion, even ``inf``/``nan``) never reaches a loss or a gradient. Hyperparameters
are keyword-only. Losses return ``(loss, metrics)`` with detached metric tensors; nothing here calls
``.item()`` or a distributed collective. Every loss reduction goes through :func:`aggregate`.

Reading order: advantages (§1) → :func:`aggregate` → clipped policy gradient (§1) → token KL surrogate
(§3) → worst-case invariance penalty (§3–§4) → auxiliary policy gradient (§5) → sampled-token log-probs
(§7). The total of §6, ``L = L_GRPO + λ_aux·L_aux + λ_kl·L_inv``, is summed by the caller.

Equivalence with TRL 1.16.0 (``GRPOTrainer._compute_loss`` and ``_generate_and_score_completions``):

- :func:`group_advantages` reproduces TRL's advantages for ``multi_objective_aggregation=
  "sum_then_normalize"`` (the default) bit for bit, for ``scale_rewards`` ``"group"``, ``"batch"`` and
  ``"none"``, including TRL's NaN handling (unscorable completions have NaN reward, are left out of the
  group statistics and get advantage 0).
- :func:`clipped_pg_loss` with ``agg`` = ``"sequence"`` is TRL ``loss_type="grpo"``; ``"token"`` is
  ``loss_type="bnpo"``; ``"fixed"`` with ``max_tokens = max_completion_length`` is ``loss_type="dr_grpo"``,
  bit for bit in value and gradient (the operations are TRL's, in TRL's order).
  TRL's default ``loss_type="dapo"`` divides by the completion tokens of the whole *generation* batch
  (``num_items_in_batch``, over all processes and accumulation steps); it equals ``"token"`` only when one
  micro-batch on one process holds the whole generation batch. The equality holds for TRL's
  token-level importance sampling with ``beta=0``, ``delta=None``, ``top_entropy_quantile=1``,
  ``off_policy_mask_threshold=None`` and no vLLM importance-sampling correction; TRL then divides the
  loss by the gradient-accumulation steps, which is the caller's business. The clip fractions are TRL's
  ``clip_ratio/{low,high,region}_mean`` on one process.

Cheap worst-case selection (§7), what :class:`roma.train.RomaTrainer` does. The worst view is chosen on
detached values, so most teacher-forced passes can run without autograd. For ``worst_case`` ``"batch"``
and ``"sequence"`` (``K > 1``): run the ``K`` views without autograd (the pairs that also feed the
auxiliary term with it), call :func:`select_views` on them — it returns the one view each sequence's
penalty reads, ``ViewSelection.sequence_view``, and the per-view values to log — then run each sequence
under its selected view with autograd and call :func:`selected_view_penalty` on those ``(N, T)``
log-probs. The loss and its gradient are those of :func:`invariance_penalty` on all ``K`` views with
autograd, because the argmax keeps the first of tied views and the gradient flows only through the
selected view. ``"token"`` and ``"mean"`` read several views per sequence: every view runs with autograd
and :func:`invariance_penalty` takes them all. :func:`per_view_kl` gives the per-view penalties alone.

Test oracles only. :func:`group_advantages` and :func:`selective_log_softmax` reproduce TRL's advantages
and sampled-token log-probs; the trainer never calls them (TRL computes both, and pass 2 takes its
log-probs from TRL's fused LM head): the test suite checks them against TRL's own code
(``tests/test_losses_reference.py``). :func:`clipped_pg_loss` reproduces TRL's clean GRPO loss there and
is also the body of :func:`auxiliary_pg_loss`, which the trainer does call.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch

AggMode = Literal["token", "sequence", "fixed"]
RewardScale = Literal["group", "batch", "none"]
KLEstimator = Literal["k1", "k2", "k3"]
KLDirection = Literal["forward", "reverse"]
WorstCase = Literal["batch", "sequence", "token", "mean"]

AGG_MODES: tuple[str, ...] = get_args(AggMode)
REWARD_SCALES: tuple[str, ...] = get_args(RewardScale)
KL_ESTIMATORS: tuple[str, ...] = get_args(KLEstimator)
KL_DIRECTIONS: tuple[str, ...] = get_args(KLDirection)
WORST_CASES: tuple[str, ...] = get_args(WorstCase)


def _check_shape(name: str, tensor: torch.Tensor, expected: dict[str, int | None]) -> None:
    """Raise ``ValueError`` unless ``tensor`` has the dims named in ``expected`` (``None`` = any size)."""
    sizes = list(expected.values())
    if tensor.dim() != len(sizes) or any(e is not None and e != s for e, s in zip(sizes, tensor.shape)):
        want = ", ".join(d if e is None else f"{d}={e}" for d, e in expected.items())
        raise ValueError(f"{name} must have shape ({want}), got {tuple(tensor.shape)}")


def _check_bool(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = counts), got dtype {tensor.dtype}")


# --------------------------------------------------------------------------------------------------
# §1 Group-relative advantages
# --------------------------------------------------------------------------------------------------


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased (n−1) standard deviation ignoring NaNs; NaN where fewer than two values.

    The same operations in the same order as ``trl.trainer.utils.nanstd`` (1.16.0), so results agree bit
    for bit.
    """
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    std = torch.sqrt(variance * correction)
    return std.squeeze() if dim is None else std.squeeze(dim)


def group_advantages(
    rewards: torch.Tensor,  # (N,) float, grouped as B consecutive runs of G
    group_size: int,  # G
    *,
    scale: RewardScale = "group",
    eps: float = 1e-4,
) -> torch.Tensor:  # (N,)
    """§1: ``A_i = (R_i − mean_g R) / (std + eps)``, centred on the mean of the prompt's group.

    ``scale``: ``"group"`` divides by the group's unbiased (n−1) std; ``"batch"`` by the unbiased std over
    all ``N`` rewards (still centred per group, PPO-Lite); ``"none"`` only centres (Dr.GRPO). A group whose
    rewards are all equal gets advantages exactly 0 (0 / eps). With ``G = 1`` (or ``N = 1`` for
    ``"batch"``) the std is taken as 0, as TRL does. NaN rewards (unscorable completions) are left out of
    the mean and std and get advantage 0. This is TRL 1.16.0's computation (``grpo_trainer.py``,
    ``_generate_and_score_completions``, ``multi_objective_aggregation == "sum_then_normalize"``).
    """
    if scale not in REWARD_SCALES:
        raise ValueError(f"scale must be one of {REWARD_SCALES}, got {scale!r}")
    _check_shape("rewards", rewards, {"N": None})
    if not rewards.is_floating_point():
        raise TypeError(f"rewards must be a floating-point tensor, got dtype {rewards.dtype}")
    if group_size < 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"group_size must be a positive divisor of the number of rewards N={rewards.shape[0]}, "
            f"got {group_size}"
        )
    grouped = rewards.view(-1, group_size)  # (B, G)
    group_mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size, dim=0)  # (N,)
    if scale in ("group", "none"):
        if group_size > 1:
            std = _nanstd(grouped, dim=1).repeat_interleave(group_size, dim=0)  # (N,)
        else:
            std = torch.zeros_like(rewards)
    else:  # "batch"
        std = _nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    advantages = rewards - group_mean
    if scale != "none":
        advantages = advantages / (std + eps)
    return torch.nan_to_num(advantages, nan=0.0)


# --------------------------------------------------------------------------------------------------
# Aggregation over counted tokens (every loss reduction of this file)
# --------------------------------------------------------------------------------------------------


def _sequence_mean(
    values: torch.Tensor,  # (..., N, T)
    counted: torch.Tensor,  # (N, T) bool
) -> torch.Tensor:  # (..., N): mean over each sequence's counted tokens, 0 for a sequence with none
    return values.masked_fill(~counted, 0.0).sum(-1) / counted.sum(-1).clamp(min=1)


def aggregate(
    values: torch.Tensor,  # (..., N, T) per-token values
    mask: torch.Tensor,  # (N, T) bool or 0/1: which tokens count
    *,
    mode: AggMode = "token",
    max_tokens: int | None = None,
) -> torch.Tensor:  # (...) — a scalar for (N, T) values
    """Reduce per-token values over the counted tokens of ``N`` sequences (§1 ``agg``).

    - ``"token"``: sum over all counted tokens / their number (TRL ``bnpo``);
    - ``"sequence"``: mean over the ``N`` sequences of each sequence's token mean; a sequence with no counted
      token contributes 0 and still counts among the ``N`` (TRL ``grpo``);
    - ``"fixed"``: sum over counted tokens / ``(N · max_tokens)``, a length-independent constant
      (Dr.GRPO, TRL ``dr_grpo`` with ``max_tokens = max_completion_length``); ``max_tokens`` is required
      and must be ≥ ``T``. It is ignored by the other modes.

    Values on uncounted tokens are ignored (even ``inf``/``nan``) and get zero gradient. Leading dims of
    ``values`` are kept, e.g. ``(K, N, T) → (K,)``. Every denominator is clamped to ≥ 1, so an empty
    selection gives 0.
    """
    if mask.dim() != 2 or values.dim() < 2 or values.shape[-2:] != mask.shape:
        raise ValueError(
            f"values must have shape (..., N, T) matching mask (N, T)={tuple(mask.shape)}, "
            f"got {tuple(values.shape)}"
        )
    counted = mask.bool()
    num_sequences, num_tokens = mask.shape
    if mode == "token":
        return values.masked_fill(~counted, 0.0).sum((-2, -1)) / counted.sum().clamp(min=1)
    elif mode == "sequence":
        return _sequence_mean(values, counted).sum(-1) / max(num_sequences, 1)
    elif mode == "fixed":
        if max_tokens is None or max_tokens < max(num_tokens, 1):
            raise ValueError(
                f"mode='fixed' needs max_tokens >= T={num_tokens} (the max completion length), got {max_tokens}"
            )
        return values.masked_fill(~counted, 0.0).sum((-2, -1)) / (max(num_sequences, 1) * max_tokens)
    else:
        raise ValueError(f"mode must be one of {AGG_MODES}, got {mode!r}")


# --------------------------------------------------------------------------------------------------
# §1 Clipped policy gradient (GRPO / PPO surrogate)
# --------------------------------------------------------------------------------------------------


class PGMetrics(NamedTuple):
    """Detached 0-d tensors, token means over the counted tokens of sequences with non-zero weight."""

    clip_low_frac: torch.Tensor  # ρ < 1 − ε_low where A < 0 (TRL clip_ratio/low_mean)
    clip_high_frac: torch.Tensor  # ρ > 1 + ε_high where A > 0 (TRL clip_ratio/high_mean)
    clip_region_frac: torch.Tensor  # either of the two (TRL clip_ratio/region_mean)
    ratio_mean: torch.Tensor  # mean of ρ


def clipped_pg_loss(
    logps: torch.Tensor,  # (N, T) log π_θ of the sampled tokens
    old_logps: torch.Tensor,  # (N, T) log π_old of the same tokens (detached here)
    advantages: torch.Tensor,  # (N,) (detached here)
    completion_mask: torch.Tensor,  # (N, T) bool or 0/1
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: AggMode = "token",
    weights: torch.Tensor | None = None,  # (N,) multiplies each sequence's per-token terms
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, PGMetrics]:
    """§1: ``L = − agg_{i,t} w_i · min(ρ A_i, clip(ρ, 1−ε_low, 1+ε_high) A_i)``, ``ρ = exp(ℓ − ℓ_old)``.

    ``weights`` (e.g. the success mask, §5) multiplies each sequence's terms inside the aggregation, so the
    denominator still counts every sequence's tokens. See the module docstring for the TRL ``loss_type``
    each ``agg`` reproduces.
    """
    _check_shape("logps", logps, {"N": None, "T": None})
    num_sequences, num_tokens = logps.shape
    _check_shape("old_logps", old_logps, {"N": num_sequences, "T": num_tokens})
    _check_shape("advantages", advantages, {"N": num_sequences})
    _check_shape("completion_mask", completion_mask, {"N": num_sequences, "T": num_tokens})
    if weights is not None:
        _check_shape("weights", weights, {"N": num_sequences})
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"eps_low and eps_high must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    counted = completion_mask.bool()  # (N, T)

    log_ratio = (logps - old_logps.detach()).masked_fill(~counted, 0.0)  # (N, T), 0 on padding
    ratio = torch.exp(log_ratio)  # (N, T) ρ
    clipped_ratio = ratio.clamp(1 - eps_low, 1 + eps_high)  # (N, T)
    adv = advantages.detach()[:, None]  # (N, 1)
    pg_loss1 = -adv * ratio  # (N, T)
    pg_loss2 = -adv * clipped_ratio  # (N, T)
    pg_loss = torch.maximum(pg_loss1, pg_loss2)  # (N, T) = −min(ρA, clip(ρ)A)
    if weights is not None:
        pg_loss = pg_loss * weights.to(pg_loss.dtype)[:, None]
    loss = aggregate(pg_loss, counted, mode=agg, max_tokens=max_tokens)

    metric_mask = counted if weights is None else counted & (weights != 0)[:, None]  # (N, T)
    ratio = ratio.detach()
    is_low_clipped = (ratio < 1 - eps_low) & (adv < 0)  # (N, T)
    is_high_clipped = (ratio > 1 + eps_high) & (adv > 0)  # (N, T)
    metrics = PGMetrics(
        clip_low_frac=aggregate(is_low_clipped.to(ratio.dtype), metric_mask),
        clip_high_frac=aggregate(is_high_clipped.to(ratio.dtype), metric_mask),
        clip_region_frac=aggregate((is_low_clipped | is_high_clipped).to(ratio.dtype), metric_mask),
        ratio_mean=aggregate(ratio, metric_mask),
    )
    return loss, metrics


# --------------------------------------------------------------------------------------------------
# §3 Token-level KL surrogate against the clean anchor
# --------------------------------------------------------------------------------------------------


def kl_surrogate(
    view_logps: torch.Tensor,  # (..., N, T) ℓ^k, log-prob of the sampled tokens under a degraded view
    clean_logps: torch.Tensor,  # (N, T) ℓ, the same tokens under the clean image (detached here)
    *,
    estimator: KLEstimator = "k3",
    direction: KLDirection = "forward",
    max_log_ratio: float = 20.0,
) -> torch.Tensor:  # same shape as view_logps
    """§3: per-token KL estimate from ``Δ = ℓ^k − sg(ℓ)``; gradients reach ``view_logps`` only.

    With ``x = log r`` (``x = Δ`` forward, ``x = −Δ`` reverse): ``k1 = −x``, ``k2 = x²/2``,
    ``k3 = exp(x) − 1 − x``. So forward ``k1 = −Δ``, ``k3 = exp(Δ) − 1 − Δ``; reverse ``k1 = Δ``,
    ``k3 = exp(−Δ) − 1 + Δ``; ``k2 = Δ²/2`` either way.

    The tokens are sampled from the clean policy. Forward: ``r = π_view/π_clean``, and ``k1``, ``k3`` are
    unbiased estimates of ``KL(π_clean ‖ π_view)`` (``k3 ≥ 0``, gradient ``(exp(Δ) − 1)∇ℓ^k``, zero when
    the view agrees with the clean anchor). Reverse: ``r = π_clean/π_view``, the convention GRPO uses for
    its reference KL, which treats the differentiated policy (here the view) as if it had sampled the
    tokens: the estimators target ``KL(π_view ‖ π_clean)`` but are biased under clean samples (reverse
    ``k1`` has mean ``−KL(π_clean ‖ π_view)``; reverse ``k3`` has mean ``χ²(π_clean ‖ π_view) −
    KL(π_clean ‖ π_view) ≥ 0``).

    Clamp: only the exponent of ``k3`` is clamped, ``x ≤ max_log_ratio`` (20 by default, a probability
    ratio of 4.9e8), so ``exp`` cannot overflow. Unlike verl's two-sided ``[−20, 20]`` clamp (and its clamp
    of the k3 value to ``[−10, 10]``, which zeroes the gradient already from ``Δ ≈ 2.6``), the side where
    ``k3`` grows linearly is never clamped: a view that assigns the token a far lower probability than
    the clean image still gets its full gradient. The gradient is zero only where ``x > max_log_ratio``.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"direction must be one of {KL_DIRECTIONS}, got {direction!r}")
    if clean_logps.dim() < 1 or view_logps.shape[view_logps.dim() - clean_logps.dim() :] != clean_logps.shape:
        raise ValueError(
            f"view_logps must have shape (..., N, T) ending in clean_logps' shape {tuple(clean_logps.shape)}, "
            f"got {tuple(view_logps.shape)}"
        )
    if not max_log_ratio > 0:
        raise ValueError(f"max_log_ratio must be > 0, got {max_log_ratio}")

    delta = view_logps - clean_logps.detach()  # Δ = ℓ^k − sg(ℓ)
    if direction == "forward":
        log_ratio = delta  # log(π_view / π_clean)
    else:  # "reverse"
        log_ratio = -delta  # log(π_clean / π_view)

    if estimator == "k1":
        return -log_ratio
    elif estimator == "k2":
        return 0.5 * log_ratio**2
    else:  # "k3"
        log_ratio = log_ratio.clamp(max=max_log_ratio)
        return torch.exp(log_ratio) - 1 - log_ratio


# --------------------------------------------------------------------------------------------------
# §3–§4 Correctness-conditioned, worst-case invariance penalty
# --------------------------------------------------------------------------------------------------


def _successful_token_kl(
    view_logps: torch.Tensor,  # (K, N, T)
    clean_logps: torch.Tensor,  # (N, T)
    completion_mask: torch.Tensor,  # (N, T)
    success: torch.Tensor,  # (N,) bool
    *,
    estimator: KLEstimator,
    direction: KLDirection,
    max_log_ratio: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # (K, S, T) per-token KL, (S, T) bool counted tokens
    """Check shapes, keep the successful sequences and their counted tokens, and take the token KL."""
    _check_shape("view_logps", view_logps, {"K": None, "N": None, "T": None})
    num_views, num_sequences, num_tokens = view_logps.shape
    if num_views < 1:
        raise ValueError(
            f"view_logps must hold at least one view (K >= 1), got shape {tuple(view_logps.shape)}"
        )
    _check_shape("clean_logps", clean_logps, {"N": num_sequences, "T": num_tokens})
    _check_shape("completion_mask", completion_mask, {"N": num_sequences, "T": num_tokens})
    _check_shape("success", success, {"N": num_sequences})
    _check_bool("success", success)

    counted = completion_mask.bool()[success]  # (S, T)
    view_logps = view_logps[:, success].masked_fill(~counted, 0.0)  # (K, S, T), Δ = 0 on padding
    clean_logps = clean_logps[success].masked_fill(~counted, 0.0)  # (S, T)
    kl = kl_surrogate(
        view_logps, clean_logps, estimator=estimator, direction=direction, max_log_ratio=max_log_ratio
    )  # (K, S, T)
    return kl, counted


def per_view_kl(
    view_logps: torch.Tensor,  # (K, N, T)
    clean_logps: torch.Tensor,  # (N, T)
    completion_mask: torch.Tensor,  # (N, T)
    success: torch.Tensor,  # (N,) bool
    *,
    estimator: KLEstimator = "k3",
    direction: KLDirection = "forward",
    agg: AggMode = "token",
    max_tokens: int | None = None,
    max_log_ratio: float = 20.0,
) -> torch.Tensor:  # (K,)
    """§3: ``L_inv(k) = agg_{i,t: m_i=1} D^k_{i,t}`` for every view: the aggregate runs over the ``S``
    successful sequences only (``"sequence"`` averages over them, ``"fixed"`` divides by ``S·max_tokens``).
    Differentiable; 0 for every view when no sequence succeeded."""
    kl, counted = _successful_token_kl(
        view_logps,
        clean_logps,
        completion_mask,
        success,
        estimator=estimator,
        direction=direction,
        max_log_ratio=max_log_ratio,
    )
    return aggregate(kl, counted, mode=agg, max_tokens=max_tokens)  # (K,)


class PenaltyMetrics(NamedTuple):
    """Detached metrics of :func:`invariance_penalty`."""

    per_view_kl: torch.Tensor  # (K,) float, L_inv(k) of every view (§3), with the penalty's agg
    worst_view: torch.Tensor  # () long, argmax_k of per_view_kl (the batch-level worst view, any mode)
    selection_counts: torch.Tensor  # (K,) long, how many selection units picked each view (see below)
    success_rate: torch.Tensor  # () float, share of sequences with success (m_i = 1)


def invariance_penalty(
    view_logps: torch.Tensor,  # (K, N, T) ℓ^k
    clean_logps: torch.Tensor,  # (N, T) ℓ, the stop-gradient anchor
    completion_mask: torch.Tensor,  # (N, T) bool or 0/1
    success: torch.Tensor,  # (N,) bool m_i; all True for the no-correctness-mask ablation
    *,
    estimator: KLEstimator = "k3",
    direction: KLDirection = "forward",
    worst_case: WorstCase = "batch",
    agg: AggMode = "token",
    max_tokens: int | None = None,
    max_log_ratio: float = 20.0,
) -> tuple[torch.Tensor, PenaltyMetrics]:
    """§3–§4: the worst-case, correctness-conditioned invariance penalty ``L_inv^wc``.

    Per token ``D^k_{i,t}`` = :func:`kl_surrogate`; only successful sequences' counted tokens enter.
    ``worst_case``:

    - ``"batch"``: ``max_k L_inv(k)`` (the paper's formula); ``selection_counts`` is one-hot;
    - ``"sequence"``: each successful sequence takes the view with its largest token-mean KL, then the
      selected per-token values are aggregated; counts = successful non-empty sequences per view;
    - ``"token"``: each token takes its largest view, then aggregated; counts = counted tokens per view;
    - ``"mean"``: ``mean_k L_inv(k)`` (ablation "no worst case"); every view is used, counts are all 1.

    The argmax is taken on detached values (ties: the lowest view index); the gradient flows only
    through the selected view(s) and never into ``clean_logps``. With no successful sequence the loss is
    exactly 0.0, still attached to ``view_logps``' graph, with zero gradient. For the cheap two-pass use
    (:func:`select_views`, then :func:`selected_view_penalty`) see the module docstring.
    """
    if worst_case not in WORST_CASES:
        raise ValueError(f"worst_case must be one of {WORST_CASES}, got {worst_case!r}")
    kl, counted = _successful_token_kl(
        view_logps,
        clean_logps,
        completion_mask,
        success,
        estimator=estimator,
        direction=direction,
        max_log_ratio=max_log_ratio,
    )
    num_views, _, num_tokens = kl.shape  # K, S, T
    view_kl = aggregate(kl, counted, mode=agg, max_tokens=max_tokens)  # (K,)
    worst_view = view_kl.detach().argmax()  # ()

    if worst_case == "batch":
        loss = view_kl[worst_view]
        selection_counts = torch.nn.functional.one_hot(worst_view, num_views)  # (K,)
    elif worst_case == "sequence":
        chosen = _sequence_worst_view(kl, counted)  # (S,)
        selected_kl = kl.gather(0, chosen[None, :, None].expand(1, -1, num_tokens))[0]  # (S, T)
        loss = aggregate(selected_kl, counted, mode=agg, max_tokens=max_tokens)
        selection_counts = torch.bincount(chosen[counted.any(-1)], minlength=num_views)  # (K,)
    elif worst_case == "token":
        chosen = kl.detach().argmax(0)  # (S, T)
        selected_kl = kl.gather(0, chosen[None])[0]  # (S, T)
        loss = aggregate(selected_kl, counted, mode=agg, max_tokens=max_tokens)
        selection_counts = torch.bincount(chosen[counted], minlength=num_views)  # (K,)
    else:  # "mean"
        loss = view_kl.mean()
        selection_counts = torch.ones(num_views, dtype=torch.long, device=kl.device)  # (K,)

    metrics = PenaltyMetrics(
        per_view_kl=view_kl.detach(),
        worst_view=worst_view,
        selection_counts=selection_counts,
        success_rate=success.float().mean(),
    )
    return loss, metrics


def _sequence_worst_view(
    kl: torch.Tensor,  # (K, S, T) per-token KL
    counted: torch.Tensor,  # (S, T) bool
) -> torch.Tensor:  # (S,) long: the view with each sequence's largest token-mean KL (ties: the lowest)
    return _sequence_mean(kl.detach(), counted).argmax(0)


class ViewSelection(NamedTuple):
    """The result of :func:`select_views` (detached)."""

    sequence_view: torch.Tensor  # (N,) long, the view each sequence's penalty reads; -1: it reads none
    per_view_kl: torch.Tensor  # (K,) float, L_inv(k) of every view, as PenaltyMetrics.per_view_kl
    selection_counts: torch.Tensor  # (K,) long, as PenaltyMetrics.selection_counts


def select_views(
    view_logps: torch.Tensor,  # (K, N, T) ℓ^k, detached (the selection takes no gradient)
    clean_logps: torch.Tensor,  # (N, T) ℓ
    completion_mask: torch.Tensor,  # (N, T) bool or 0/1
    success: torch.Tensor,  # (N,) bool m_i
    *,
    estimator: KLEstimator = "k3",
    direction: KLDirection = "forward",
    worst_case: Literal["batch", "sequence"] = "batch",
    agg: AggMode = "token",
    max_tokens: int | None = None,
    max_log_ratio: float = 20.0,
) -> ViewSelection:
    """§4, §7: the one view each sequence's worst-case penalty reads, chosen as :func:`invariance_penalty`
    chooses it — the batch's worst view (``"batch"``) or the sequence's own (``"sequence"``).

    ``sequence_view`` is -1 for the sequences the penalty does not see (failed, or no counted token).
    :func:`selected_view_penalty` of each sequence's log-probs under its selected view is then
    ``invariance_penalty(view_logps, ..., worst_case=worst_case)``, value and gradient: one autograd pass
    per sequence instead of one per view. ``"token"`` / ``"mean"`` read several views per sequence and
    raise ``ValueError``.
    """
    if worst_case not in ("batch", "sequence"):
        raise ValueError(
            f"select_views picks one view per sequence, for worst_case 'batch' or 'sequence'; got {worst_case!r} "
            "(use invariance_penalty on all K views)"
        )
    detached = view_logps.detach()  # (K, N, T)
    kw = dict(estimator=estimator, direction=direction, max_log_ratio=max_log_ratio)
    kl, counted = _successful_token_kl(detached, clean_logps, completion_mask, success, **kw)  # (K, S, T), (S, T)
    num_views = kl.shape[0]
    view_kl = aggregate(kl, counted, mode=agg, max_tokens=max_tokens)  # (K,)
    has_tokens = counted.any(-1)  # (S,) a sequence with no counted token selects nothing
    if worst_case == "batch":
        worst_view = view_kl.argmax()  # ()
        chosen = worst_view.expand(has_tokens.shape)  # (S,)
        selection_counts = torch.nn.functional.one_hot(worst_view, num_views)  # (K,)
    else:
        chosen = _sequence_worst_view(kl, counted)  # (S,)
        selection_counts = torch.bincount(chosen[has_tokens], minlength=num_views)  # (K,)
    sequence_view = torch.full(success.shape, -1, dtype=torch.long, device=kl.device)  # (N,)
    sequence_view[success] = torch.where(has_tokens, chosen, -1)
    return ViewSelection(sequence_view, view_kl, selection_counts)


def selected_view_penalty(
    selected_logps: torch.Tensor,  # (N, T) ℓ of each sequence under its selected view (with autograd)
    clean_logps: torch.Tensor,  # (N, T) ℓ, the stop-gradient anchor
    completion_mask: torch.Tensor,  # (N, T) bool or 0/1
    success: torch.Tensor,  # (N,) bool m_i
    *,
    estimator: KLEstimator = "k3",
    direction: KLDirection = "forward",
    agg: AggMode = "token",
    max_tokens: int | None = None,
    max_log_ratio: float = 20.0,
) -> torch.Tensor:  # ()
    """§3–§4: ``L_inv^wc`` from the log-probs of each sequence under the view :func:`select_views` chose
    for it: ``agg_{i,t: m_i=1} D^{k_i}_{i,t}``, the penalty of that one (N, T) view. Rows the penalty does
    not read may hold anything finite (the trainer puts the clean log-probs there)."""
    return per_view_kl(
        selected_logps[None],
        clean_logps,
        completion_mask,
        success,
        estimator=estimator,
        direction=direction,
        agg=agg,
        max_tokens=max_tokens,
        max_log_ratio=max_log_ratio,
    )[0]


# --------------------------------------------------------------------------------------------------
# §5 Auxiliary policy gradient on one view, anchored to the clean advantages
# --------------------------------------------------------------------------------------------------


def auxiliary_pg_loss(
    view_logps: torch.Tensor,  # (N, T) ℓ^j of the sampled tokens under view j (with autograd)
    old_logps: torch.Tensor,  # (N, T) clean ℓ_old, or the view's own detached ℓ^j (aux_ratio_anchor: view)
    advantages: torch.Tensor,  # (N,) the clean A_i
    completion_mask: torch.Tensor,  # (N, T) bool or 0/1
    success: torch.Tensor,  # (N,) bool m_i
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    correct_only: bool = True,
    agg: AggMode = "token",
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, PGMetrics]:
    """§5: ``L_aux = − agg_{i,t} m_i · min(ρ̃ A_i, clip(ρ̃, 1−ε_low, 1+ε_high) A_i)``, ``ρ̃ = exp(ℓ^j − ℓ_old)``.

    The success mask is a weight inside the aggregation (``correct_only=True``), so the denominator is the
    same as ``L_GRPO``'s and ``λ_aux`` weighs the two on one scale; ``correct_only=False`` uses every
    sequence. Metrics cover the weighted (successful) sequences only.
    """
    _check_shape("view_logps", view_logps, {"N": None, "T": None})
    _check_shape("success", success, {"N": view_logps.shape[0]})
    _check_bool("success", success)
    return clipped_pg_loss(
        view_logps,
        old_logps,
        advantages,
        completion_mask,
        eps_low=eps_low,
        eps_high=eps_high,
        agg=agg,
        weights=success if correct_only else None,
        max_tokens=max_tokens,
    )


# --------------------------------------------------------------------------------------------------
# §7 Sampled-token log-probabilities without the full log-softmax
# --------------------------------------------------------------------------------------------------


def selective_log_softmax(
    logits: torch.Tensor,  # (..., V), e.g. (N, T, V)
    index: torch.Tensor,  # (...) long, the sampled token ids, e.g. (N, T)
    *,
    chunk_size: int = 256,
) -> torch.Tensor:  # (...) float32
    """§7: ``log softmax(logits)[index]`` computed as ``logits[index] − logsumexp(logits)``.

    Rows (positions) are processed ``chunk_size`` at a time in float32, so the only temporary of vocabulary
    width is ``(chunk_size, V)``; the ``(…, V)`` log-softmax is never built. The result is float32 whatever
    the logits' dtype (bf16 logsumexp is too coarse). Under autograd, ``logsumexp`` keeps its float32 input
    for backward: the logits themselves when they are float32, a float32 copy when they are not.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if logits.dim() < 1 or logits.shape[:-1] != index.shape:
        raise ValueError(
            f"index must have the shape of logits without its last (vocabulary) dim, "
            f"got logits {tuple(logits.shape)} and index {tuple(index.shape)}"
        )
    vocab_size = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab_size)  # (R, V), R = number of positions
    flat_index = index.reshape(-1, 1)  # (R, 1)
    logps = []
    for logits_chunk, index_chunk in zip(flat_logits.split(chunk_size), flat_index.split(chunk_size)):
        logits_chunk = logits_chunk.float()  # (C, V)
        picked = logits_chunk.gather(-1, index_chunk).squeeze(-1)  # (C,)
        logps.append(picked - torch.logsumexp(logits_chunk, dim=-1))  # (C,)
    return torch.cat(logps).reshape(index.shape)
