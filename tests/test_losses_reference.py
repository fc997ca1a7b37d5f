"""roma.losses against TRL 1.16.0's own code: the GRPO loss, its clip metrics, and the advantages.

``GRPOTrainer._compute_loss`` is called unbound on a stand-in ``self`` that supplies only what the method
reads, with the model's log-probs replaced by a leaf tensor: TRL's real loss code runs, nothing is copied.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import nanstd

from roma.losses import clipped_pg_loss, group_advantages

# The roma ``agg`` mode that reproduces each TRL ``loss_type`` (see roma.losses' module docstring). "dapo"
# equals "token" here because one micro-batch on one process is the whole generation batch.
TRL_LOSS_TYPE_TO_AGG = {"grpo": "sequence", "bnpo": "token", "dr_grpo": "fixed", "dapo": "token"}
MAX_COMPLETION_LENGTH = 8


class _SingleProcessAccelerator:
    num_processes = 1

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor


def _trl_grpo_loss(loss_type: str, logps: torch.Tensor, inputs: dict, eps_low: float, eps_high: float):
    """Run TRL's ``_compute_loss`` with ``logps`` standing in for the model's per-token log-probs."""
    n, t_len = logps.shape
    fake_self = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (logps, torch.zeros(n, t_len), None),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=0.0,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        args=SimpleNamespace(delta=None, steps_per_generation=1),
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=MAX_COMPLETION_LENGTH,
        _entropy_bonus_enabled=False,
        accelerator=_SingleProcessAccelerator(),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    loss = GRPOTrainer._compute_loss(fake_self, None, inputs)
    return loss, fake_self._metrics["train"]


def _batch(seed: int, n: int = 8, t_len: int = 6):
    gen = torch.Generator().manual_seed(seed)
    logps = -torch.rand(n, t_len, generator=gen) * 4
    old = logps + torch.randn(n, t_len, generator=gen) * 0.3
    lengths = torch.randint(1, t_len + 1, (n,), generator=gen)
    completion_mask = (torch.arange(t_len)[None, :] < lengths[:, None]).long()  # TRL's mask is int
    completion_mask[1] = 0  # a masked truncated completion (mask_truncated_completions=True)
    advantages = torch.randn(n, generator=gen)
    return logps, old, completion_mask, advantages


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_pg_loss_equals_trl_compute_loss(seed: int) -> None:
    logps, old, completion_mask, advantages = _batch(seed)
    n, t_len = logps.shape
    for (loss_type, agg), reuse_batch in itertools.product(TRL_LOSS_TYPE_TO_AGG.items(), (False, True)):
        name = f"{loss_type} reuse_batch={reuse_batch}"
        # reuse_batch=False: TRL takes old = sg(logps) (ratio 1); True: old_per_token_logps is in inputs.
        inputs = {
            "prompt_ids": torch.zeros(n, 2, dtype=torch.long),
            "prompt_mask": torch.ones(n, 2, dtype=torch.long),
            "completion_ids": torch.zeros(n, t_len, dtype=torch.long),
            "completion_mask": completion_mask,
            "advantages": advantages,
            "num_items_in_batch": completion_mask.sum(),  # read by "dapo" only
        }
        if reuse_batch:
            inputs["old_per_token_logps"] = old
        trl_logps = logps.clone().requires_grad_()
        trl_loss, trl_metrics = _trl_grpo_loss(loss_type, trl_logps, inputs, eps_low=0.2, eps_high=0.28)
        trl_loss.backward()

        our_logps = logps.clone().requires_grad_()
        our_old = old if reuse_batch else logps
        loss, metrics = clipped_pg_loss(
            our_logps, our_old, advantages, completion_mask,
            eps_low=0.2, eps_high=0.28, agg=agg, max_tokens=MAX_COMPLETION_LENGTH,
        )  # fmt: skip
        loss.backward()
        # bit for bit: same operations in the same order
        assert torch.equal(loss, trl_loss), (name, loss, trl_loss)
        assert torch.equal(our_logps.grad, trl_logps.grad), name
        assert float(metrics.clip_low_frac) == pytest.approx(trl_metrics["clip_ratio/low_mean"][0]), name
        assert float(metrics.clip_high_frac) == pytest.approx(trl_metrics["clip_ratio/high_mean"][0]), name
        assert float(metrics.clip_region_frac) == pytest.approx(trl_metrics["clip_ratio/region_mean"][0]), (
            name
        )
        if reuse_batch:  # the test is only meaningful if some tokens were clipped
            assert trl_metrics["clip_ratio/region_mean"][0] > 0


def test_the_agg_modes_differ_on_the_test_batches() -> None:
    """So the mapping above is identified by the test, not a coincidence of equal values."""
    for seed in (0, 1, 2):
        logps, old, completion_mask, advantages = _batch(seed)
        losses = {
            agg: clipped_pg_loss(
                logps, old, advantages, completion_mask, agg=agg, max_tokens=MAX_COMPLETION_LENGTH
            )[0]
            for agg in ("token", "sequence", "fixed")
        }
        assert len({float(v) for v in losses.values()}) == 3, losses


def _trl_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str) -> torch.Tensor:
    """TRL 1.16.0 grpo_trainer.py lines 2763-2788 and 2807 (sum_then_normalize, one reward function),
    verbatim apart from ``self.``; ``nanstd`` is TRL's own."""
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        if num_generations > 1:
            std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
            std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
        else:
            std_rewards = torch.zeros_like(rewards)
    elif scale_rewards == "batch":
        if rewards.numel() > 1:
            std_rewards = nanstd(rewards).expand_as(rewards)
        else:
            std_rewards = torch.zeros_like(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_advantages_equal_trl_bit_for_bit(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for group_size, scale in itertools.product((1, 2, 4), ("group", "batch", "none")):
        rewards = torch.randint(0, 3, (8,), generator=gen).float() + torch.rand(8, generator=gen) * 0.5
        rewards[:group_size] = 1.0  # a zero-std group
        rewards[-1] = float("nan")  # an unscorable completion
        ours = group_advantages(rewards, group_size, scale=scale)
        assert torch.equal(ours, _trl_advantages(rewards, group_size, scale)), (group_size, scale)
        assert torch.isfinite(ours).all()
