"""Batched greedy generation for evaluation: Hugging Face ``generate`` (default) or vLLM.

A generator is a callable ``generator(prompts, images) -> completions``: ``prompts`` are
conversational prompts of roma's schema (one user turn with its image placeholders and the text),
``images`` the matching PIL images — a prompt's image, or the list of its images in placeholder order —
and each completion is the decoded text the model produced.

:class:`HFGenerator` applies the processor's chat template, pads on the **left** (so every
sequence ends where generation starts), decodes greedily (``do_sample=False``) and suppresses the
five vision special tokens, which a stray ``<|image_pad|>`` in a completion would otherwise
break the next forward pass with. Completions are decoded with ``skip_special_tokens=True``: pad and
end-of-turn tokens go, ``<think>`` / ``</think>`` (ordinary added tokens in Qwen3) stay.

:class:`VLLMGenerator` is used when vLLM is installed and a CUDA device is present (``backend="auto"``).
**It is untested here**: the development machine has neither a GPU nor vLLM. It follows vLLM's offline
``LLM.generate`` API for multimodal prompts (``{"prompt", "multi_modal_data": {"image": ...}}``)
with ``temperature=0``; vision tokens are not suppressed there (released Qwen3-VL checkpoints do not
emit them). Check it on a GPU before relying on it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

Generator = Callable[[Sequence[list[dict[str, Any]]], Sequence[Image.Image | list[Image.Image]]], list[str]]
Backend = Literal["auto", "hf", "vllm"]


class HFGenerator:
    """Greedy batched generation with ``model.generate`` (left padding, vision tokens suppressed)."""

    def __init__(self, model: Any, processor: Any, *, max_new_tokens: int = 256) -> None:
        from roma.models import vision_token_ids

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model, self.processor, self.max_new_tokens = model, processor, max_new_tokens
        self.suppress = vision_token_ids(processor)
        tokenizer = processor.tokenizer
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.calls = 0  # number of generate() batches run, for logging and tests

    @torch.no_grad()
    def __call__(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Image.Image]) -> list[str]:
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
        return tokenizer.batch_decode(completions, skip_special_tokens=True)


class VLLMGenerator:
    """Greedy generation with vLLM's offline engine (untested here: needs a GPU and ``pip install vllm``)."""

    def __init__(self, path: str | Path, *, max_new_tokens: int = 256, dtype: str = "auto", max_images: int = 1) -> None:
        from transformers import AutoProcessor
        from vllm import LLM, SamplingParams

        self.processor = AutoProcessor.from_pretrained(path)
        self.llm = LLM(model=str(path), dtype=dtype, limit_mm_per_prompt={"image": max_images}, seed=0)
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.calls = 0

    def __call__(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Image.Image]) -> list[str]:
        inputs = [
            {
                "prompt": self.processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                "multi_modal_data": {"image": image if isinstance(image, Image.Image) else list(image)},
            }
            for p, image in zip(prompts, images)
        ]
        outputs = self.llm.generate(inputs, self.params, use_tqdm=False)
        self.calls += 1
        return [o.outputs[0].text for o in outputs]


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
    max_new_tokens: int = 256,
    dtype: torch.dtype = torch.float32,
    max_images: int = 1,
) -> tuple[Generator, str]:
    """``(generator, backend used)`` for a model folder or a loaded ``(model, processor)`` pair.

    ``backend="auto"`` picks vLLM for a folder when :func:`vllm_available`, else Hugging Face.
    ``max_images``: the most images a prompt holds (vLLM reserves room for them).
    """
    if backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"backend must be one of ['auto', 'hf', 'vllm'], got {backend!r}")
    if isinstance(model, tuple):
        if backend == "vllm":
            raise ValueError("the vllm backend needs a model folder, not a loaded (model, processor) pair")
        loaded, processor = model
        return HFGenerator(loaded, processor, max_new_tokens=max_new_tokens), "hf"
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        if not vllm_available():
            raise ValueError("backend 'vllm' needs vLLM installed and a CUDA device; use backend 'hf'")
        return VLLMGenerator(model, max_new_tokens=max_new_tokens, max_images=max_images), "vllm"
    from roma.models import load_model_and_processor

    loaded, processor = load_model_and_processor(model, dtype=dtype)
    return HFGenerator(loaded, processor, max_new_tokens=max_new_tokens), "hf"
