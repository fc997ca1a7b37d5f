""":class:`RomaTrainer`: ROMA on TRL's GRPOTrainer (method.md §2–§8); only the TRL hooks live here.

Views are built by :mod:`roma.train.views`, pass 2 is planned and run by :mod:`roma.train.pass2`, and
every formula of ROMA lives in :mod:`roma.losses`. One optimisation step of ``mode="roma"``:

1. **Pass 1 — rollout on clean images** (TRL, unchanged): generate ``G`` completions per prompt on
   the clean image, score them, compute the group advantages. The accuracy reward of every completion
   (``success_reward``) is kept as the success mask ``m_i = 1[R_i > correct_threshold]``.
2. **Views** (:func:`roma.train.views.make_views`): ``K`` degraded views of every prompt image, carried
   with their sample through TRL's shuffle and split (:data:`roma.train.views.ROMA_KEYS`).
3. **Loss** (:meth:`RomaTrainer._compute_loss`): TRL's GRPO loss on the clean image (its clean
   log-probs are kept as the stop-gradient anchor), then pass 2 — the same completions teacher-forced
   under the views — and ``L = L_GRPO + (λ_kl · L_inv^wc + λ_aux · L_aux) / gradient_accumulation_steps``.

Pass 2 runs only where a term looks — the successful sequences under the correctness masks — and, for
``worst_case="batch"``, each sequence's auxiliary view runs with autograd and its other views without;
the worst view is picked on those values, and only its pairs that were not auxiliary ones run again,
with autograd. The vision tower encodes each distinct view image once per call
(``share_view_encoding``). ``mode="grpo"`` or ``λ_kl = λ_aux = 0`` is TRL's GRPO step, bit for bit,
without any degraded forward pass. ``mode="naive_aug"`` is the reward-poisoning baseline: the rollout
image itself is replaced by one degraded view; everything else is GRPO.
"""

import contextlib
import functools
import inspect
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from roma import losses
from roma.data import images
from roma.models.processor import apply_pixel_bounds
from roma.train import pass2, views
from roma.train.config import RomaConfig
from roma.train.vllm_kwargs import extra_llm_kwargs, vllm_engine_kwargs


class RomaTrainer(GRPOTrainer):
    """TRL's GRPOTrainer plus ROMA's pass 2 (or the naive-augmentation baseline), per ``args.mode``.

    Takes GRPOTrainer's arguments; ``args`` must be a :class:`RomaConfig`. Metrics go to TRL's
    ``self._metrics`` and so to the logs and every ``report_to`` backend:

    - ``roma/success_rate``: share of completions with m_i = 1 (whenever ``success_reward`` is a reward);
    - ``roma/loss_grpo``, ``roma/loss_inv``, ``roma/loss_aux``: L_GRPO, L_inv^wc, L_aux of a micro-batch,
      before the division by gradient_accumulation_steps (so ``loss`` ≈ their λ-weighted sum);
    - ``roma/kl/<type>``: L_inv(k) of each view (per type with ``view_sampling="step"``, per view slot
      ``view<k>`` otherwise) and ``roma/worst/<type-or-slot>``: share of the penalty's selections (one-hot
      for ``worst_case="batch"``);
    - ``roma/aux_clip_ratio/{low,high,region}``: clip fractions of the auxiliary ratio (TRL's
      ``clip_ratio/*`` are the clean ones);
    - ``time/rollout``, ``time/views``, ``time/clean_pass``, ``time/pass2``, ``time/backward`` (seconds).
    """

    _tag_names = ["trl", "grpo", "roma"]
    _name = "ROMA"

    def __init__(self, model: Any, reward_funcs: Any = None, args: RomaConfig | None = None, **kwargs: Any):
        if not isinstance(args, RomaConfig):
            raise TypeError(f"RomaTrainer needs args=RomaConfig(...), got {type(args).__name__}")
        # The run's image bounds reach vLLM's processor as well as the trainer's (roma.train.vllm_kwargs).
        with extra_llm_kwargs(vllm_engine_kwargs(args) if args.use_vllm and args.vllm_mode == "colocate" else {}):
            super().__init__(model, reward_funcs, args, **kwargs)
        if args.pixel_bounds:
            apply_pixel_bounds(self.processing_class, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
        if args.mode != "grpo" and not self._is_vlm:
            raise ValueError(f"mode={args.mode!r} degrades images, so it needs a vision-language processor")
        if args.success_reward in self.reward_func_names:
            self._success_index: int | None = self.reward_func_names.index(args.success_reward)
        elif args.roma_terms_on:
            raise ValueError(
                f"success_reward={args.success_reward!r} is not among the reward functions "
                f"{self.reward_func_names}; ROMA's success mask (method.md §3) needs the accuracy reward"
            )
        else:
            self._success_index = None
        if args.roma_terms_on and args.share_view_encoding:
            base = self.model.get_base_model() if is_peft_model(self.model) else self.model
            if "mm_encoder_outputs" not in inspect.signature(type(base).forward).parameters or not hasattr(
                base, "get_image_features"
            ):
                raise ValueError(
                    f"share_view_encoding=True passes the views' encodings to the model through mm_encoder_outputs, "
                    f"which {type(base).__name__}.forward does not take; set share_view_encoding=False"
                )
        self._check_train_images()
        self._step_seconds = {"prepare": 0.0, "loss": 0.0}

    # ------------------------------------------------------------------------------------------
    # Images: checked up front, prepared once per row for the rollout and the views alike
    # ------------------------------------------------------------------------------------------

    @property
    def _image_processor(self) -> Any:
        return getattr(self.processing_class, "image_processor", None) if self._is_vlm else None

    def _check_train_images(self) -> None:
        """``ValueError`` naming the training rows that cannot be used (:func:`roma.data.images.dataset_problems`:
        repeated ids, rows without an image, unreadable images, images the processor refuses under
        ``image_fit="reject"``), before the first step. A dataset without image columns is text-only GRPO."""
        dataset = self.train_dataset
        columns = getattr(dataset, "column_names", None) or []
        if dataset is None or not self._is_vlm or not {"image", "images"} & set(columns):
            return
        problems = images.dataset_problems(dataset, self._image_processor, image_fit=self.args.image_fit)
        if problems:
            listed = "; ".join(f"{row!r}: {reason}" for row, reason in problems[:10])
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise ValueError(
                f"{len(problems)} problem(s) with training rows: {listed}{more}; fix or drop these rows"
                + ("" if self.args.image_fit == "pad" else " (image_fit='pad' pads the images the processor refuses)")
            )

    def _prepare_images(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows with their images through :func:`roma.data.images.prepare_row_images` (upright, RGB, capped
        at the processor's ``max_pixels``, padded under ``image_fit="pad"``); rows without image columns as is."""
        if not self._is_vlm or not inputs or not {"image", "images"} & set(inputs[0]):
            return inputs
        prepared = []
        for example in inputs:
            try:
                rgb = images.prepare_row_images(example, self._image_processor, image_fit=self.args.image_fit)
            except images.ImageError as error:
                raise ValueError(f"training row {example.get('id', '?')!r}: {error}") from None
            prepared.append(images.with_images(example, rgb))
        return prepared

    # ------------------------------------------------------------------------------------------
    # Generation side: success mask, views, naive augmentation
    # ------------------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        start = time.perf_counter()
        inputs = self._prepare_images(inputs)
        if self.args.mode == "naive_aug" and mode == "train":
            inputs = self._degrade_rollout_images(inputs)
        rollout_start = time.perf_counter()
        with capture_first_return(self, "_calculate_rewards") as rewards:
            output = super()._generate_and_score_completions(inputs)
        rollout_end = time.perf_counter()

        if self._success_index is not None:
            success = self._success_mask(rewards[0])  # (N_global,)
            self._metrics[mode]["roma/success_rate"].append(success.float().mean().item())
            # Rewards are gathered over processes, advantages sliced per process: slice the same way.
            local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
            output["roma_success"] = success[local]
        if self.args.roma_terms_on:
            if output.get("num_images") is None or any(n < 1 for n in output["num_images"]):
                raise ValueError(
                    f"ROMA degrades the prompt images, so every prompt needs at least one image; got images per "
                    f"prompt {output.get('num_images')}"
                )
            output.update(self._make_views(inputs, output["image_grid_thw"], output["num_images"]))
        self._metrics[mode]["time/rollout"].append(rollout_end - rollout_start)
        self._metrics[mode]["time/views"].append(rollout_start - start + time.perf_counter() - rollout_end)
        return output

    def _success_mask(self, rewards_per_func: torch.Tensor) -> torch.Tensor:  # (N_global,) bool
        """m_i = 1[R_i > τ] from the success reward of ``rewards_per_func`` (N_global, F), gathered over
        processes; an unscored (NaN) reward is no success."""
        rewards = rewards_per_func[:, self._success_index]  # (N_global,)
        return torch.nan_to_num(rewards, nan=-math.inf) > self.args.correct_threshold

    def _make_views(
        self, inputs: list[dict[str, Any]], image_grid_thw: torch.Tensor, num_images: list[int] | None = None
    ) -> dict[str, Any]:
        """The per-sample ROMA entries of a local generation batch (:func:`roma.train.views.make_views`)."""
        return views.make_views(
            self.args, self.state.global_step, inputs, image_grid_thw, self.processing_class.image_processor,
            self.accelerator.device, num_images,
        )

    def _degrade_rollout_images(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """naive_aug: each example's image replaced by one view (:func:`roma.train.views.degrade_rollout_images`)."""
        return views.degrade_rollout_images(self.args, self.state.global_step, inputs)

    # ------------------------------------------------------------------------------------------
    # Loss side: pass 2 and the ROMA terms
    # ------------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        start = time.perf_counter()
        if self.args.roma_terms_on:  # TRL's first log-prob pass inside its loss is the clean pass
            with capture_first_return(self, "_get_per_token_logps_and_entropies") as clean_pass:
                grpo_loss = super()._compute_loss(model, inputs)
        else:
            grpo_loss = super()._compute_loss(model, inputs)
        clean_end = time.perf_counter()
        self._metrics[mode]["time/clean_pass"].append(clean_end - start)
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._log_mean(mode, "roma/loss_grpo", grpo_loss.detach() * normalizer)
        if not self.args.roma_terms_on:
            self._step_seconds["loss"] += clean_end - start
            return grpo_loss

        clean_logps = clean_pass[0][0].detach()  # (N, T) anchor sg(ℓ)
        roma_loss = self._roma_loss(inputs, clean_logps, mode)
        loss = grpo_loss + roma_loss / normalizer
        end = time.perf_counter()
        self._metrics[mode]["time/pass2"].append(end - clean_end)
        self._step_seconds["loss"] += end - start
        return loss

    def _roma_loss(self, inputs: dict[str, Any], clean_logps: torch.Tensor, mode: str) -> torch.Tensor:
        """λ_kl · L_inv^wc + λ_aux · L_aux of one micro-batch (method.md §3–§6): plan pass 2
        (:func:`roma.train.pass2.plan_pairs`), run it (:func:`roma.train.pass2.run_pairs`), take the terms
        from :mod:`roma.losses`, log. Rows a term does not read hold a detached filler equal to its anchor
        (Δ = 0, ρ̃ = 1), which roma.losses leaves out anyway."""
        args = self.args
        completion_mask = inputs["completion_mask"]  # (N, T)
        if "tool_mask" in inputs:
            completion_mask = completion_mask * inputs["tool_mask"]
        completion_mask = completion_mask.bool()
        success = inputs["roma_success"]  # (N,) bool
        penalty_mask = success if args.correctness_mask else torch.ones_like(success)  # (N,) rows L_inv reads
        aux_mask = success if args.aux_correct_only else torch.ones_like(success)  # (N,) rows L_aux reads
        plan = pass2.plan_pairs(
            penalty_mask.tolist(), aux_mask.tolist(), inputs["roma_aux_view"].tolist(), num_views=args.roma_views,
            worst_case=args.worst_case, penalty_on=args.lambda_kl > 0, aux_on=args.lambda_aux > 0,
            uniform=self._uniform_view_passes,
        )
        kl = dict(estimator=args.kl_estimator, direction=args.kl_direction, agg=args.roma_agg, max_tokens=args.max_completion_length)
        select = functools.partial(
            losses.select_views, clean_logps=clean_logps, completion_mask=completion_mask, success=penalty_mask,
            worst_case=args.worst_case, **kl,
        )
        ran = pass2.run_pairs(
            plan, self._view_logps_fn(inputs), select=select, filler=clean_logps,
            no_grad=self._no_grad_pass,
        )
        loss = clean_logps.new_zeros(())
        if args.lambda_kl > 0:
            if ran.selection is not None:
                (selected,) = ran.with_grad.place(ran.penalty_slots, 1, clean_logps)  # (N, T)
                inv_loss = losses.selected_view_penalty(selected, clean_logps, completion_mask, penalty_mask, **kl)
                per_view_kl, counts = ran.selection.per_view_kl, ran.selection.selection_counts
            else:
                views = ran.with_grad.place(ran.penalty_slots, args.roma_views, clean_logps)  # (K, N, T)
                inv_loss, metrics = losses.invariance_penalty(
                    views, clean_logps, completion_mask, penalty_mask, worst_case=args.worst_case, **kl
                )
                per_view_kl, counts = metrics.per_view_kl, metrics.selection_counts
            loss = loss + args.lambda_kl * inv_loss
            self._log_mean(mode, "roma/loss_inv", inv_loss.detach())
            counts = counts if bool(penalty_mask.any()) else torch.zeros_like(counts)
            self._log_views(mode, inputs, per_view_kl, counts)
        if args.lambda_aux > 0:
            loss = loss + args.lambda_aux * self._aux_loss(inputs, ran.with_grad, plan, clean_logps, completion_mask, mode)
        return loss

    def _aux_loss(
        self,
        inputs: dict[str, Any],
        with_grad: pass2.PairLogps,
        plan: pass2.PairPlan,
        clean_logps: torch.Tensor,  # (N, T)
        completion_mask: torch.Tensor,  # (N, T) bool
        mode: str,
    ) -> torch.Tensor:
        """L_aux (method.md §5) on each sequence's auxiliary view, logged with its clip fractions."""
        args = self.args
        old_logps = inputs.get("old_per_token_logps")  # (N, T) ℓ_old, absent when equal to sg(ℓ)
        old_logps = clean_logps if old_logps is None else old_logps
        filler = old_logps if args.aux_ratio_anchor == "clean" else clean_logps
        (aux_logps,) = with_grad.place([(0, pair) for pair in plan.aux_pairs], 1, filler)  # (N, T)
        anchor = old_logps if args.aux_ratio_anchor == "clean" else aux_logps.detach()
        aux_loss, aux_metrics = losses.auxiliary_pg_loss(
            aux_logps,
            anchor,
            inputs["advantages"],
            completion_mask,
            inputs["roma_success"],
            eps_low=self.epsilon_low,
            eps_high=self.epsilon_high,
            correct_only=args.aux_correct_only,
            agg=args.roma_agg,
            max_tokens=args.max_completion_length,
        )
        self._log_mean(mode, "roma/loss_aux", aux_loss.detach())
        self._log_mean(mode, "roma/aux_clip_ratio/low", aux_metrics.clip_low_frac)
        self._log_mean(mode, "roma/aux_clip_ratio/high", aux_metrics.clip_high_frac)
        self._log_mean(mode, "roma/aux_clip_ratio/region", aux_metrics.clip_region_frac)
        return aux_loss

    @contextlib.contextmanager
    def _no_grad_pass(self) -> Iterator[None]:
        """Forwards without autograd, and without gradient checkpointing (it has nothing to save)."""
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            yield

    @property
    def _uniform_view_passes(self) -> bool:
        """Whether parameters are sharded (DeepSpeed ZeRO-3 or FSDP): then every process must run the same
        forward passes, so pass 2 may not skip rows or views on its own data."""
        if self.is_fsdp_enabled:
            return True
        plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        return plugin is not None and plugin.zero_stage == 3

    def _view_logps_fn(self, inputs: dict[str, Any]) -> Callable[[list[tuple[int, int]]], torch.Tensor]:
        """``f(pairs) -> (M, T)``, pass 2's forward (:func:`roma.train.pass2.view_logps_fn`) on the unwrapped
        model; the views' encodings are shared unless parameters are sharded (every process must then run
        the same forwards)."""
        return pass2.view_logps_fn(
            inputs,
            model=self.model,
            per_token_logps=lambda *args, **kwargs: self._get_per_token_logps_and_entropies(self.model, *args, **kwargs)[0],
            prepare_input=self._prepare_input,
            autocast=self.accelerator.autocast,
            share_encoding=self.args.share_view_encoding and not self._uniform_view_passes,
            view_batch_size=self.args.view_batch_size,
        )

    # ------------------------------------------------------------------------------------------
    # Metrics and timing
    # ------------------------------------------------------------------------------------------

    def _log_mean(self, mode: str, name: str, value: torch.Tensor) -> None:
        """Append the mean over processes of a 0-d tensor to TRL's metrics (a collective: call on every rank)."""
        value = value.detach().float().reshape(1).to(self.accelerator.device)
        self._metrics[mode][name].append(self.accelerator.gather(value).mean().item())

    def _log_views(self, mode: str, inputs: dict[str, Any], per_view_kl: torch.Tensor, counts: torch.Tensor) -> None:
        """Per-view KL means and the share of selections of each view, averaged/summed over processes."""
        num_views = self.args.roma_views
        per_view_kl = self.accelerator.gather(per_view_kl.detach().float().to(self.accelerator.device))
        counts = self.accelerator.gather(counts.detach().float().to(self.accelerator.device))
        per_view_kl = per_view_kl.view(-1, num_views).mean(0)  # (K,)
        counts = counts.view(-1, num_views).sum(0)  # (K,)
        share = counts / counts.sum().clamp(min=1)
        if self.args.view_sampling == "step" and self.args.view_image_types == "shared":  # view k: one type
            names = list(inputs["roma_view_types"][0])
        else:
            names = [f"view{k}" for k in range(num_views)]
        for k, name in enumerate(names):
            self._metrics[mode][f"roma/kl/{name}"].append(per_view_kl[k].item())
            self._metrics[mode][f"roma/worst/{name}"].append(share[k].item())

    def _prepare_inputs(self, generation_batch):
        start = time.perf_counter()
        inputs = super()._prepare_inputs(generation_batch)
        self._step_seconds["prepare"] += time.perf_counter() - start
        return inputs

    def training_step(self, model, inputs, num_items_in_batch):
        self._step_seconds = {"prepare": 0.0, "loss": 0.0}
        start = time.perf_counter()
        output = super().training_step(model, inputs, num_items_in_batch)
        total = time.perf_counter() - start
        # Trainer.training_step = _prepare_inputs + compute_loss + backward (+ bookkeeping).
        self._metrics["train"]["time/backward"].append(total - self._step_seconds["prepare"] - self._step_seconds["loss"])
        return output


@contextlib.contextmanager
def capture_first_return(obj: Any, method: str) -> Iterator[list[Any]]:
    """Within the block, ``obj.<method>`` also records its first return value in the yielded list (empty
    if it was not called); the method is restored on exit. How the trainer reads a value TRL computes
    inside a method it does not return it from: the rewards per function of ``_calculate_rewards``, the
    clean log-probs of ``_compute_loss``'s first ``_get_per_token_logps_and_entropies``."""
    captured: list[Any] = []
    original = getattr(obj, method)
    shadowed = vars(obj).get(method)  # an instance attribute already in place (e.g. a test's), restored on exit

    def recording(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not captured:
            captured.append(result)
        return result

    setattr(obj, method, recording)
    try:
        yield captured
    finally:
        if shadowed is None:
            delattr(obj, method)  # the class's method is visible again
        else:
            setattr(obj, method, shadowed)
