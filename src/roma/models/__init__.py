"""The tiny offline Qwen3-VL: an image-only processor, the model builder and its loaders.

See ``docs/models.md``. Importing ``roma`` registers :class:`Qwen3VLImageOnlyProcessor` with
``AutoProcessor``, so the folders written by :func:`build_tiny_qwen3vl` load with the stock
``AutoProcessor`` / ``AutoModelForImageTextToText`` API, offline.
"""

from roma.models.builder import (
    BUILD_INFO_FILE,
    SPECIAL_TOKENS,
    THINK_TOKENS,
    VISION_SPECIAL_TOKENS,
    TinyQwen3VLSpec,
    build_tiny_qwen3vl,
    load_model_and_processor,
    vision_token_ids,
)
from roma.models.chat_template import CHAT_TEMPLATE
from roma.models.processor import Qwen3VLImageOnlyProcessor, apply_pixel_bounds, register

__all__ = [
    "BUILD_INFO_FILE",
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "THINK_TOKENS",
    "VISION_SPECIAL_TOKENS",
    "Qwen3VLImageOnlyProcessor",
    "TinyQwen3VLSpec",
    "apply_pixel_bounds",
    "build_tiny_qwen3vl",
    "load_model_and_processor",
    "register",
    "vision_token_ids",
]
