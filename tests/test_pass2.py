"""Pass 2's pair plan (pure, no model) and its execution with a stand-in forward."""

import contextlib
import random

import pytest
import torch

from roma import losses
from roma.train.pass2 import PairPlan, plan_pairs, run_pairs, selected_pairs

# ----------------------------------------------------------------------------------------- the plan


def test_batch_plan_runs_auxiliary_pairs_with_grad_and_the_rest_without():
    # 4 sequences, the second failed; auxiliary views j = (0, 1, 2, 0); K = 3
    plan = plan_pairs([True, False, True, True], [True, False, True, True], [0, 1, 2, 0], num_views=3,
                      worst_case="batch", penalty_on=True, aux_on=True, uniform=False)
    assert plan.penalty_rows == (0, 2, 3)
    assert plan.aux_pairs == ((0, 0), (2, 2), (0, 3))
    assert plan.with_grad == plan.aux_pairs
    assert plan.detached == ((0, 2), (1, 0), (1, 2), (1, 3), (2, 0), (2, 3))
    assert plan.select
    # the batch's worst view is 2: (2, 2) already ran with autograd (an auxiliary pair), the others run now
    selected, to_run = selected_pairs(plan, [2, -1, 2, 2])
    assert selected == [(2, 0), (2, 2), (2, 3)]
    assert to_run == [(2, 0), (2, 3)]
    # a successful sequence without a counted token (-1) reads no view: no pair
    assert selected_pairs(plan, [1, -1, -1, 0]) == ([(1, 0), (0, 3)], [(1, 0)])


def test_sharded_plan_covers_every_row_and_reruns_every_selected_pair():
    plan = plan_pairs([True, False, True, True], [True, False, True, True], [0, 1, 2, 0], num_views=3,
                      worst_case="sequence", penalty_on=True, aux_on=True, uniform=True)
    assert plan.penalty_rows == (0, 1, 2, 3)
    assert plan.aux_pairs == ((0, 0), (1, 1), (2, 2), (0, 3))
    assert len(plan.detached) == 3 * 4 - 4
    # row 1 failed (-1): it still runs, under view 0, so that every process runs the same forwards
    selected, to_run = selected_pairs(plan, [2, -1, 2, 0])
    assert selected == to_run == [(2, 0), (0, 1), (2, 2), (0, 3)]


@pytest.mark.parametrize("worst_case", ["token", "mean"])
def test_token_and_mean_plans_run_every_pair_with_grad(worst_case):
    # no correctness mask on L_aux: the auxiliary pair of the failed sequence 1 runs after the penalty's pairs
    plan = plan_pairs([True, False], [True, True], [1, 0], num_views=2, worst_case=worst_case,
                      penalty_on=True, aux_on=True, uniform=False)
    assert plan.penalty_pairs == ((0, 0), (1, 0))
    assert plan.with_grad == ((0, 0), (1, 0), (0, 1))
    assert plan.detached == () and not plan.select


def test_plans_without_a_selection():
    kw = dict(worst_case="batch", aux_on=True, uniform=False)
    one_view = plan_pairs([True, True], [True, True], [0, 0], num_views=1, penalty_on=True, **kw)
    assert one_view.with_grad == ((0, 0), (0, 1)) and not one_view.select  # K = 1: nothing to choose
    aux_only = plan_pairs([True, True], [True, True], [1, 0], num_views=2, penalty_on=False, **kw)
    assert aux_only.penalty_pairs == () and aux_only.with_grad == ((1, 0), (0, 1)) and not aux_only.select
    no_success = plan_pairs([False, False], [False, False], [1, 0], num_views=2, penalty_on=True, **kw)
    assert no_success.with_grad == no_success.detached == () and not no_success.select
    sharded = plan_pairs([False, False], [False, False], [1, 0], num_views=2, penalty_on=True,
                         worst_case="batch", aux_on=True, uniform=True)
    assert sharded.select and len(sharded.detached) + len(sharded.with_grad) == 4


def test_plan_rejects_inconsistent_inputs():
    kw = dict(num_views=2, worst_case="batch", penalty_on=True, aux_on=True, uniform=False)
    with pytest.raises(ValueError, match=r"one entry per sequence, got lengths 2, 2, 1"):
        plan_pairs([True, True], [True, True], [0], **kw)
    with pytest.raises(ValueError, match=r"auxiliary views must lie in \[0, K=2\), got \[0, 2\]"):
        plan_pairs([True, True], [True, True], [0, 2], **kw)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("worst_case", ["batch", "sequence", "token", "mean"])
def test_plan_invariants_against_a_plain_loop(seed, worst_case):
    """Over random masks: each pair runs at most once with and once without autograd, every pair a term
    reads runs, every selected pair ends with autograd, and sharded plans do not depend on the masks."""
    rng = random.Random(seed)
    n, k = rng.randint(1, 6), rng.randint(1, 4)
    success = [rng.random() < 0.5 for _ in range(n)]
    every = [True] * n
    penalty_mask = success if rng.random() < 0.7 else every
    aux_mask = success if rng.random() < 0.7 else every
    aux_view = [rng.randrange(k) for _ in range(n)]
    sequence_view = [rng.randrange(k) if keep else -1 for keep in penalty_mask]
    sizes = set()
    for uniform in (False, True):
        for masks in ((penalty_mask, aux_mask), (every, every), ([False] * n, [False] * n)):
            plan = plan_pairs(*masks, aux_view, num_views=k, worst_case=worst_case, penalty_on=True,
                              aux_on=True, uniform=uniform)
            rows = [i for i in range(n) if uniform or masks[0][i]]
            aux_rows = [i for i in range(n) if uniform or masks[1][i]]
            assert set(plan.penalty_pairs) == {(v, i) for v in range(k) for i in rows}
            assert set(plan.aux_pairs) == {(aux_view[i], i) for i in aux_rows}
            assert len(set(plan.with_grad)) == len(plan.with_grad) and len(set(plan.detached)) == len(plan.detached)
            assert not set(plan.with_grad) & set(plan.detached)
            assert set(plan.aux_pairs) <= set(plan.with_grad)
            assert set(plan.penalty_pairs) <= set(plan.with_grad) | set(plan.detached)
            forwards = [len(plan.detached), len(plan.with_grad)]
            if plan.select:
                selected, to_run = selected_pairs(plan, sequence_view)
                assert set(selected) <= set(plan.with_grad) | set(to_run)
                assert not uniform or to_run == selected
                forwards.append(len(to_run))
            if uniform:
                sizes.add(tuple(forwards))
    assert len(sizes) == 1  # sharded: the same forwards whatever the masks


# -------------------------------------------------------------------------------------- the execution


class StandInForward:
    """``f(pairs) -> (M, T)``: pair (k, i) gives ``weight · (10 k + i)`` on every token, recording each call
    with its grad mode."""

    def __init__(self, num_tokens: int):
        self.weight = torch.ones((), requires_grad=True)
        self.num_tokens = num_tokens
        self.calls = []

    def __call__(self, pairs):
        self.calls.append((torch.is_grad_enabled(), list(pairs)))
        codes = torch.tensor([10.0 * k + i for k, i in pairs]).view(-1, 1)  # (M, 1)
        return (self.weight * codes).expand(-1, self.num_tokens)  # (M, T)


def test_run_pairs_executes_a_batch_plan_in_order():
    plan = plan_pairs([True, False, True], [True, False, True], [1, 0, 0], num_views=2, worst_case="batch",
                      penalty_on=True, aux_on=True, uniform=False)
    forward = StandInForward(num_tokens=2)
    filler = torch.full((3, 2), -1.0)  # (N, T)
    seen = []

    def select(views):
        seen.append(views)
        return losses.ViewSelection(torch.tensor([0, -1, 0]), torch.zeros(2), torch.tensor([1, 0]))

    ran = run_pairs(plan, forward, select=select, filler=filler, no_grad=torch.no_grad)
    assert forward.calls == [(False, [(0, 0), (1, 2)]), (True, [(1, 0), (0, 2)]), (True, [(0, 0)])]
    (views,) = seen
    assert not views.requires_grad
    torch.testing.assert_close(views[:, :, 0], torch.tensor([[0.0, -1.0, 2.0], [10.0, -1.0, 12.0]]))
    assert ran.penalty_slots == [(0, (0, 0)), (0, (0, 2))]
    (selected,) = ran.with_grad.place(ran.penalty_slots, 1, filler)  # (N, T)
    torch.testing.assert_close(selected[:, 0], torch.tensor([0.0, -1.0, 2.0]))
    selected.sum().backward()
    assert float(forward.weight.grad) == 2 * (0 + 2)  # both selected pairs carry autograd


def test_run_pairs_without_selection_runs_once_with_grad():
    plan = plan_pairs([True, True], [True, True], [1, 0], num_views=2, worst_case="mean", penalty_on=True,
                      aux_on=True, uniform=False)
    forward = StandInForward(num_tokens=1)
    ran = run_pairs(plan, forward, select=pytest.fail, filler=torch.zeros(2, 1), no_grad=contextlib.nullcontext)
    assert forward.calls == [(True, [(0, 0), (0, 1), (1, 0), (1, 1)])]
    assert ran.selection is None
    views = ran.with_grad.place(ran.penalty_slots, 2, torch.zeros(2, 1))  # (K, N, T)
    torch.testing.assert_close(views[..., 0], torch.tensor([[0.0, 1.0], [10.0, 11.0]]))
    assert isinstance(plan, PairPlan)
