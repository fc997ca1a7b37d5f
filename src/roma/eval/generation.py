"""Batched greedy generation for evaluation: Hugging Face ``generate`` (default) or vLLM.

A generator is a callable ``generator(prompts, images) -> completions``: ``prompts`` are
conversational prompts of roma's schema (one user turn with its image placeholders and the text),
``images`` the matching PIL images — a prompt's image, or the list of its images in placeholder order —
and each completion is a :class:`Completion` (the decoded text and why generation stopped: ``"stop"`` at
an end-of-turn token, ``"length"`` at ``max_new_tokens`` — a cut chain of thought that has no final
answer yet) or a plain string (finish reason unknown).

Generation length: :data:`DEFAULT_MAX_NEW_TOKENS` (2048, the GPU recipes' ``max_completion_length``) or,
for a folder written by ``roma train``, that run's ``max_completion_length`` (:func:`training_length`):
evaluation must not cut the chains of thought training allowed.

:class:`HFGenerator` applies the processor's chat template, pads on the **left** (so every
sequence ends where generation starts), decodes greedily (``do_sample=False``) and suppresses the
five vision special tokens, which a stray ``<|image_pad|>`` in a completion would otherwise
break the next forward pass with. Completions are decoded with ``skip_special_tokens=True``: pad and
end-of-turn tokens go, ``<think>`` / ``</think>`` (ordinary added tokens in Qwen3) stay.

On a machine with CUDA, the Hugging Face model is loaded in bfloat16 with ``device_map="auto"``
(:func:`hf_load_settings`); on a CPU in float32.

:class:`VLLMGenerator` is used when vLLM is installed and a CUDA device is present (``backend="auto"``).
vLLM is imported only then (``pip install -e '.[gpu]'``). Its engine gets ``max_model_len`` (prompt
budget + images + ``max_new_tokens`` unless given), ``tensor_parallel_size`` and the image bounds as
``mm_processor_kwargs`` (:func:`vllm_llm_kwargs`). It follows vLLM's offline ``LLM.generate`` API for
multimodal prompts (``{"prompt", "multi_modal_data": {"image": ...}}``) with ``temperature=0``; vision
tokens are not suppressed there (released Qwen3-VL checkpoints do not emit them). **Untried on a GPU**:
its argument construction is unit-tested with a fake ``vllm`` module only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from PIL import Image

DEFAULT_MAX_NEW_TOKENS = 2048
"""Generation length when none is given and the model folder names none: the GPU recipes' completion length."""
DEFAULT_PROMPT_TOKENS = 1024
"""Prompt text budget of the derived vLLM ``max_model_len`` (as ``RomaConfig.prompt_text_tokens``)."""


class Completion(NamedTuple):
    """One generated completion: its decoded text and why generation stopped (``"stop"`` / ``"length"``)."""

    text: str
    finish_reason: str | None


Generator = Callable[
    [Sequence[list[dict[str, Any]]], Sequence[Image.Image | list[Image.Image]]], list[Completion | str]
]
Backend = Literal["auto", "hf", "vllm"]


def training_length(path: str | Path | None) -> int:
    """``max_completion_length`` of the ``roma train`` run that wrote ``path`` (its ``config.yaml``), else
    :data:`DEFAULT_MAX_NEW_TOKENS`. ``ValueError`` for a ``config.yaml`` whose value is not an int >= 1."""
    config = Path(str(path)) / "config.yaml" if path is not None else None
    if config is None or not config.is_file():
        return DEFAULT_MAX_NEW_TOKENS
    import yaml

    value = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("max_completion_length")
    if value is None:
        return DEFAULT_MAX_NEW_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{config}: max_completion_length must be an int >= 1, got {value!r}")
    return value


def hf_load_settings(cuda: bool | None = None) -> tuple[torch.dtype, str | None]:
    """``(dtype, device_map)`` of the Hugging Face backend: ``(bfloat16, "auto")`` with CUDA, else
    ``(float32, None)`` (the CPU). ``cuda=None`` asks ``torch.cuda.is_available()``."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    return (torch.bfloat16, "auto") if cuda else (torch.float32, None)


class HFGenerator:
    """Greedy batched generation with ``model.generate`` (left padding, vision tokens suppressed)."""

    def __init__(self, model: Any, processor: Any, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        from roma.models import vision_token_ids

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model, self.processor, self.max_new_tokens = model, processor, max_new_tokens
        self.suppress = vision_token_ids(processor)
        tokenizer = processor.tokenizer
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.calls = 0  # number of generate() batches run, for logging and tests

    @torch.no_grad()
    def __call__(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Image.Image]) -> list[Completion]:
        if len(prompts) != len(images):
            raise ValueError(f"got {len(prompts)} prompts but {len(images)} images")
        if not prompts:
            return []
        texts = [self.processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        tokenizer = self.processor.tokenizer
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        try:
            inputs = self.processor(text=texts, images=flat_images(images), padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = side
        inputs = inputs.to(self.model.device)
        output = self.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            suppress_tokens=self.suppress,
            pad_token_id=self.pad_token_id,
        )
        self.calls += 1
        completions = output[:, inputs["input_ids"].shape[1] :]  # (B, T_new)
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        stopped = [any(token in self.eos_ids for token in row) for row in completions.tolist()]
        return [Completion(text, "stop" if stop else "length") for text, stop in zip(texts, stopped)]


def vllm_llm_kwargs(
    path: str | Path,
    *,
    max_new_tokens: int,
    max_images: int = 1,
    max_model_len: int | None = None,
    tensor_parallel_size: int = 1,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    dtype: str = "bfloat16",
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for evaluation (at most ``max_images`` images per prompt).

    ``max_model_len`` unset with ``max_pixels`` set: :data:`DEFAULT_PROMPT_TOKENS` + the image's tokens
    (``roma.train.config.image_token_budget``, per image) + ``max_new_tokens``; unset without ``max_pixels``: vLLM's
    default (the model's context, 262,144 tokens for Qwen3-VL, whose KV cache needs a large GPU share).
    ``ValueError`` for a ``tensor_parallel_size`` < 1 or a ``max_model_len`` below ``max_new_tokens``.
    """
    from roma.train.config import derived_max_model_length

    if isinstance(tensor_parallel_size, bool) or not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be an int >= 1, got {tensor_parallel_size!r}")
    if max_model_len is None and max_pixels is not None:
        max_model_len = derived_max_model_length(
            max_pixels=max_pixels, images_per_prompt=max_images, prompt_text_tokens=DEFAULT_PROMPT_TOKENS,
            max_completion_length=max_new_tokens,
        )
    if max_model_len is not None and max_model_len <= max_new_tokens:
        raise ValueError(f"max_model_len ({max_model_len}) must exceed max_new_tokens ({max_new_tokens})")
    kwargs: dict[str, Any] = {
        "model": str(path), "dtype": dtype, "seed": 0, "limit_mm_per_prompt": {"image": max_images},
        "tensor_parallel_size": tensor_parallel_size, "max_model_len": max_model_len,
    }
    size = {k: v for k, v in (("shortest_edge", min_pixels), ("longest_edge", max_pixels)) if v is not None}
    if size:
        kwargs["mm_processor_kwargs"] = {"size": size}
    return kwargs


def import_vllm() -> Any:
    """The ``vllm`` module; ``ValueError`` saying how to install it when it is missing."""
    try:
        import vllm
    except ImportError as error:
        raise ValueError(
            f"backend 'vllm' needs vLLM ({error}); install the GPU extra: pip install -e '.[gpu]', or use backend 'hf'"
        ) from None
    return vllm


class VLLMGenerator:
    """Greedy generation with vLLM's offline engine (needs a GPU and the ``[gpu]`` extra; untried on a GPU).

    ``llm_kwargs`` are :func:`vllm_llm_kwargs`' (``max_model_len``, ``tensor_parallel_size``,
    ``mm_processor_kwargs``, ``max_images``, …).
    """

    def __init__(self, path: str | Path, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, **llm_kwargs: Any) -> None:
        from transformers import AutoProcessor

        vllm = import_vllm()
        self.processor = AutoProcessor.from_pretrained(path)
        self.llm_kwargs = vllm_llm_kwargs(path, max_new_tokens=max_new_tokens, **llm_kwargs)
        self.llm = vllm.LLM(**self.llm_kwargs)
        self.params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.calls = 0

    def __call__(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Image.Image]) -> list[Completion]:
        inputs = [
            {
                "prompt": self.processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                "multi_modal_data": {"image": image if isinstance(image, Image.Image) else list(image)},
            }
            for p, image in zip(prompts, images)
        ]
        outputs = self.llm.generate(inputs, self.params, use_tqdm=False)
        self.calls += 1
        return [Completion(o.outputs[0].text, o.outputs[0].finish_reason) for o in outputs]


def flat_images(images: Sequence[Image.Image | Sequence[Image.Image]]) -> list[Image.Image]:
    """The images of a batch in prompt order: a prompt's entry is its image, or the list of its images."""
    return [image for entry in images for image in ([entry] if isinstance(entry, Image.Image) else entry)]


def vllm_available() -> bool:
    """True when vLLM is importable and a CUDA device is present."""
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def build_generator(
    model: str | Path | tuple[Any, Any],
    *,
    backend: Backend = "auto",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    dtype: torch.dtype | None = None,
    max_images: int = 1,
    max_model_len: int | None = None,
    tensor_parallel_size: int = 1,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> tuple[Generator, str]:
    """``(generator, backend used)`` for a model folder or a loaded ``(model, processor)`` pair.

    ``backend="auto"`` picks vLLM for a folder when :func:`vllm_available`, else Hugging Face, loaded per
    :func:`hf_load_settings` unless ``dtype`` is given. ``max_images``: the most images a prompt holds
    (vLLM reserves room for them). ``max_model_len`` and ``tensor_parallel_size`` are vLLM's; the pixel
    bounds apply to either backend's processor (``roma.models.apply_pixel_bounds``).
    """
    if backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"backend must be one of ['auto', 'hf', 'vllm'], got {backend!r}")
    from roma.models import apply_pixel_bounds, load_model_and_processor

    bounds = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    if isinstance(model, tuple):
        if backend == "vllm":
            raise ValueError("the vllm backend needs a model folder, not a loaded (model, processor) pair")
        loaded, processor = model
        if min_pixels is not None or max_pixels is not None:
            apply_pixel_bounds(processor, **bounds)
        return HFGenerator(loaded, processor, max_new_tokens=max_new_tokens), "hf"
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        import_vllm()
        if not torch.cuda.is_available():
            raise ValueError("backend 'vllm' needs a CUDA device; use backend 'hf'")
        generator = VLLMGenerator(
            model, max_new_tokens=max_new_tokens, max_images=max_images, max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size, **bounds,
        )
        return generator, "vllm"
    default_dtype, device_map = hf_load_settings()
    loaded, processor = load_model_and_processor(
        model, dtype=default_dtype if dtype is None else dtype, device_map=device_map
    )
    if min_pixels is not None or max_pixels is not None:
        apply_pixel_bounds(processor, **bounds)
    return HFGenerator(loaded, processor, max_new_tokens=max_new_tokens), "hf"
