"""Tests of roma.losses: hand-computed cases, a plain-loop reference over every mode, and properties."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from roma.losses import (
    AGG_MODES,
    KL_DIRECTIONS,
    KL_ESTIMATORS,
    WORST_CASES,
    aggregate,
    auxiliary_pg_loss,
    clipped_pg_loss,
    group_advantages,
    invariance_penalty,
    kl_surrogate,
    per_view_kl,
    select_views,
    selected_view_penalty,
    selective_log_softmax,
)

LN2 = math.log(2.0)
MAX_TOKENS = 9  # the "fixed" (Dr.GRPO) constant used with T <= 9 below

# --------------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------------


def test_group_advantages_hand_computed() -> None:
    # Two groups of G=3: [1, 0, 0] and [2, 2, 2].
    # Group 1: mean 1/3, deviations (2/3, -1/3, -1/3), unbiased var = (4/9 + 1/9 + 1/9) / 2 = 1/3.
    # Group 2: std 0 -> advantages 0 / (0 + eps) = 0.
    rewards = torch.tensor([1.0, 0.0, 0.0, 2.0, 2.0, 2.0], dtype=torch.float64)
    std1 = math.sqrt(1 / 3)
    expected_group = [2 / 3 / (std1 + 1e-4), -1 / 3 / (std1 + 1e-4), -1 / 3 / (std1 + 1e-4), 0.0, 0.0, 0.0]
    torch.testing.assert_close(
        group_advantages(rewards, 3), torch.tensor(expected_group, dtype=torch.float64)
    )
    # "none": only centred on the group mean.
    expected_none = torch.tensor([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(group_advantages(rewards, 3, scale="none"), expected_none)
    # "batch": group-centred, divided by the unbiased std of all six rewards: mean 7/6, squared deviations
    # 1/36 + 49/36 + 49/36 + 3 * 25/36 = 174/36, var = 174/36 / 5.
    std_batch = math.sqrt(174 / 36 / 5)
    torch.testing.assert_close(
        group_advantages(rewards, 3, scale="batch", eps=0.0), expected_none / std_batch
    )


def test_zero_std_groups_give_finite_zero_advantages() -> None:
    rewards = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.0, 1.0])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, 2, scale=scale)
        assert torch.isfinite(adv).all()
        assert torch.equal(adv[:6], torch.zeros(6)), scale
        assert adv[6] < 0 < adv[7]
    # G = 1: every group has zero std (TRL takes it as 0): all advantages 0.
    assert torch.equal(group_advantages(rewards, 1), torch.zeros(8))
    # An all-equal batch with scale="batch" too.
    assert torch.equal(group_advantages(torch.ones(4), 2, scale="batch"), torch.zeros(4))


def test_group_advantages_nan_reward_is_left_out_and_gets_zero() -> None:
    # Group [1, nan, 0]: mean over the two scored values = 0.5, unbiased std = sqrt(0.5).
    rewards = torch.tensor([1.0, float("nan"), 0.0], dtype=torch.float64)
    adv = group_advantages(rewards, 3, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64) / math.sqrt(0.5))


def test_aggregate_hand_computed() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # token: (1 + 2 + 4) / 3 counted tokens
    torch.testing.assert_close(aggregate(values, mask, mode="token"), torch.tensor(7 / 3))
    # sequence: mean of ((1 + 2) / 2, 4 / 1) = (1.5 + 4) / 2
    torch.testing.assert_close(aggregate(values, mask, mode="sequence"), torch.tensor(2.75))
    # fixed: (1 + 2 + 4) / (N=2 * max_tokens=4)
    torch.testing.assert_close(aggregate(values, mask, mode="fixed", max_tokens=4), torch.tensor(0.875))
    # leading dims are kept: (2, N, T) -> (2,)
    stacked = torch.stack([values, 2 * values])
    torch.testing.assert_close(aggregate(stacked, mask), torch.tensor([7 / 3, 14 / 3]))
    # whatever sits on uncounted tokens is ignored, even inf/nan, and gets zero gradient
    garbage = torch.tensor([[1.0, 2.0, float("nan")], [4.0, float("inf"), -float("inf")]], requires_grad=True)
    for mode, expected in (("token", 7 / 3), ("sequence", 2.75), ("fixed", 0.875)):
        out = aggregate(garbage, mask, mode=mode, max_tokens=4)
        torch.testing.assert_close(out, torch.tensor(expected))
        (grad,) = torch.autograd.grad(out, garbage)
        assert torch.equal(grad * (1 - mask), torch.zeros(2, 3)), mode
    # an empty mask gives 0, never NaN
    for mode in AGG_MODES:
        out = aggregate(values, torch.zeros(2, 3), mode=mode, max_tokens=4)
        assert torch.equal(out, torch.tensor(0.0)), mode


def _pg_example() -> tuple[torch.Tensor, ...]:
    # Two sequences, three tokens; sequence 1's last token is padding.
    # log-ratios: seq 0 (A = +1): rho = (1, 1.5, 0.5); seq 1 (A = -1): rho = (0.5, 1.1, pad).
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -0.7]], dtype=torch.float64)
    rho = torch.tensor([[1.0, 1.5, 0.5], [0.5, 1.1, 1.0]], dtype=torch.float64)
    logps = (old + rho.log()).requires_grad_()
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logps, old, advantages, mask


def test_clipped_pg_loss_hand_computed() -> None:
    logps, old, advantages, mask = _pg_example()
    # eps = 0.2 -> clip range [0.8, 1.2]; per-token loss = -min(rho A, clip(rho) A):
    #   seq 0, A=+1: rho=1 -> -1;  rho=1.5 -> -min(1.5, 1.2) = -1.2 (clipped);  rho=0.5 -> -min(0.5, 0.8) = -0.5
    #   seq 1, A=-1: rho=0.5 -> -min(-0.5, -0.8) = 0.8 (clipped);  rho=1.1 -> 1.1
    # token: (-1 - 1.2 - 0.5 + 0.8 + 1.1) / 5 = -0.16; sequence: (-2.7/3 + 1.9/2) / 2 = 0.025;
    # fixed (max_tokens=3): -0.8 / (2 * 3)
    expected = {"token": -0.16, "sequence": 0.025, "fixed": -0.8 / 6}
    for agg, value in expected.items():
        loss, metrics = clipped_pg_loss(logps, old, advantages, mask, agg=agg, max_tokens=3)
        torch.testing.assert_close(loss, torch.tensor(value, dtype=torch.float64))
    # clip fractions over the 5 counted tokens: low = (rho < 0.8, A < 0) = 1 token; high = (rho > 1.2, A > 0)
    # = 1 token; mean rho = (1 + 1.5 + 0.5 + 0.5 + 1.1) / 5 = 0.92
    loss, metrics = clipped_pg_loss(logps, old, advantages, mask)
    torch.testing.assert_close(metrics.clip_low_frac, torch.tensor(0.2, dtype=torch.float64))
    torch.testing.assert_close(metrics.clip_high_frac, torch.tensor(0.2, dtype=torch.float64))
    torch.testing.assert_close(metrics.clip_region_frac, torch.tensor(0.4, dtype=torch.float64))
    torch.testing.assert_close(metrics.ratio_mean, torch.tensor(0.92, dtype=torch.float64))
    assert not any(m.requires_grad for m in metrics)
    # gradient (token mode): d(-A rho)/d logp = -A rho where unclipped, 0 where the clipped term is taken;
    # divided by 5 tokens: seq 0 -> (-1, 0, -0.5) / 5; seq 1 -> (0, 1.1, 0) / 5 (padding 0).
    loss.backward()
    expected_grad = torch.tensor([[-0.2, 0.0, -0.1], [0.0, 0.22, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(logps.grad, expected_grad)


def test_auxiliary_pg_loss_hand_computed() -> None:
    logps, old, advantages, mask = _pg_example()
    success = torch.tensor([True, False])
    # correct_only: seq 1's terms are weighted by 0 but its 2 tokens stay in the denominator:
    # (-1 - 1.2 - 0.5 + 0) / 5 = -0.54
    loss, metrics = auxiliary_pg_loss(logps, old, advantages, mask, success)
    torch.testing.assert_close(loss, torch.tensor(-0.54, dtype=torch.float64))
    # metrics over seq 0 only: high-clipped 1 of 3 tokens; mean rho (1 + 1.5 + 0.5) / 3 = 1
    torch.testing.assert_close(metrics.clip_high_frac, torch.tensor(1 / 3, dtype=torch.float64))
    torch.testing.assert_close(metrics.clip_low_frac, torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(metrics.ratio_mean, torch.tensor(1.0, dtype=torch.float64))
    # correct_only=False is the plain clipped PG loss
    loss_all, _ = auxiliary_pg_loss(logps, old, advantages, mask, success, correct_only=False)
    torch.testing.assert_close(loss_all, torch.tensor(-0.16, dtype=torch.float64))


def test_kl_surrogate_hand_computed() -> None:
    clean = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64)
    view = clean + torch.tensor([0.0, LN2, -LN2], dtype=torch.float64)  # Δ = (0, ln 2, -ln 2)
    # forward k1 = -Δ; k2 = Δ²/2; k3 = e^Δ - 1 - Δ = (0, 2 - 1 - ln 2, 1/2 - 1 + ln 2)
    a, b = 1 - LN2, LN2 - 0.5
    cases = {
        ("k1", "forward"): [0.0, -LN2, LN2],
        ("k2", "forward"): [0.0, LN2**2 / 2, LN2**2 / 2],
        ("k3", "forward"): [0.0, a, b],
        # reverse: Δ -> -Δ: k1 = Δ, k2 unchanged, k3 = e^-Δ - 1 + Δ = (0, 1/2 - 1 + ln 2, 2 - 1 - ln 2)
        ("k1", "reverse"): [0.0, LN2, -LN2],
        ("k2", "reverse"): [0.0, LN2**2 / 2, LN2**2 / 2],
        ("k3", "reverse"): [0.0, b, a],
    }
    for (estimator, direction), expected in cases.items():
        out = kl_surrogate(view, clean, estimator=estimator, direction=direction)
        torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def _penalty_example() -> tuple[torch.Tensor, ...]:
    # K=2 views, N=2 sequences, T=3 tokens, clean log-probs 0 and k1 forward, so D = -view_logps.
    # Sequence 1's last token is padding (values 7 and 9 there must be ignored).
    d = torch.tensor(
        [
            [[1.0, 2.0, 3.0], [0.0, 0.0, 7.0]],  # view 0
            [[0.0, 4.0, 1.0], [4.0, 2.0, 9.0]],  # view 1
        ],
        dtype=torch.float64,
    )
    view_logps = (-d).requires_grad_()
    clean_logps = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return view_logps, clean_logps, mask, torch.tensor([True, True])


def test_selected_view_penalty_equals_the_worst_case_penalty() -> None:
    """select_views, then selected_view_penalty on each sequence's selected view (the trainer's one-pass
    form), is invariance_penalty on all K views — value and gradient — for batch and sequence, also with a
    failed sequence (-1) and a successful one with no counted token (-1)."""
    gen = torch.Generator().manual_seed(3)
    view_logps = -torch.rand(3, 4, 5, generator=gen, dtype=torch.float64)  # (K, N, T)
    clean_logps = -torch.rand(4, 5, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    success = torch.tensor([True, False, True, True])
    for worst_case in ("batch", "sequence"):
        for agg in ("token", "sequence", "fixed"):
            kw = dict(estimator="k3", direction="forward", agg=agg, max_tokens=5)
            every = view_logps.clone().requires_grad_()
            loss, metrics = invariance_penalty(every, clean_logps, mask, success, worst_case=worst_case, **kw)
            selection = select_views(view_logps, clean_logps, mask, success, worst_case=worst_case, **kw)
            view = selection.sequence_view
            assert view[1] == -1 and view[2] == -1 and bool((view[[0, 3]] >= 0).all())
            assert torch.equal(selection.per_view_kl, metrics.per_view_kl)
            assert torch.equal(selection.selection_counts, metrics.selection_counts)
            one = view_logps.clone().requires_grad_()
            own = torch.stack([one[max(int(k), 0), i] for i, k in enumerate(view)])  # (N, T)
            penalty = selected_view_penalty(own, clean_logps, mask, success, **kw)
            torch.testing.assert_close(penalty, loss)
            loss.backward()
            penalty.backward()
            torch.testing.assert_close(one.grad, every.grad)


def test_select_views_picks_one_view_per_sequence_only() -> None:
    view_logps, clean_logps, mask, success = _penalty_example()
    with pytest.raises(ValueError, match=r"worst_case 'batch' or 'sequence'; got 'token'"):
        select_views(view_logps, clean_logps, mask, success, worst_case="token")
    with pytest.raises(ValueError, match=r"got 'mean'"):
        select_views(view_logps, clean_logps, mask, success, worst_case="mean")


def test_invariance_penalty_hand_computed() -> None:
    view_logps, clean_logps, mask, success = _penalty_example()
    kw = dict(estimator="k1", direction="forward")
    # token agg per view: L(0) = (1+2+3+0+0)/5 = 1.2; L(1) = (0+4+1+4+2)/5 = 2.2
    # batch: max = 2.2 (view 1).
    # sequence: seq 0 means (2, 5/3) -> view 0; seq 1 means (0, 3) -> view 1: (1+2+3+4+2)/5 = 2.4
    # token: per-token max (1 v0, 4 v1, 3 v0 | 4 v1, 2 v1) -> 14/5 = 2.8, counts (2, 3)
    # mean: (1.2 + 2.2) / 2 = 1.7
    expected = {
        "batch": (2.2, [0, 1], [1, 1]),
        "sequence": (2.4, [1, 1], [0, 1]),
        "token": (2.8, [2, 3], None),
        "mean": (1.7, [1, 1], None),
    }
    for worst_case, (value, counts, sequence_view) in expected.items():
        loss, metrics = invariance_penalty(
            view_logps, clean_logps, mask, success, worst_case=worst_case, **kw
        )
        torch.testing.assert_close(loss, torch.tensor(value, dtype=torch.float64))
        assert metrics.selection_counts.tolist() == counts, worst_case
        if sequence_view is not None:
            selection = select_views(view_logps, clean_logps, mask, success, worst_case=worst_case, **kw)
            assert selection.sequence_view.tolist() == sequence_view, worst_case
            assert selection.selection_counts.tolist() == counts, worst_case
        torch.testing.assert_close(metrics.per_view_kl, torch.tensor([1.2, 2.2], dtype=torch.float64))
        assert int(metrics.worst_view) == 1
        assert float(metrics.success_rate) == 1.0
    # sequence agg for batch mode: L(0) = mean(2, 0) = 1; L(1) = mean(5/3, 3) = 7/3
    loss, metrics = invariance_penalty(view_logps, clean_logps, mask, success, agg="sequence", **kw)
    torch.testing.assert_close(metrics.per_view_kl, torch.tensor([1.0, 7 / 3], dtype=torch.float64))
    torch.testing.assert_close(loss, torch.tensor(7 / 3, dtype=torch.float64))
    # gradient (batch, token agg): dD/dview = -1 on view 1's five counted tokens, / 5; view 0 gets nothing
    loss, _ = invariance_penalty(view_logps, clean_logps, mask, success, **kw)
    loss.backward()
    expected_grad = torch.zeros(2, 2, 3, dtype=torch.float64)
    expected_grad[1] = -0.2 * mask
    torch.testing.assert_close(view_logps.grad, expected_grad)
    assert clean_logps.grad is None


def test_invariance_penalty_success_mask_hand_computed() -> None:
    view_logps, clean_logps, mask, _ = _penalty_example()
    # Only seq 0 succeeded: L(0) = (1+2+3)/3 = 2, L(1) = (0+4+1)/3 = 5/3 -> batch picks view 0, loss 2.
    loss, metrics = invariance_penalty(
        view_logps, clean_logps, mask, torch.tensor([True, False]), estimator="k1"
    )
    torch.testing.assert_close(loss, torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(metrics.per_view_kl, torch.tensor([2.0, 5 / 3], dtype=torch.float64))
    assert float(metrics.success_rate) == 0.5
    # "fixed" divides by the S=1 successful sequences times max_tokens=4: L(0) = 6/4
    loss, _ = invariance_penalty(
        view_logps, clean_logps, mask, torch.tensor([True, False]), estimator="k1", agg="fixed", max_tokens=4
    )
    torch.testing.assert_close(loss, torch.tensor(1.5, dtype=torch.float64))


def test_selective_log_softmax_hand_computed() -> None:
    # logits (0, ln 3): softmax (1/4, 3/4)
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    out = selective_log_softmax(logits, torch.tensor([1, 0]))
    torch.testing.assert_close(out, torch.tensor([math.log(0.75), math.log(0.25)]))


# --------------------------------------------------------------------------------------------------
# Plain-loop reference (loops over i, t, k; no vectorisation), checked against every mode
# --------------------------------------------------------------------------------------------------


def ref_aggregate(values, mask, mode, max_tokens):
    """values: list over i of lists over t of 0-d tensors; mask: nested lists of 0/1."""
    n = len(values)
    if mode == "token":
        total, count = 0.0, 0
        for i in range(n):
            for t in range(len(values[i])):
                if mask[i][t]:
                    total = total + values[i][t]
                    count += 1
        return total / max(count, 1)
    if mode == "sequence":
        total = 0.0
        for i in range(n):
            seq_total, seq_count = 0.0, 0
            for t in range(len(values[i])):
                if mask[i][t]:
                    seq_total = seq_total + values[i][t]
                    seq_count += 1
            total = total + seq_total / max(seq_count, 1)
        return total / max(n, 1)
    if mode == "fixed":
        total = 0.0
        for i in range(n):
            for t in range(len(values[i])):
                if mask[i][t]:
                    total = total + values[i][t]
        return total / (max(n, 1) * max_tokens)
    raise AssertionError(mode)


def ref_clipped_pg(logps, old, adv, mask, eps_low, eps_high, agg, weights, max_tokens):
    n, t_len = logps.shape
    per_token = []
    for i in range(n):
        row = []
        for t in range(t_len):
            if not mask[i][t]:
                row.append(None)
                continue
            ratio = torch.exp(logps[i, t] - float(old[i, t]))
            low, high = (
                torch.tensor(1 - eps_low, dtype=ratio.dtype),
                torch.tensor(1 + eps_high, dtype=ratio.dtype),
            )
            clipped = min(max(ratio, low), high)
            a = float(adv[i])
            term = -min(ratio * a, clipped * a)
            if weights is not None:
                term = term * float(weights[i])
            row.append(term)
        per_token.append(row)
    return ref_aggregate(per_token, mask, agg, max_tokens)


def ref_kl(view, clean, estimator, direction):
    delta = view - float(clean)
    x = delta if direction == "forward" else -delta
    if estimator == "k1":
        return -x
    if estimator == "k2":
        return x * x / 2
    return torch.exp(x) - 1 - x


def _as_float(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def ref_penalty(view, clean, mask, success, estimator, direction, worst_case, agg, max_tokens):
    k_views, n, t_len = view.shape
    rows = [i for i in range(n) if success[i]]
    sub_mask = [mask[i] for i in rows]
    d = [
        [[ref_kl(view[k, i, t], clean[i, t], estimator, direction) for t in range(t_len)] for i in rows]
        for k in range(k_views)
    ]
    per_view = [ref_aggregate(d[k], sub_mask, agg, max_tokens) for k in range(k_views)]

    def argmax(xs):
        best = 0
        for j in range(len(xs)):
            if _as_float(xs[j]) > _as_float(xs[best]):
                best = j
        return best

    if worst_case == "batch":
        return per_view[argmax(per_view)]
    if worst_case == "mean":
        total = 0.0
        for k in range(k_views):
            total = total + per_view[k]
        return total / k_views
    selected = []
    for s in range(len(rows)):
        if worst_case == "sequence":
            means = []
            for k in range(k_views):
                tot, cnt = 0.0, 0
                for t in range(t_len):
                    if sub_mask[s][t]:
                        tot += _as_float(d[k][s][t])
                        cnt += 1
                means.append(tot / max(cnt, 1))
            best = argmax(means)
            selected.append([d[best][s][t] for t in range(t_len)])
        else:  # token
            selected.append([d[argmax([d[k][s][t] for k in range(k_views)])][s][t] for t in range(t_len)])
    return ref_aggregate(selected, sub_mask, agg, max_tokens)


def _random_batch(seed: int, n: int = 6, t_len: int = 5, k_views: int = 3):
    gen = torch.Generator().manual_seed(seed)
    clean = -torch.rand(n, t_len, generator=gen, dtype=torch.float64) * 3
    view = clean + torch.randn(k_views, n, t_len, generator=gen, dtype=torch.float64) * 0.7
    old = clean + torch.randn(n, t_len, generator=gen, dtype=torch.float64) * 0.3
    lengths = torch.randint(1, t_len + 1, (n,), generator=gen)
    mask = (torch.arange(t_len)[None, :] < lengths[:, None]).long()
    mask[0] = 0  # one empty completion (e.g. TRL's mask_truncated_completions)
    success = torch.rand(n, generator=gen) < 0.6
    success[1] = True
    success[2] = False
    adv = torch.randn(n, generator=gen, dtype=torch.float64)
    return clean, view, old, mask, success, adv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_pg_matches_loop_reference(seed: int) -> None:
    clean, _, old, mask, success, adv = _random_batch(seed)
    for agg, use_weights in itertools.product(AGG_MODES, (False, True)):
        weights = success if use_weights else None
        logps = clean.clone().requires_grad_()
        loss, _ = clipped_pg_loss(
            logps, old, adv, mask, eps_low=0.2, eps_high=0.28, agg=agg, weights=weights, max_tokens=MAX_TOKENS
        )
        loss.backward()
        ref_logps = clean.clone().requires_grad_()
        ref = ref_clipped_pg(ref_logps, old, adv, mask.tolist(), 0.2, 0.28, agg, weights, MAX_TOKENS)
        ref.backward()
        torch.testing.assert_close(loss, ref, msg=f"{agg} weights={use_weights}")
        torch.testing.assert_close(logps.grad, ref_logps.grad, msg=f"{agg} weights={use_weights}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariance_penalty_matches_loop_reference(seed: int) -> None:
    clean, view, _, mask, success, _ = _random_batch(seed)
    for estimator, direction, worst_case, agg in itertools.product(
        KL_ESTIMATORS, KL_DIRECTIONS, WORST_CASES, AGG_MODES
    ):
        name = f"{estimator}/{direction}/{worst_case}/{agg}"
        view_logps = view.clone().requires_grad_()
        loss, _ = invariance_penalty(
            view_logps,
            clean,
            mask,
            success,
            estimator=estimator,
            direction=direction,
            worst_case=worst_case,
            agg=agg,
            max_tokens=MAX_TOKENS,
        )
        loss.backward()
        ref_view = view.clone().requires_grad_()
        ref = ref_penalty(
            ref_view,
            clean,
            mask.tolist(),
            success.tolist(),
            estimator,
            direction,
            worst_case,
            agg,
            MAX_TOKENS,
        )
        ref.backward()
        torch.testing.assert_close(loss, ref, msg=name)
        torch.testing.assert_close(view_logps.grad, ref_view.grad, msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_advantages_matches_loop_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    group_size = 4
    rewards = torch.randint(0, 3, (5 * group_size,), generator=gen).double()
    rewards[:group_size] = 1.0  # one zero-std group
    values = rewards.tolist()
    n = len(values)
    for scale in ("group", "batch", "none"):
        expected = []
        for i in range(n):
            start = i // group_size * group_size
            group = values[start : start + group_size]
            mean = sum(group) / group_size
            pool = group if scale == "group" else values
            pool_mean = sum(pool) / len(pool)
            std = math.sqrt(sum((r - pool_mean) ** 2 for r in pool) / (len(pool) - 1))
            expected.append(values[i] - mean if scale == "none" else (values[i] - mean) / (std + 1e-4))
        torch.testing.assert_close(
            group_advantages(rewards, group_size, scale=scale), torch.tensor(expected, dtype=torch.float64)
        )


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


def test_zero_lambdas_give_exactly_grpo() -> None:
    clean, view, old, mask, success, adv = _random_batch(3)
    for agg in AGG_MODES:
        logps = clean.clone().requires_grad_()
        views = view.clone().requires_grad_()
        grpo, _ = clipped_pg_loss(logps, old, adv, mask, agg=agg, max_tokens=MAX_TOKENS)
        aux, _ = auxiliary_pg_loss(views[0], old, adv, mask, success, agg=agg, max_tokens=MAX_TOKENS)
        inv, _ = invariance_penalty(views, logps, mask, success, agg=agg, max_tokens=MAX_TOKENS)
        total = grpo + 0.0 * aux + 0.0 * inv
        total.backward()

        plain_logps = clean.clone().requires_grad_()
        plain, _ = clipped_pg_loss(plain_logps, old, adv, mask, agg=agg, max_tokens=MAX_TOKENS)
        plain.backward()
        assert torch.equal(total, plain), agg
        assert torch.equal(logps.grad, plain_logps.grad), agg
        assert torch.equal(views.grad, torch.zeros_like(views)), agg


def test_batch_worst_case_gradient_flows_only_through_selected_view() -> None:
    clean, view, _, mask, success, _ = _random_batch(4)
    clean_logps = clean.clone().requires_grad_()
    for estimator, direction in itertools.product(KL_ESTIMATORS, KL_DIRECTIONS):
        view_logps = view.clone().requires_grad_()
        loss, metrics = invariance_penalty(
            view_logps, clean_logps, mask, success, estimator=estimator, direction=direction
        )
        loss.backward()
        worst = int(metrics.worst_view)
        counted = (mask.bool() & success[:, None]).double()
        for k in range(view.shape[0]):
            if k == worst:
                assert (view_logps.grad[k].abs() > 0).sum() > 0
                assert torch.equal(view_logps.grad[k] * (1 - counted), torch.zeros_like(counted))
            else:
                assert torch.equal(view_logps.grad[k], torch.zeros_like(counted))
        assert clean_logps.grad is None


def test_clean_logps_never_receive_gradient() -> None:
    clean, view, old, mask, success, _ = _random_batch(5)
    for worst_case in WORST_CASES:
        clean_logps = clean.clone().requires_grad_()
        loss, _ = invariance_penalty(
            view.clone().requires_grad_(), clean_logps, mask, success, worst_case=worst_case
        )
        loss.backward()
        assert clean_logps.grad is None, worst_case
    # old log-probs and advantages are detached inside the clipped PG loss as well
    old_logps = old.clone().requires_grad_()
    adv = torch.ones(6, dtype=torch.float64, requires_grad=True)
    loss, _ = clipped_pg_loss(clean.clone().requires_grad_(), old_logps, adv, mask)
    loss.backward()
    assert old_logps.grad is None and adv.grad is None


def _pad(x: torch.Tensor, extra: int, fill: float) -> torch.Tensor:
    return torch.cat([x, torch.full((*x.shape[:-1], extra), fill, dtype=x.dtype)], dim=-1)


@pytest.mark.parametrize("fill", [0.0, 1e4, float("inf"), float("nan")])
def test_padding_changes_nothing_and_gets_zero_gradient(fill: float) -> None:
    clean, view, old, mask, success, adv = _random_batch(6)
    extra = 3
    t_len = clean.shape[1]
    pad_mask = _pad(mask, extra, 0)
    # inner masked tokens also get garbage
    garbage_clean = torch.where(mask.bool(), clean, torch.full_like(clean, fill))
    garbage_view = torch.where(mask.bool(), view, torch.full_like(view, -fill))
    for agg in AGG_MODES:
        kw = dict(agg=agg, max_tokens=MAX_TOKENS)
        base_logps = clean.clone().requires_grad_()
        base, _ = clipped_pg_loss(base_logps, old, adv, mask, **kw)
        padded_logps = _pad(garbage_clean, extra, fill).requires_grad_()
        padded, _ = clipped_pg_loss(padded_logps, _pad(old, extra, -fill), adv, pad_mask, **kw)
        padded.backward()
        torch.testing.assert_close(padded, base, rtol=0, atol=1e-12)
        assert torch.equal(padded_logps.grad[:, t_len:], torch.zeros(6, extra, dtype=torch.float64))
        uncounted = 1 - pad_mask.double()
        assert torch.equal(padded_logps.grad * uncounted, torch.zeros_like(uncounted))

        aux_base, _ = auxiliary_pg_loss(view[0], old, adv, mask, success, **kw)
        aux_padded, _ = auxiliary_pg_loss(
            _pad(garbage_view[0], extra, fill), _pad(old, extra, fill), adv, pad_mask, success, **kw
        )
        torch.testing.assert_close(aux_padded, aux_base, rtol=0, atol=1e-12)

        for worst_case, estimator in itertools.product(WORST_CASES, KL_ESTIMATORS):
            kw_inv = dict(worst_case=worst_case, estimator=estimator, **kw)
            inv_base, _ = invariance_penalty(view, clean, mask, success, **kw_inv)
            padded_view = _pad(garbage_view, extra, fill).requires_grad_()
            inv_padded, metrics = invariance_penalty(
                padded_view, _pad(garbage_clean, extra, -fill), pad_mask, success, **kw_inv
            )
            inv_padded.backward()
            torch.testing.assert_close(inv_padded, inv_base, rtol=0, atol=1e-12)
            assert torch.isfinite(padded_view.grad).all()
            assert torch.equal(padded_view.grad * uncounted, torch.zeros_like(padded_view.grad))
            if worst_case == "token":  # padded tokens are not counted as selections
                assert int(metrics.selection_counts.sum()) == int((mask.bool() & success[:, None]).sum())


def test_no_success_gives_exact_zero_with_zero_gradient() -> None:
    clean, view, old, mask, _, adv = _random_batch(7)
    nobody = torch.zeros(6, dtype=torch.bool)
    for estimator, direction, worst_case, agg in itertools.product(
        KL_ESTIMATORS, KL_DIRECTIONS, WORST_CASES, AGG_MODES
    ):
        view_logps = view.clone().requires_grad_()
        loss, metrics = invariance_penalty(
            view_logps,
            clean,
            mask,
            nobody,
            estimator=estimator,
            direction=direction,
            worst_case=worst_case,
            agg=agg,
            max_tokens=MAX_TOKENS,
        )
        assert loss.requires_grad
        assert loss.item() == 0.0
        loss.backward()
        assert torch.equal(view_logps.grad, torch.zeros_like(view))
        assert torch.equal(metrics.per_view_kl, torch.zeros(3, dtype=torch.float64))
        assert float(metrics.success_rate) == 0.0
    aux, aux_metrics = auxiliary_pg_loss(view[0].clone().requires_grad_(), old, adv, mask, nobody)
    assert aux.item() == 0.0 and aux.requires_grad
    assert all(torch.isfinite(m) for m in aux_metrics)


def test_two_pass_selection_matches_full_autograd() -> None:
    """§7: select on detached values, recompute only the selected views with autograd."""
    clean, view, _, mask, success, _ = _random_batch(8, k_views=4)
    for worst_case, agg in itertools.product(WORST_CASES, AGG_MODES):
        kw = dict(worst_case=worst_case, agg=agg, max_tokens=MAX_TOKENS)
        full_view = view.clone().requires_grad_()
        full, _ = invariance_penalty(full_view, clean, mask, success, **kw)
        full.backward()
        with torch.no_grad():
            _, metrics = invariance_penalty(view, clean, mask, success, **kw)
        selected = metrics.selection_counts > 0
        if worst_case == "batch":
            assert int(selected.sum()) == 1 and bool(selected[metrics.worst_view])
        if worst_case == "mean":
            assert bool(selected.all())
        sub_view = view[selected].clone().requires_grad_()
        sub, _ = invariance_penalty(sub_view, clean, mask, success, **kw)
        sub.backward()
        assert torch.equal(sub, full), (worst_case, agg)
        assert torch.equal(sub_view.grad, full_view.grad[selected]), (worst_case, agg)
        assert torch.equal(full_view.grad[~selected], torch.zeros_like(full_view.grad[~selected]))
        torch.testing.assert_close(
            per_view_kl(view, clean, mask, success, agg=agg, max_tokens=MAX_TOKENS), metrics.per_view_kl
        )


def test_k3_is_nonnegative() -> None:
    gen = torch.Generator().manual_seed(9)
    clean = -torch.rand(1000, generator=gen) * 10
    view = -torch.rand(3, 1000, generator=gen) * 10
    for direction in KL_DIRECTIONS:
        assert (kl_surrogate(view, clean, estimator="k3", direction=direction) >= 0).all()
        assert (kl_surrogate(view, clean, estimator="k2", direction=direction) >= 0).all()


def test_monte_carlo_means_approach_their_exact_expectations() -> None:
    # Tokens drawn from the clean policy c; estimators evaluated against the view policy v.
    c = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    v = torch.tensor([0.25, 0.25, 0.3, 0.2], dtype=torch.float64)
    kl_cv = float((c * (c / v).log()).sum())  # KL(c || v) = 0.2189...
    chi2_cv = float((c * c / v).sum()) - 1.0  # χ²(c || v)
    e_k2 = float((c * (v / c).log() ** 2 / 2).sum())
    gen = torch.Generator().manual_seed(10)
    tokens = torch.multinomial(c, 200_000, replacement=True, generator=gen)
    clean_logps, view_logps = c.log()[tokens], v.log()[tokens]
    expectations = {
        ("k1", "forward"): kl_cv,
        ("k3", "forward"): kl_cv,
        ("k2", "forward"): e_k2,
        ("k1", "reverse"): -kl_cv,
        ("k3", "reverse"): chi2_cv - kl_cv,
        ("k2", "reverse"): e_k2,
    }
    for (estimator, direction), exact in expectations.items():
        samples = kl_surrogate(view_logps, clean_logps, estimator=estimator, direction=direction)
        stderr = float(samples.std()) / math.sqrt(samples.numel())
        assert abs(float(samples.mean()) - exact) < 4 * stderr + 1e-12, (estimator, direction)
    # k3 forward has lower variance than k1 forward (the reason it is the default)
    k1 = kl_surrogate(view_logps, clean_logps, estimator="k1")
    k3 = kl_surrogate(view_logps, clean_logps, estimator="k3")
    assert float(k3.var()) < float(k1.var())


def test_k3_clamp_only_on_the_exponent_side() -> None:
    clean = torch.zeros(4, dtype=torch.float64)
    # forward: x = Δ. Δ = 19.9 is below the clamp (gradient e^Δ - 1), Δ = 25 is above (gradient 0, finite);
    # Δ = -40 and -2 are on the linear side, never clamped (gradient e^Δ - 1 ≈ -1).
    delta = torch.tensor([19.9, 25.0, -40.0, -2.0], dtype=torch.float64, requires_grad=True)
    out = kl_surrogate(clean + delta, clean, estimator="k3")
    out.sum().backward()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(
        delta.grad,
        torch.tensor([math.expm1(19.9), 0.0, math.expm1(-40.0), math.expm1(-2.0)], dtype=torch.float64),
    )
    torch.testing.assert_close(out[1], torch.tensor(math.exp(20.0) - 21.0, dtype=torch.float64))
    # reverse: x = -Δ, so the clamp sits at Δ < -20; Δ = +40 keeps its gradient 1 - e^-40.
    delta = torch.tensor([-19.9, -25.0, 40.0], dtype=torch.float64, requires_grad=True)
    kl_surrogate(clean[:3] + delta, clean[:3], estimator="k3", direction="reverse").sum().backward()
    expected = torch.tensor([1 - math.exp(19.9), 0.0, 1 - math.exp(-40.0)], dtype=torch.float64)
    torch.testing.assert_close(delta.grad, expected)
    # the threshold is a parameter
    delta = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    kl_surrogate(delta, torch.zeros(1, dtype=torch.float64), max_log_ratio=4.0).sum().backward()
    assert delta.grad.item() == 0.0


def test_selective_log_softmax_matches_full_log_softmax() -> None:
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(3, 7, 50, generator=gen, dtype=torch.float64) * 4
    index = torch.randint(0, 50, (3, 7), generator=gen)
    reference_logits = logits.clone().requires_grad_()
    reference = reference_logits.log_softmax(-1).gather(-1, index[..., None])[..., 0]
    reference.sum().backward()
    for chunk_size in (1, 4, 21, 1000):
        chunk_logits = logits.float().requires_grad_()
        out = selective_log_softmax(chunk_logits, index, chunk_size=chunk_size)
        assert out.dtype == torch.float32 and out.shape == (3, 7)
        torch.testing.assert_close(out.double(), reference.detach(), rtol=0, atol=1e-5)
        out.sum().backward()
        torch.testing.assert_close(chunk_logits.grad.double(), reference_logits.grad, rtol=0, atol=1e-6)
    # bf16 logits: float32 arithmetic keeps the error at bf16's rounding of the inputs only
    bf16_logits = logits.bfloat16()
    exact = bf16_logits.double().log_softmax(-1).gather(-1, index[..., None])[..., 0]
    torch.testing.assert_close(selective_log_softmax(bf16_logits, index).double(), exact, rtol=0, atol=1e-5)
    # no positions at all
    assert selective_log_softmax(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).shape == (0,)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_unknown_modes_raise_value_error_naming_the_value() -> None:
    clean, view, old, mask, success, adv = _random_batch(12)
    with pytest.raises(ValueError, match=r"scale must be one of \('group', 'batch', 'none'\), got 'std'"):
        group_advantages(torch.zeros(4), 2, scale="std")
    with pytest.raises(ValueError, match=r"mode must be one of \('token', 'sequence', 'fixed'\), got 'dapo'"):
        aggregate(clean, mask, mode="dapo")
    with pytest.raises(ValueError, match="got 'bnpo'"):
        clipped_pg_loss(clean, old, adv, mask, agg="bnpo")
    with pytest.raises(ValueError, match=r"estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"):
        kl_surrogate(view, clean, estimator="k4")
    with pytest.raises(ValueError, match=r"direction must be one of \('forward', 'reverse'\), got 'both'"):
        invariance_penalty(view, clean, mask, success, direction="both")
    with pytest.raises(ValueError, match=r"worst_case must be one of .*, got 'max'"):
        invariance_penalty(view, clean, mask, success, worst_case="max")
    with pytest.raises(ValueError, match="mode='fixed' needs max_tokens >= T=5 .*, got None"):
        clipped_pg_loss(clean, old, adv, mask, agg="fixed")
    with pytest.raises(ValueError, match="mode='fixed' needs max_tokens >= T=5 .*, got 4"):
        invariance_penalty(view, clean, mask, success, agg="fixed", max_tokens=4)
    with pytest.raises(ValueError, match="max_log_ratio must be > 0, got 0"):
        kl_surrogate(view, clean, max_log_ratio=0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        selective_log_softmax(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), chunk_size=0)
    with pytest.raises(ValueError, match="eps_low and eps_high must be >= 0, got eps_low=-0.1"):
        clipped_pg_loss(clean, old, adv, mask, eps_low=-0.1)


def test_wrong_shapes_raise_value_error_naming_the_shape() -> None:
    clean, view, old, mask, success, adv = _random_batch(13)
    with pytest.raises(ValueError, match=r"group_size must be a positive divisor of .* N=6, got 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match=r"rewards must have shape \(N\), got \(2, 3\)"):
        group_advantages(torch.zeros(2, 3), 3)
    with pytest.raises(ValueError, match=r"old_logps must have shape \(N=6, T=5\), got \(6, 4\)"):
        clipped_pg_loss(clean, old[:, :4], adv, mask)
    with pytest.raises(ValueError, match=r"advantages must have shape \(N=6\), got \(6, 1\)"):
        clipped_pg_loss(clean, old, adv[:, None], mask)
    with pytest.raises(ValueError, match=r"weights must have shape \(N=6\), got \(5,\)"):
        clipped_pg_loss(clean, old, adv, mask, weights=success[:5])
    with pytest.raises(ValueError, match=r"view_logps must have shape \(K, N, T\), got \(6, 5\)"):
        invariance_penalty(clean, clean, mask, success)
    with pytest.raises(ValueError, match=r"clean_logps must have shape \(N=6, T=5\), got \(6, 4\)"):
        invariance_penalty(view, clean[:, :4], mask, success)
    with pytest.raises(ValueError, match=r"completion_mask must have shape \(N=6, T=5\), got \(5, 5\)"):
        invariance_penalty(view, clean, mask[:5], success)
    with pytest.raises(ValueError, match=r"success must have shape \(N=6\), got \(5,\)"):
        auxiliary_pg_loss(clean, old, adv, mask, success[:5])
    with pytest.raises(ValueError, match=r"at least one view \(K >= 1\), got shape \(0, 6, 5\)"):
        invariance_penalty(view[:0], clean, mask, success)
    with pytest.raises(ValueError, match=r"values must have shape \(\.\.\., N, T\) matching mask"):
        aggregate(clean[:, :4], mask)
    with pytest.raises(ValueError, match=r"ending in clean_logps' shape \(6, 5\), got \(3, 6, 4\)"):
        kl_surrogate(view[..., :4], clean)
    with pytest.raises(ValueError, match=r"index must have the shape of logits without its last"):
        selective_log_softmax(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="success must be a bool tensor .*, got dtype torch.int64"):
        invariance_penalty(view, clean, mask, success.long())
    with pytest.raises(TypeError, match="rewards must be a floating-point tensor, got dtype torch.int64"):
        group_advantages(torch.zeros(4, dtype=torch.long), 2)
