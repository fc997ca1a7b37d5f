"""ROMA on TRL's GRPOTrainer: :class:`RomaConfig` and :class:`RomaTrainer` (method.md §2–§8).

The trainer only wires data; every formula of ROMA lives in :mod:`roma.losses`.

One optimisation step of ``mode="roma"``:

1. **Pass 1 — rollout on clean images** (TRL, unchanged): generate ``G`` completions per prompt on
   the clean image, score them, compute the group advantages. The accuracy reward of every completion
   (``success_reward``) is kept as the success mask ``m_i = 1[R_i > correct_threshold]``.
2. **Views** (:meth:`RomaTrainer._make_views`): ``K`` degraded views of every prompt image, of ``K``
   distinct seen types (drawn once per step and shared by the batch, ``view_sampling="step"``, or per
   image) with training-range parameters, seeded by ``derive_seed(view_seed, step, example id, view
   index, type)`` — the same pixels on every process and after a resume. They are processed by the same
   image processor; a view must give the clean image's ``image_grid_thw`` (same vision-token count, so
   the same token sequence), else ``RuntimeError``. They travel with their sample through TRL's shuffle
   and split as per-sample entries (see :data:`ROMA_KEYS`).
3. **Loss** (:meth:`RomaTrainer._compute_loss`): TRL's GRPO loss on the clean image (its clean
   log-probs are kept as the stop-gradient anchor), then pass 2 — the same completions teacher-forced
   under the views — and ``L = L_GRPO + (λ_kl · L_inv^wc + λ_aux · L_aux) / gradient_accumulation_steps``.

Pass 2 never samples a token from a degraded image and never builds a full-vocabulary log-softmax:
log-probs come from TRL's fused LM head, which gathers the sampled tokens only. It runs only where a
term looks — the successful sequences under the correctness masks — and, for ``worst_case="batch"``,
each sequence's auxiliary view runs with autograd and its other views without; the worst view is picked
on those values, and only its pairs that were not auxiliary ones run again, with autograd. The vision
tower encodes each distinct view image once per call (``share_view_encoding``). ``mode="grpo"`` or
``λ_kl = λ_aux = 0`` is TRL's GRPO step, bit for bit, without any degraded forward pass. ``mode="naive_aug"`` is the reward-poisoning
baseline: the rollout image itself is replaced by one degraded view; everything else is GRPO.
"""

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from accelerate.utils import is_peft_model
from PIL import Image
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from roma import losses
from roma.degrade import SEEN, UNSEEN, apply, derive_seed, sample_params, sample_views

MODES: tuple[str, ...] = ("roma", "grpo", "naive_aug")
VIEW_SAMPLINGS: tuple[str, ...] = ("step", "example")
AUX_RATIO_ANCHORS: tuple[str, ...] = ("clean", "view")
POOLS: dict[str, tuple[str, ...]] = {"seen": SEEN, "unseen": UNSEEN}
DEGRADATION_LEVELS: tuple[str, ...] = ("train", "1", "2", "3")
# λ defaults per mode when left unset: the paper-style start of method.md §6 for ROMA, 0 otherwise.
DEFAULT_LAMBDAS: dict[str, tuple[float, float]] = {"roma": (0.05, 0.1), "grpo": (0.0, 0.0), "naive_aug": (0.0, 0.0)}
# The roma.losses aggregation matching a TRL loss_type (see roma.losses' module docstring); other
# loss types aggregate the ROMA terms as a token mean over the micro-batch.
AGG_BY_LOSS_TYPE: dict[str, str] = {"grpo": "sequence", "bnpo": "token", "dapo": "token", "dr_grpo": "fixed"}

# Per-sample entries RomaTrainer adds to TRL's batch. Each is a tensor or a list whose first dimension
# is the sample, so TRL's shuffle_sequence_dict / split_tensor_dict move them with their sample.
ROMA_KEYS: tuple[str, ...] = (
    "roma_success",  # (N,) bool, m_i
    "roma_view_pixel_values",  # N tensors (K, rows_i, D): the views of sample i's image, processed
    "roma_view_types",  # N tuples of K degradation type names
    "roma_view_params",  # N tuples of K parameter dicts (replayable with roma.degrade.apply)
    "roma_aux_view",  # (N,) long, the view j of the auxiliary policy gradient (§5)
)


def _help(text: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"help": text}
    if choices is not None:
        metadata["choices"] = list(choices)
    return metadata


@dataclass
class RomaConfig(GRPOConfig):
    """GRPOConfig plus the ROMA options of method.md. Invalid combinations raise at construction."""

    mode: Literal["roma", "grpo", "naive_aug"] = field(
        default="roma",
        metadata=_help(
            "'roma': GRPO on clean rollouts plus the invariance penalty and the auxiliary policy gradient on "
            "degraded views (method.md §2-§6). 'grpo': plain GRPO, no degraded image anywhere (the clean "
            "baseline). 'naive_aug': GRPO whose rollout images are replaced by one training-range degraded view "
            "(the naive-augmentation baseline: rewards of trajectories sampled on degraded images punish "
            "perception failures as reasoning errors, the 'reward poisoning' ROMA avoids); evaluation "
            "rollouts stay clean.",
            MODES,
        ),
    )
    roma_views: int = field(
        default=3,
        metadata=_help(
            "K, the number of degraded views per image per step, of K distinct types of the pool (method.md §2). "
            "More views make the worst case harder; each view costs one teacher-forced forward pass. "
            "Must not exceed the pool size."
        ),
    )
    lambda_kl: float | None = field(
        default=None,
        metadata=_help(
            "λ_kl, the weight of the worst-case invariance penalty L_inv^wc (method.md §6). Unset: 0.05 for "
            "mode='roma' (paper-style default; the exact value was lost) and 0 for the other modes, where a "
            "value > 0 is an error because it would be ignored."
        ),
    )
    lambda_aux: float | None = field(
        default=None,
        metadata=_help(
            "λ_aux, the weight of the auxiliary policy gradient L_aux on a degraded view with the clean "
            "advantages (method.md §5-§6); it keeps a reward signal under degradation so the invariance "
            "penalty cannot collapse the policy. Unset: 0.1 for mode='roma', 0 otherwise."
        ),
    )
    kl_estimator: Literal["k1", "k2", "k3"] = field(
        default="k3",
        metadata=_help(
            "Per-token KL estimator of Δ = ℓ^view − sg(ℓ^clean) (method.md §3). 'k3' = exp(Δ)−1−Δ is "
            "non-negative and low-variance for tokens sampled from the clean policy; 'k1', 'k2' for ablations.",
            losses.KL_ESTIMATORS,
        ),
    )
    kl_direction: Literal["forward", "reverse"] = field(
        default="forward",
        metadata=_help(
            "'forward' estimates KL(π_clean ‖ π_view), unbiased under clean samples; 'reverse' uses the "
            "GRPO-reference convention r = exp(−Δ) (method.md §3).",
            losses.KL_DIRECTIONS,
        ),
    )
    worst_case: Literal["batch", "sequence", "token", "mean"] = field(
        default="batch",
        metadata=_help(
            "Which view the penalty regularises (method.md §4): 'batch' the view with the largest "
            "batch-aggregated KL (the paper's formula; only it and the auxiliary view get autograd), "
            "'sequence' per trajectory, 'token' per token, 'mean' the average over views (ablation 'no worst "
            "case'; all K views get autograd). With several processes the worst case is taken over each "
            "process's micro-batch.",
            losses.WORST_CASES,
        ),
    )
    correctness_mask: bool = field(
        default=True,
        metadata=_help(
            "Penalise only successful trajectories (m_i = 1, method.md §3): making a wrong reasoning path "
            "invariant would teach the model to be consistently wrong. False for the ablation."
        ),
    )
    aux_correct_only: bool = field(
        default=True,
        metadata=_help(
            "Apply the auxiliary policy gradient to successful trajectories only (method.md §5, following the "
            "paper's brief); False uses every trajectory with its clean advantage."
        ),
    )
    aux_ratio_anchor: Literal["clean", "view"] = field(
        default="clean",
        metadata=_help(
            "Denominator of the auxiliary ratio ρ̃ = exp(ℓ^j − ℓ_old): 'clean' uses the behaviour policy's clean "
            "log-prob (the trajectory was sampled on the clean image), 'view' the view's own detached log-prob.",
            AUX_RATIO_ANCHORS,
        ),
    )
    correct_threshold: float = field(
        default=0.0,
        metadata=_help("τ of the success mask m_i = 1[R_i > τ], with R_i the success_reward (method.md §3)."),
    )
    success_reward: str = field(
        default="accuracy_reward",
        metadata=_help(
            "Name of the reward function that defines success. It must be the accuracy reward alone: with an "
            "accuracy+format sum, a wrong but well-formatted answer would count as a success. Required among "
            "the trainer's reward functions when the ROMA terms are on."
        ),
    )
    degradation_pool: Literal["seen", "unseen"] = field(
        default="seen",
        metadata=_help(
            "Pool the view types come from (docs/degradations.md). Training uses the seen pool; the unseen "
            "pool is held out for evaluation (it has fixed levels only, no training range).",
            tuple(POOLS),
        ),
    )
    degradation_level: Literal["train", "1", "2", "3"] = field(
        default="train",
        metadata=_help(
            "'train' draws each view's parameters from its type's training range; '1'-'3' use a fixed "
            "severity (level 3 lies outside the training range).",
            DEGRADATION_LEVELS,
        ),
    )
    view_sampling: Literal["step", "example"] = field(
        default="step",
        metadata=_help(
            "'step': the K distinct types (and the auxiliary view) are drawn once per optimisation step and "
            "shared by every image, as in the paper ('at each training step we sample a subset of K distinct "
            "augmentations'), so the batch worst case picks a degradation type; parameters and noise are "
            "still drawn per image. 'example': every image draws its own K types.",
            VIEW_SAMPLINGS,
        ),
    )
    view_seed: int = field(
        default=0,
        metadata=_help(
            "Seed of the views: view k of example e at step s is derived from (view_seed, s, e, k), so the "
            "views are the same on every process and after resuming from a checkpoint."
        ),
    )
    view_batch_size: int | None = field(
        default=None,
        metadata=_help(
            "(view, sequence) pairs per teacher-forced forward of pass 2. Unset: as many as the call has distinct "
            "sequences — one view's worth, the size of TRL's clean pass — so K − 1 views without autograd run as "
            "K − 1 forwards. A forward holds a transient that grows with its rows (TRL's fused LM-head tile, the "
            "activations) on top of the graphs kept for backward: larger values run fewer, bigger forwards "
            "(faster on CPU, see docs/trainer.md) at the cost of peak memory; smaller ones bound it."
        ),
    )
    share_view_encoding: bool = field(
        default=True,
        metadata=_help(
            "Encode each distinct view image once per pass-2 call and give the encoding to every sequence that "
            "shows it (the G completions of a prompt share its views), through transformers' mm_encoder_outputs: "
            "the vision tower runs G times less, and its gradient is the same sum. False runs the vision tower "
            "once per sequence, as TRL's clean pass does. Under ZeRO-3 / FSDP pass 2 always runs per sequence "
            "(every process must run the same forwards)."
        ),
    )
    roma_agg: Literal["token", "sequence", "fixed"] | None = field(
        default=None,
        metadata=_help(
            "Aggregation of L_inv and L_aux over tokens (roma.losses.aggregate). Unset: follows loss_type — "
            "'sequence' for 'grpo', 'fixed' (÷ N·max_completion_length) for 'dr_grpo', 'token' otherwise — so "
            "the ROMA terms and L_GRPO share a scale.",
            losses.AGG_MODES,
        ),
    )

    def __post_init__(self) -> None:
        self._check_roma_options()
        super().__post_init__()
        if self.roma_agg == "fixed" and self.max_completion_length is None:
            raise ValueError("roma_agg='fixed' divides by max_completion_length, which must then be set")

    def _check_roma_options(self) -> None:
        """Validate (and resolve the unset) ROMA fields; ``ValueError`` naming the value and the choices."""
        choices = {
            "mode": MODES,
            "kl_estimator": losses.KL_ESTIMATORS,
            "kl_direction": losses.KL_DIRECTIONS,
            "worst_case": losses.WORST_CASES,
            "aux_ratio_anchor": AUX_RATIO_ANCHORS,
            "degradation_pool": tuple(POOLS),
            "degradation_level": DEGRADATION_LEVELS,
            "view_sampling": VIEW_SAMPLINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")

        pool = POOLS[self.degradation_pool]
        if isinstance(self.roma_views, bool) or not isinstance(self.roma_views, int):
            raise TypeError(f"roma_views must be an int, got {self.roma_views!r}")
        if not 1 <= self.roma_views <= len(pool):
            raise ValueError(
                f"roma_views (K) must be in [1, {len(pool)}]: the K views of an image have distinct types and "
                f"the {self.degradation_pool} pool has {len(pool)} ({', '.join(pool)}); got {self.roma_views}"
            )
        if self.degradation_pool == "unseen" and self.degradation_level == "train":
            raise ValueError(
                "degradation_level='train' needs degradation_pool='seen': the unseen types have no training "
                "range (docs/degradations.md); use level '1', '2' or '3'"
            )

        default_kl, default_aux = DEFAULT_LAMBDAS[self.mode]
        self.lambda_kl = default_kl if self.lambda_kl is None else self.lambda_kl
        self.lambda_aux = default_aux if self.lambda_aux is None else self.lambda_aux
        for name in ("lambda_kl", "lambda_aux"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            setattr(self, name, float(value))
            if self.mode != "roma" and value > 0:
                raise ValueError(
                    f"{name}={value} has no effect with mode={self.mode!r}, which trains without the ROMA terms; "
                    "use mode='roma' or leave lambda_kl / lambda_aux unset"
                )

        if not isinstance(self.correct_threshold, (int, float)) or not math.isfinite(self.correct_threshold):
            raise ValueError(f"correct_threshold must be a finite number, got {self.correct_threshold!r}")
        if not isinstance(self.success_reward, str) or not self.success_reward:
            raise ValueError(f"success_reward must name a reward function, got {self.success_reward!r}")
        if isinstance(self.view_seed, bool) or not isinstance(self.view_seed, int) or self.view_seed < 0:
            raise ValueError(f"view_seed must be an int >= 0, got {self.view_seed!r}")
        if self.view_batch_size is not None and (
            isinstance(self.view_batch_size, bool) or not isinstance(self.view_batch_size, int) or self.view_batch_size < 1
        ):
            raise ValueError(f"view_batch_size must be an int >= 1 or None, got {self.view_batch_size!r}")
        if not isinstance(self.share_view_encoding, bool):
            raise ValueError(f"share_view_encoding must be a bool, got {self.share_view_encoding!r}")
        if self.roma_agg is None:
            self.roma_agg = AGG_BY_LOSS_TYPE.get(self.loss_type, "token")
        elif self.roma_agg not in losses.AGG_MODES:
            raise ValueError(f"roma_agg must be one of {list(losses.AGG_MODES)} or None, got {self.roma_agg!r}")

    @property
    def roma_terms_on(self) -> bool:
        """Whether pass 2 runs: ROMA mode with a non-zero λ."""
        return self.mode == "roma" and (self.lambda_kl > 0 or self.lambda_aux > 0)

    @property
    def view_pool(self) -> tuple[str, ...]:
        return POOLS[self.degradation_pool]

    @property
    def view_level(self) -> int | str:
        """The level as roma.degrade takes it: ``"train"`` or the int 1, 2, 3."""
        return self.degradation_level if self.degradation_level == "train" else int(self.degradation_level)


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
        super().__init__(model, reward_funcs, args, **kwargs)
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
        self._rewards_per_func: torch.Tensor | None = None  # (N_global, F), the last _calculate_rewards
        self._capture_clean_logps = False
        self._clean_logps: torch.Tensor | None = None
        self._step_seconds = {"prepare": 0.0, "loss": 0.0}

    # ------------------------------------------------------------------------------------------
    # Generation side: success mask, views, naive augmentation
    # ------------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rewards_per_func = rewards_per_func  # (N_global, F), gathered over processes
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        start = time.perf_counter()
        if self.args.mode == "naive_aug" and mode == "train":
            inputs = self._degrade_rollout_images(inputs)
        rollout_start = time.perf_counter()
        output = super()._generate_and_score_completions(inputs)
        rollout_end = time.perf_counter()

        if self._success_index is not None:
            success = self._success_mask()  # (N_global,)
            self._metrics[mode]["roma/success_rate"].append(success.float().mean().item())
            # Rewards are gathered over processes, advantages sliced per process: slice the same way.
            local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
            output["roma_success"] = success[local]
        if self.args.roma_terms_on:
            if output.get("num_images") is None or any(n != 1 for n in output["num_images"]):
                raise ValueError(
                    f"ROMA degrades the prompt image, so every prompt needs exactly one image; got images per "
                    f"prompt {output.get('num_images')}"
                )
            output.update(self._make_views(inputs, output["image_grid_thw"]))
        self._metrics[mode]["time/rollout"].append(rollout_end - rollout_start)
        self._metrics[mode]["time/views"].append(rollout_start - start + time.perf_counter() - rollout_end)
        return output

    def _success_mask(self) -> torch.Tensor:  # (N_global,) bool
        """m_i = 1[R_i > τ] from the success reward of the last scoring; an unscored (NaN) reward is no success."""
        rewards = self._rewards_per_func[:, self._success_index]  # (N_global,)
        return torch.nan_to_num(rewards, nan=-math.inf) > self.args.correct_threshold

    def _step_view_plan(self, step: int) -> tuple[list[str] | None, int | None]:
        """With ``view_sampling="step"``: the step's K distinct types and its auxiliary view; else (None, None)."""
        if self.args.view_sampling != "step":
            return None, None
        pool, k = self.args.view_pool, self.args.roma_views
        order = np.random.default_rng(derive_seed(self.args.view_seed, step, "types")).permutation(len(pool))
        aux_view = int(np.random.default_rng(derive_seed(self.args.view_seed, step, "aux")).integers(k))
        return [pool[i] for i in order[:k]], aux_view

    def _degraded_views(
        self, image: Image.Image, example_id: str, step: int, types: list[str] | None
    ) -> list[tuple[str, dict[str, Any], np.ndarray]]:
        """K (type, params, pixels) views of one image: of the given types, or drawn for this example."""
        level = self.args.view_level
        if types is None:
            seed = derive_seed(self.args.view_seed, step, example_id)
            views = sample_views(image, self.args.roma_views, seed=seed, pool=self.args.view_pool, level=level)
            return [(view.name, view.params, view.image) for view in views]
        views = []
        for k, name in enumerate(types):
            rng = np.random.default_rng(derive_seed(self.args.view_seed, step, example_id, k, name))
            params = sample_params(name, level, rng)
            views.append((name, params, apply(image, name, params)))
        return views

    def _make_views(self, inputs: list[dict[str, Any]], image_grid_thw: torch.Tensor) -> dict[str, Any]:
        """The per-sample ROMA entries (:data:`ROMA_KEYS` but the success mask) of a local generation batch.

        ``image_grid_thw``: (N, 3), the clean grid of each sample's single image. The ``G`` completions of
        a prompt share its views (they are computed once per example id).
        """
        step = self.state.global_step
        types, step_aux_view = self._step_view_plan(step)
        per_example: dict[str, tuple[torch.Tensor, tuple[str, ...], tuple[dict[str, Any], ...], int]] = {}
        entries: list[tuple[torch.Tensor, tuple[str, ...], tuple[dict[str, Any], ...], int]] = []
        for i, example in enumerate(inputs):
            example_id = _example_id(example)
            if example_id not in per_example:
                views = self._degraded_views(_example_image(example), example_id, step, types)
                pixel_values = self._process_views(views, image_grid_thw[i], example_id)  # (K, rows, D)
                if step_aux_view is None:
                    aux_seed = derive_seed(self.args.view_seed, step, example_id, "aux")
                    aux_view = int(np.random.default_rng(aux_seed).integers(self.args.roma_views))
                else:
                    aux_view = step_aux_view
                names = tuple(name for name, _, _ in views)
                params = tuple(view_params for _, view_params, _ in views)
                per_example[example_id] = (pixel_values, names, params, aux_view)
            entries.append(per_example[example_id])
        return {
            "roma_view_pixel_values": [entry[0] for entry in entries],
            "roma_view_types": [entry[1] for entry in entries],
            "roma_view_params": [entry[2] for entry in entries],
            "roma_aux_view": torch.tensor([entry[3] for entry in entries], device=self.accelerator.device),
        }

    def _process_views(self, views: list, clean_grid: torch.Tensor, example_id: str) -> torch.Tensor:
        """Run the views through the image processor: (K, rows, D) pixel rows, kept on the CPU until used."""
        processed = self.processing_class.image_processor(images=[pixels for _, _, pixels in views], return_tensors="pt")
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

    def _degrade_rollout_images(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """naive_aug: each example's image replaced by one training-range view (shared by its G rollouts)."""
        step = self.state.global_step
        degraded = []
        for example in inputs:
            example_id = _example_id(example)
            seed = derive_seed(self.args.view_seed, step, example_id, "naive_aug")
            (view,) = sample_views(
                _example_image(example), 1, seed=seed, pool=self.args.view_pool, level=self.args.view_level
            )
            image = Image.fromarray(view.image)
            if "images" in example:
                degraded.append({**example, "images": [image]})
            else:
                degraded.append({**example, "image": image})
        return degraded

    # ------------------------------------------------------------------------------------------
    # Loss side: pass 2 and the ROMA terms
    # ------------------------------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
        )
        if self._capture_clean_logps:  # the first call inside GRPOTrainer._compute_loss is the clean pass
            self._clean_logps = result[0]
            self._capture_clean_logps = False
        return result

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        start = time.perf_counter()
        self._capture_clean_logps = self.args.roma_terms_on
        try:
            grpo_loss = super()._compute_loss(model, inputs)
        finally:
            self._capture_clean_logps = False
        clean_end = time.perf_counter()
        self._metrics[mode]["time/clean_pass"].append(clean_end - start)
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._log_mean(mode, "roma/loss_grpo", grpo_loss.detach() * normalizer)
        if not self.args.roma_terms_on:
            self._step_seconds["loss"] += clean_end - start
            return grpo_loss

        clean_logps, self._clean_logps = self._clean_logps.detach(), None  # (N, T) anchor sg(ℓ)
        roma_loss = self._roma_loss(inputs, clean_logps, mode)
        loss = grpo_loss + roma_loss / normalizer
        end = time.perf_counter()
        self._metrics[mode]["time/pass2"].append(end - clean_end)
        self._step_seconds["loss"] += end - start
        return loss

    def _roma_loss(self, inputs: dict[str, Any], clean_logps: torch.Tensor, mode: str) -> torch.Tensor:
        """λ_kl · L_inv^wc + λ_aux · L_aux of one micro-batch (method.md §3–§6).

        Pass 2 teacher-forces (view k, sequence i) pairs, and only those a term looks at: the successful
        sequences under ``correctness_mask`` / ``aux_correct_only``. Autograd runs only on the pairs that
        receive gradient — the auxiliary pair ``(j_i, i)`` of each sequence and the pairs the penalty
        selects — and each pair runs at most once with autograd and at most once without:

        - ``batch`` / ``sequence`` (K > 1): the auxiliary pairs with autograd, every other pair without;
          the worst view is picked on the detached values of both; then the selected pairs that are not
          auxiliary pairs with autograd.
        - ``token`` / ``mean`` (and K = 1): every pair with autograd; the auxiliary pairs are among them.

        Rows a term does not see hold a detached filler equal to its anchor (Δ = 0, ρ̃ = 1), which
        roma.losses leaves out anyway. With sharded parameters (ZeRO-3, FSDP) every forward gathers
        parameters collectively, so every process must run the same forwards: pass 2 then covers every
        row, and the selected pairs run with autograd whether or not they are auxiliary pairs
        (:attr:`_uniform_view_passes`), so the number of forwards does not depend on the data.
        """
        args = self.args
        completion_mask = inputs["completion_mask"]  # (N, T)
        if "tool_mask" in inputs:
            completion_mask = completion_mask * inputs["tool_mask"]
        completion_mask = completion_mask.bool()
        success = inputs["roma_success"]  # (N,) bool
        every_row = torch.ones_like(success)
        uniform = self._uniform_view_passes
        agg = dict(agg=args.roma_agg, max_tokens=args.max_completion_length)
        run = self._view_logps_fn(inputs)  # [(view k, row i), ...] -> (M, T)
        num_views = args.roma_views
        loss = clean_logps.new_zeros(())

        def rows(mask: torch.Tensor) -> list[int]:
            return (every_row if uniform else mask).nonzero().flatten().tolist()

        penalty_rows = success if args.correctness_mask else every_row  # (N,) the sequences L_inv sees
        aux_rows = success if args.aux_correct_only else every_row  # (N,) the sequences L_aux sees
        aux_view = inputs["roma_aux_view"].tolist()  # j per sample
        aux_pairs = [(aux_view[i], i) for i in rows(aux_rows)] if args.lambda_aux > 0 else []
        penalty_pass = rows(penalty_rows) if args.lambda_kl > 0 else []
        select_first = num_views > 1 and args.worst_case in ("batch", "sequence") and bool(penalty_pass)

        penalty = dict(estimator=args.kl_estimator, direction=args.kl_direction, worst_case=args.worst_case, **agg)
        with_grad = _PairLogps()  # the pairs run with autograd
        if select_first:
            # Pick the worst view on detached values: every pair that is not an auxiliary pair without
            # autograd (first, while only the clean graph is held), then the auxiliary pairs with it.
            auxiliary = set(aux_pairs)
            others = [(k, i) for k in range(num_views) for i in penalty_pass if (k, i) not in auxiliary]
            with torch.no_grad(), disable_gradient_checkpointing(self.model, args.gradient_checkpointing_kwargs):
                others_logps = run(others)  # (M, T)
            aux_pair_logps = run(aux_pairs)  # (|aux_pairs|, T)
            with_grad.add(aux_pairs, aux_pair_logps)
            detached = _PairLogps().add(others, others_logps).add(aux_pairs, aux_pair_logps.detach())
            slots = [(k, (k, i)) for k in range(num_views) for i in penalty_pass]  # view k of row i in slot k
            all_views = detached.place(slots, num_views, clean_logps)  # (K, N, T)
            _, metrics = losses.invariance_penalty(all_views, clean_logps, completion_mask, penalty_rows, **penalty)
            # The view each sequence's penalty reads (the batch's worst, or its own); -1: the penalty does not
            # read the sequence, which then needs no pass — except under sharding, where it takes view 0, unused.
            chosen = metrics.sequence_view.tolist()  # (N,)
            selected = [(max(chosen[i], 0), i) for i in penalty_pass if uniform or chosen[i] >= 0]
            todo = selected if uniform else [pair for pair in selected if pair not in with_grad]
            with_grad.add(todo, run(todo))
            # Each sequence under its selected view: the K = 1 penalty of these log-probs is L_inv^wc.
            stacked = with_grad.place([(0, pair) for pair in selected], 1, clean_logps)  # (1, N, T)
            inv_loss, _ = losses.invariance_penalty(
                stacked, clean_logps, completion_mask, penalty_rows, **{**penalty, "worst_case": "batch"}
            )
        else:  # every pair with autograd (token, mean, K = 1, or nothing for the penalty to see)
            every_pair = [(k, i) for k in range(num_views) for i in penalty_pass]
            passed = set(every_pair)
            extra = [pair for pair in aux_pairs if pair not in passed]  # auxiliary pairs the penalty does not see
            with_grad.add(every_pair + extra, run(every_pair + extra))
            if args.lambda_kl > 0:
                stacked = with_grad.place([(k, (k, i)) for k, i in every_pair], num_views, clean_logps)  # (K, N, T)
                inv_loss, metrics = losses.invariance_penalty(
                    stacked, clean_logps, completion_mask, penalty_rows, **penalty
                )
        if args.lambda_kl > 0:
            loss = loss + args.lambda_kl * inv_loss
            self._log_mean(mode, "roma/loss_inv", inv_loss.detach())
            counts = metrics.selection_counts if bool(penalty_rows.any()) else torch.zeros_like(metrics.selection_counts)
            self._log_views(mode, inputs, metrics.per_view_kl, counts)

        if args.lambda_aux > 0:
            old_logps = inputs.get("old_per_token_logps")  # (N, T) ℓ_old, absent when equal to sg(ℓ)
            old_logps = clean_logps if old_logps is None else old_logps
            filler = old_logps if args.aux_ratio_anchor == "clean" else clean_logps
            (aux_logps,) = with_grad.place([(0, pair) for pair in aux_pairs], 1, filler)  # (N, T)
            anchor = old_logps if args.aux_ratio_anchor == "clean" else aux_logps.detach()
            aux_loss, aux_metrics = losses.auxiliary_pg_loss(
                aux_logps,
                anchor,
                inputs["advantages"],
                completion_mask,
                success,
                eps_low=self.epsilon_low,
                eps_high=self.epsilon_high,
                correct_only=args.aux_correct_only,
                **agg,
            )
            loss = loss + args.lambda_aux * aux_loss
            self._log_mean(mode, "roma/loss_aux", aux_loss.detach())
            self._log_mean(mode, "roma/aux_clip_ratio/low", aux_metrics.clip_low_frac)
            self._log_mean(mode, "roma/aux_clip_ratio/high", aux_metrics.clip_high_frac)
            self._log_mean(mode, "roma/aux_clip_ratio/region", aux_metrics.clip_region_frac)
        return loss

    @property
    def _uniform_view_passes(self) -> bool:
        """Whether parameters are sharded (DeepSpeed ZeRO-3 or FSDP): then every process must run the same
        forward passes, so pass 2 may not skip rows or views on its own data."""
        if self.is_fsdp_enabled:
            return True
        plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        return plugin is not None and plugin.zero_stage == 3

    def _view_logps_fn(self, inputs: dict[str, Any]) -> Callable[[list[tuple[int, int]]], torch.Tensor]:
        """``f(pairs) -> (M, T)``: for each of the M ``(view k, row i)`` pairs, ℓ of sample i's completion with
        its image replaced by its view k, teacher-forced up to the longest completion among the pairs (0
        beyond it). One call runs forwards of ``view_batch_size`` pairs (default: as many as the call has
        distinct rows, i.e. one view's worth); with ``share_view_encoding`` the call first encodes each
        distinct view image once. Autograd follows the caller's grad mode; no pair, no forward."""
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]  # (N, P)
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]  # (N, T)
        views = inputs["roma_view_pixel_values"]  # N tensors (K, rows_i, D); one object per example
        image_grid_thw = inputs["image_grid_thw"]  # (N, 3): one image per sample
        per_token = {key: inputs[key] for key in ("token_type_ids", "mm_token_type_ids") if key in inputs}
        share = self.args.share_view_encoding and not self._uniform_view_passes

        def view_logps(pairs: list[tuple[int, int]]) -> torch.Tensor:
            if not pairs:
                return completion_mask.new_zeros((0, completion_mask.shape[1]), dtype=torch.float32)
            rows = torch.tensor([i for _, i in pairs], device=prompt_ids.device)  # (M,)
            length = int(completion_mask[rows].sum(-1).max().clamp(min=1))  # T' ≤ T, the longest
            input_ids = torch.cat([prompt_ids[rows], completion_ids[rows, :length]], dim=1)  # (M, P + T')
            attention_mask = torch.cat([prompt_mask[rows], completion_mask[rows, :length]], dim=1)
            extra = {key: value[rows, : prompt_ids.shape[1] + length] for key, value in per_token.items()}
            batch_size = self.args.view_batch_size or len({i for _, i in pairs})
            if share:
                logps = self._shared_encoding_logps(
                    pairs, views, image_grid_thw[rows], input_ids, attention_mask, length, batch_size, extra
                )
            else:
                # The unwrapped model, as TRL's own extra passes: no DDP forward (and no collective) per view.
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model,
                    input_ids,
                    attention_mask,
                    length,
                    batch_size=batch_size,
                    pixel_values=self._prepare_input(torch.cat([views[i][k] for k, i in pairs])),
                    image_grid_thw=image_grid_thw[rows],
                    num_images=[1] * len(pairs),
                    **extra,
                )  # (M, T')
            return torch.nn.functional.pad(logps, (0, completion_mask.shape[1] - length))  # (M, T)

        return view_logps

    def _shared_encoding_logps(
        self,
        pairs: list[tuple[int, int]],
        views: list[torch.Tensor],
        image_grid_thw: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        length: int,
        batch_size: int,
        extra: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """(M, T') completion log-probs of the M ``pairs`` (rows of ``input_ids`` (M, P + T'), grids
        ``image_grid_thw`` (M, 3)): the vision tower runs once over the distinct view images — view k of
        one example's views tensor — and each forward of ``batch_size`` pairs reads their encodings from
        ``mm_encoder_outputs``. The unwrapped model, through TRL's fused LM head, as TRL's own passes."""
        image_index: dict[tuple[int, int], int] = {}  # (view k, id of the example's views tensor) -> image
        distinct: list[torch.Tensor] = []
        distinct_grids: list[torch.Tensor] = []
        image_of: list[int] = []  # (M,) the distinct image of each pair
        for position, (k, i) in enumerate(pairs):
            key = (k, id(views[i]))
            if key not in image_index:
                image_index[key] = len(distinct)
                distinct.append(views[i][k])
                distinct_grids.append(image_grid_thw[position])
            image_of.append(image_index[key])
        with self.accelerator.autocast():
            encoded = self.model.get_image_features(
                self._prepare_input(torch.cat(distinct)), torch.stack(distinct_grids), return_dict=True
            )
        if not isinstance(encoded.pooler_output, (tuple, list)) or len(encoded.pooler_output) != len(distinct):
            raise RuntimeError(
                f"{type(self.model).__name__}.get_image_features returned no per-image pooler_output for "
                f"{len(distinct)} images, so the views' encodings cannot be shared; set share_view_encoding=False"
            )
        all_logps = []
        for start in range(0, len(pairs), batch_size):
            end = min(start + batch_size, len(pairs))
            labels = input_ids[start:end].masked_fill(attention_mask[start:end] == 0, -100)
            labels[:, :-length] = -100  # only the completion tokens are scored
            chunk = {key: value[start:end] for key, value in extra.items()}
            with self.accelerator.autocast():
                outputs = self.model(
                    input_ids=input_ids[start:end],
                    attention_mask=attention_mask[start:end],
                    image_grid_thw=image_grid_thw[start:end],
                    mm_encoder_outputs={"image": _select_images(encoded, image_of[start:end])},
                    labels=labels,
                    fused_lm_head=True,
                    **chunk,
                )
            all_logps.append(outputs.log_probs[:, -length:])
        return torch.cat(all_logps)  # (M, T')

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
        if self.args.view_sampling == "step":  # view k is one type for the whole step
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


class _PairLogps:
    """Teacher-forced log-probs of ``(view k, row i)`` pairs, gathered from one or more pass-2 calls.

    ``add(pairs, values)`` records the (M, T) ``values`` of M pairs (a later entry for a pair replaces an
    earlier one); ``place`` scatters recorded pairs into a ``(num, N, T)`` tensor, autograd included.
    """

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []  # (M_p, T) each
        self._row: dict[tuple[int, int], int] = {}  # pair -> row of torch.cat(_parts)
        self._size = 0

    def add(self, pairs: list[tuple[int, int]], values: torch.Tensor) -> "_PairLogps":
        if values.shape[0] != len(pairs):
            raise ValueError(f"got {values.shape[0]} rows of log-probs for {len(pairs)} pairs")
        self._parts.append(values)
        self._row.update({pair: self._size + position for position, pair in enumerate(pairs)})
        self._size += len(pairs)
        return self

    def __contains__(self, pair: tuple[int, int]) -> bool:
        return pair in self._row

    def place(self, entries: list[tuple[int, tuple[int, int]]], num: int, filler: torch.Tensor) -> torch.Tensor:
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


def _select_images(encoded: Any, index: list[int]) -> Any:
    """A vision encoder output (``get_image_features(..., return_dict=True)``) for the images ``index``, in
    that order, as ``mm_encoder_outputs["image"]`` takes it: the per-image ``pooler_output`` and, for
    Qwen3-VL, the per-layer ``deepstack_features`` re-indexed; the fields over all patches left out."""
    fields = {"pooler_output": tuple(encoded.pooler_output[d] for d in index)}
    deepstack = getattr(encoded, "deepstack_features", None)
    if deepstack is not None:
        fields["deepstack_features"] = [tuple(layer[d] for d in index) for layer in deepstack]
    return type(encoded)(**fields)


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
