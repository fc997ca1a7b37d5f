""":class:`RomaConfig`: TRL's ``GRPOConfig`` plus ROMA's options (method.md §2–§8), validated at construction."""

import math
import types
import typing
import warnings
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
# Qwen3-VL's vision geometry: 16-pixel patches, 2 x 2 of them merged into one language-model token, so an
# image of h x w pixels (after the processor's resize) costs h·w / 32² tokens, plus <|vision_start|> and
# <|vision_end|> around them (transformers' Qwen3VLProcessor, docs/trainer.md "Sequence length").
QWEN3VL_PATCH_SIZE, QWEN3VL_MERGE_SIZE, VISION_WRAPPER_TOKENS = 16, 2, 2


def image_token_budget(max_pixels: int, *, patch_size: int = QWEN3VL_PATCH_SIZE, merge_size: int = QWEN3VL_MERGE_SIZE) -> int:
    """Most language-model tokens one image can take when the processor caps it at ``max_pixels``.

    The processor resizes an image to sides that are multiples of ``patch_size · merge_size`` with an area
    of at most ``max_pixels`` (``smart_resize``), then emits one token per ``merge_size²`` patches:
    ``⌊max_pixels / (patch_size · merge_size)²⌋`` tokens, plus the 2 vision start / end tokens.
    ``ValueError`` for a non-positive value.
    """
    for name, value in (("max_pixels", max_pixels), ("patch_size", patch_size), ("merge_size", merge_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return max_pixels // (patch_size * merge_size) ** 2 + VISION_WRAPPER_TOKENS


def derived_max_model_length(
    *, max_pixels: int, images_per_prompt: int, prompt_text_tokens: int, max_completion_length: int
) -> int:
    """vLLM's context length for a run: the longest prompt plus the longest completion (tokens).

    ``prompt_text_tokens + images_per_prompt · image_token_budget(max_pixels) + max_completion_length``;
    e.g. the GPU recipes: 1024 + 1 · (1,048,576 / 32² + 2) + 2048 = 4,098.
    """
    for name, value in (("images_per_prompt", images_per_prompt), ("prompt_text_tokens", prompt_text_tokens),
                        ("max_completion_length", max_completion_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return prompt_text_tokens + images_per_prompt * image_token_budget(max_pixels) + max_completion_length


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

    max_pixels: int | None = field(
        default=None,
        metadata=_help(
            "Data side: the largest image area (pixels) the processor keeps; a larger image is scaled down "
            "(aspect kept) to at most max_pixels / 32² vision tokens. Applied to the training processor, to the "
            "views and to vLLM (mm_processor_kwargs), so rollouts and teacher-forced passes see the same tokens. "
            "Unset: the model's processor default (Qwen3-VL: 16,777,216, i.e. up to 16,384 tokens per image). "
            "Bounds memory (K processed views are kept per example) and sizes vllm_max_model_length."
        ),
    )
    min_pixels: int | None = field(
        default=None,
        metadata=_help(
            "Data side: the smallest image area (pixels); a smaller image (an icon) is scaled up. Unset: the "
            "processor default (Qwen3-VL: 65,536)."
        ),
    )
    images_per_prompt: int = field(
        default=1,
        metadata=_help("Most images in one prompt: vLLM's limit_mm_per_prompt and a factor of the derived length."),
    )
    prompt_text_tokens: int = field(
        default=1024,
        metadata=_help(
            "Budget of a prompt's text tokens (chat template, system prompt, question, choices; images apart), "
            "a term of the derived vllm_max_model_length."
        ),
    )

    def __post_init__(self) -> None:
        self._check_roma_options()
        self._check_pixel_bounds()
        super().__post_init__()
        # Set when vllm_max_model_length below comes from the lengths (roma.train.cli leaves it out of config.yaml).
        self.vllm_max_model_length_derived = bool(
            self.vllm_max_model_length is None and self.max_pixels is not None and self.max_completion_length
        )
        if self.vllm_max_model_length_derived:
            self.vllm_max_model_length = derived_max_model_length(
                max_pixels=self.max_pixels,
                images_per_prompt=self.images_per_prompt,
                prompt_text_tokens=self.prompt_text_tokens,
                max_completion_length=self.max_completion_length,
            )
        if self.use_vllm and self.vllm_mode == "colocate" and self.vllm_max_model_length is None:
            warnings.warn(
                "use_vllm with neither vllm_max_model_length nor max_pixels: vLLM gets the model's full context "
                "(Qwen3-VL: 262,144 tokens), whose KV cache may not fit vllm_gpu_memory_utilization; set max_pixels "
                "(docs/trainer.md 'Sequence length')",
                stacklevel=2,
            )
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

    def _check_pixel_bounds(self) -> None:
        for name in ("max_pixels", "min_pixels", "images_per_prompt", "prompt_text_tokens"):
            value = getattr(self, name)
            if value is None and name in ("max_pixels", "min_pixels"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1{' or None' if 'pixels' in name else ''}, got {value!r}")
        factor = (QWEN3VL_PATCH_SIZE * QWEN3VL_MERGE_SIZE) ** 2
        if self.max_pixels is not None and self.max_pixels < factor:
            raise ValueError(f"max_pixels must be >= {factor} (one vision token, 32 x 32 pixels), got {self.max_pixels}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})")

    @property
    def pixel_bounds(self) -> dict[str, int]:
        """The set bounds as an image processor's ``size`` (``shortest_edge`` / ``longest_edge`` = pixel areas)."""
        size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        return {key: value for key, value in size.items() if value is not None}

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
