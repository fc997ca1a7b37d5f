"""What roma adds to the vLLM engine TRL starts in colocate mode: the image bounds of the run.

TRL 1.16 builds ``vllm.LLM(...)`` inside ``GRPOTrainer.__init__`` (``trl.generation.vllm_generation``)
with a fixed argument list that has no ``mm_processor_kwargs`` / ``limit_mm_per_prompt``. vLLM then
processes the rollout images with the model folder's processor defaults (Qwen3-VL: up to 16,384 tokens
per image) while the trainer's teacher-forced passes use the run's ``max_pixels``: the token sequences
would differ. :func:`extra_llm_kwargs` adds roma's arguments to that one construction, for the duration
of ``GRPOTrainer.__init__`` only.

In ``vllm_mode: server`` the server is started separately (``trl vllm-serve``); give it the same bounds
there (docs/trainer.md "GPU runs").
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from roma.train.config import RomaConfig


def vllm_engine_kwargs(args: RomaConfig) -> dict[str, Any]:
    """Extra ``vllm.LLM`` keyword arguments of a run: the processor's image bounds and images per prompt.

    ``{"mm_processor_kwargs": {"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}},
    "limit_mm_per_prompt": {"image": images_per_prompt}}``, the bounds only where set (vLLM hands
    ``mm_processor_kwargs`` to the Hugging Face processor call, whose ``size`` takes pixel areas).
    """
    kwargs: dict[str, Any] = {"limit_mm_per_prompt": {"image": args.images_per_prompt}}
    if args.pixel_bounds:
        kwargs["mm_processor_kwargs"] = {"size": dict(args.pixel_bounds)}
    return kwargs


@contextlib.contextmanager
def extra_llm_kwargs(extra: dict[str, Any]) -> Iterator[None]:
    """Within the block, ``vllm.LLM`` as TRL's generation module calls it receives ``extra`` too.

    A keyword TRL passes itself is not overridden (``ValueError``, naming it): roma only adds arguments.
    Without vLLM installed (TRL then never builds the engine) the block runs unchanged.
    """
    from trl.generation import vllm_generation

    original = getattr(vllm_generation, "LLM", None)
    if original is None or not extra:
        yield
        return

    @functools.wraps(original)
    def llm(*args: Any, **kwargs: Any) -> Any:
        clash = sorted(set(kwargs) & set(extra))
        if clash:
            raise ValueError(f"TRL already passes {clash} to vllm.LLM; roma would override them")
        return original(*args, **kwargs, **extra)

    vllm_generation.LLM = llm
    try:
        yield
    finally:
        vllm_generation.LLM = original
