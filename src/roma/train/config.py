""":class:`RomaConfig`: TRL's ``GRPOConfig`` plus ROMA's options (method.md §2–§8), validated at construction."""

import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from trl import GRPOConfig

from roma import losses
from roma.data.images import ImageFit
from roma.degrade import POOLS
from roma.degrade.params import Level

# Each choice field's choices are its Literal type, written once: HfArgumentParser derives the CLI's
# choices from it and RomaConfig validates against it (choices_of).
Mode = Literal["roma", "grpo", "naive_aug"]
ViewSampling = Literal["step", "example"]
AuxRatioAnchor = Literal["clean", "view"]
Pool = Literal["seen", "unseen", "imagenet-c", "geometric", "capture", "document", "all"]
ViewImageTypes = Literal["shared", "independent"]
# λ defaults per mode when left unset: the paper-style start of method.md §6 for ROMA, 0 otherwise.
DEFAULT_LAMBDAS: dict[str, tuple[float, float]] = {"roma": (0.05, 0.1), "grpo": (0.0, 0.0), "naive_aug": (0.0, 0.0)}
# The roma.losses aggregation matching a TRL loss_type (see roma.losses' module docstring); other
# loss types aggregate the ROMA terms as a token mean over the micro-batch.
AGG_BY_LOSS_TYPE: dict[str, str] = {"grpo": "sequence", "bnpo": "token", "dapo": "token", "dr_grpo": "fixed"}


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


def choices_of(annotation: Any) -> tuple[tuple[Any, ...], bool] | None:
    """``(values, None allowed)`` of a ``Literal[...]`` or ``Literal[...] | None`` annotation; ``None`` for
    any other annotation."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation), False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        literals = [arg for arg in args if typing.get_origin(arg) is Literal]
        if len(literals) == 1 and len(args) == 2 and type(None) in args:
            return typing.get_args(literals[0]), True
    return None


@dataclass
class RomaConfig(GRPOConfig):
    """GRPOConfig plus the ROMA options of method.md. Invalid combinations raise at construction."""

    mode: Mode = field(
        default="roma",
        metadata=_help(
            "'roma': GRPO on clean rollouts plus the invariance penalty and the auxiliary policy gradient on "
            "degraded views (method.md §2-§6). 'grpo': plain GRPO, no degraded image anywhere (the clean "
            "baseline). 'naive_aug': GRPO whose rollout images are replaced by one training-range degraded view "
            "(the naive-augmentation baseline: rewards of trajectories sampled on degraded images punish "
            "perception failures as reasoning errors, the 'reward poisoning' ROMA avoids); evaluation "
            "rollouts stay clean."
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
    kl_estimator: losses.KLEstimator = field(
        default="k3",
        metadata=_help(
            "Per-token KL estimator of Δ = ℓ^view − sg(ℓ^clean) (method.md §3). 'k3' = exp(Δ)−1−Δ is "
            "non-negative and low-variance for tokens sampled from the clean policy; 'k1', 'k2' for ablations."
        ),
    )
    kl_direction: losses.KLDirection = field(
        default="forward",
        metadata=_help(
            "'forward' estimates KL(π_clean ‖ π_view), unbiased under clean samples; 'reverse' uses the "
            "GRPO-reference convention r = exp(−Δ) (method.md §3)."
        ),
    )
    worst_case: losses.WorstCase = field(
        default="batch",
        metadata=_help(
            "Which view the penalty regularises (method.md §4): 'batch' the view with the largest "
            "batch-aggregated KL (the paper's formula; only it and the auxiliary view get autograd), "
            "'sequence' per trajectory, 'token' per token, 'mean' the average over views (ablation 'no worst "
            "case'; all K views get autograd). With several processes the worst case is taken over each "
            "process's micro-batch."
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
    aux_ratio_anchor: AuxRatioAnchor = field(
        default="clean",
        metadata=_help(
            "Denominator of the auxiliary ratio ρ̃ = exp(ℓ^j − ℓ_old): 'clean' uses the behaviour policy's clean "
            "log-prob (the trajectory was sampled on the clean image), 'view' the view's own detached log-prob."
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
    degradation_pool: Pool = field(
        default="seen",
        metadata=_help(
            "Pool the view types come from (docs/degradations.md). Training uses the seen pool; the unseen "
            "pool is held out for evaluation. Every pool but seen has fixed levels only (no training range), "
            "so the others (ImageNet-C, geometric, capture, document, all) serve ablations at level 1-3."
        ),
    )
    degradation_level: Level = field(
        default="train",
        metadata=_help(
            "'train' draws each view's parameters from its type's training range; 1, 2 or 3 use a fixed "
            "severity (level 3 lies outside the training range). A recipe may write a level as 3 or '3'."
        ),
    )
    view_sampling: ViewSampling = field(
        default="step",
        metadata=_help(
            "'step': the K distinct types (and the auxiliary view) are drawn once per optimisation step and "
            "shared by every image, as in the paper ('at each training step we sample a subset of K distinct "
            "augmentations'), so the batch worst case picks a degradation type; parameters and noise are "
            "still drawn per image. 'example': every image draws its own K types."
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
    view_image_types: ViewImageTypes = field(
        default="shared",
        metadata=_help(
            "Prompts with several images. 'shared': view k degrades every image of the prompt by view k's type, "
            "with parameters and noise drawn per image, so a view is one degradation of the whole prompt and the "
            "worst case picks a type. 'independent': image 0 takes the views' types as with 'shared', each other "
            "image draws its own K distinct types (from the view seed and its position), so a view mixes types; "
            "the per-view metrics are then named by view slot (view<k>). Prompts of one image: no difference."
        ),
    )
    image_fit: ImageFit = field(
        default="reject",
        metadata=_help(
            "An image the processor would refuse (Qwen-VL: aspect ratio above 200). 'reject': training refuses "
            "the dataset before the first step, naming the rows. 'pad': pad the image with white on its short "
            "side until the processor accepts it (roma.data.images.fit_for_processor), in the rollout and the "
            "views alike."
        ),
    )
    roma_agg: losses.AggMode | None = field(
        default=None,
        metadata=_help(
            "Aggregation of L_inv and L_aux over tokens (roma.losses.aggregate). Unset: follows loss_type — "
            "'sequence' for 'grpo', 'fixed' (÷ N·max_completion_length) for 'dr_grpo', 'token' otherwise — so "
            "the ROMA terms and L_GRPO share a scale."
        ),
    )

    def __post_init__(self) -> None:
        self._check_roma_options()
        super().__post_init__()
        if self.roma_agg == "fixed" and self.max_completion_length is None:
            raise ValueError("roma_agg='fixed' divides by max_completion_length, which must then be set")

    def _check_roma_options(self) -> None:
        """Validate (and resolve the unset) ROMA fields; ``ValueError`` naming the value and the choices."""
        if isinstance(self.degradation_level, str) and self.degradation_level in ("1", "2", "3"):
            self.degradation_level = int(self.degradation_level)  # YAML / CLI text; the level is the int
        for name, (allowed, none_ok) in CHOICES.items():
            value = getattr(self, name)
            if (value is None and not none_ok) or (value is not None and not _is_choice(value, allowed)):
                raise ValueError(f"{name} must be one of {list(allowed)}{' or None' if none_ok else ''}, got {value!r}")
        pool = POOLS[self.degradation_pool]
        if isinstance(self.roma_views, bool) or not isinstance(self.roma_views, int):
            raise TypeError(f"roma_views must be an int, got {self.roma_views!r}")
        if not 1 <= self.roma_views <= len(pool):
            raise ValueError(
                f"roma_views (K) must be in [1, {len(pool)}]: the K views of an image have distinct types and "
                f"the {self.degradation_pool} pool has {len(pool)} ({', '.join(pool)}); got {self.roma_views}"
            )
        if self.degradation_pool != "seen" and self.degradation_level == "train":
            raise ValueError(
                f"degradation_level='train' needs degradation_pool='seen': the {self.degradation_pool} types have "
                "no training range (docs/degradations.md); use level 1, 2 or 3"
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

    @property
    def roma_terms_on(self) -> bool:
        """Whether pass 2 runs: ROMA mode with a non-zero λ."""
        return self.mode == "roma" and (self.lambda_kl > 0 or self.lambda_aux > 0)

    @property
    def view_pool(self) -> tuple[str, ...]:
        return POOLS[self.degradation_pool]


# The choice fields of RomaConfig (its own annotations: HfArgumentParser rewrites the dataclass fields'
# types, never the class's annotations): name -> (values, None allowed).
CHOICES: dict[str, tuple[tuple[Any, ...], bool]] = {
    name: choices
    for name, annotation in vars(RomaConfig)["__annotations__"].items()
    if (choices := choices_of(annotation)) is not None
}


def _is_choice(value: Any, allowed: tuple[Any, ...]) -> bool:
    """``value`` is one of ``allowed``, of the same type (``True`` is not the choice ``1``)."""
    return any(value == choice and type(value) is type(choice) for choice in allowed)
