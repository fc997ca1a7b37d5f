"""An image-only Qwen3-VL processor that needs no torchvision.

transformers' ``Qwen3VLProcessor`` requires a video processor, and every video processor needs
torchvision, which must not be installed next to the CPU torch build roma pins. This subclass drops
the video processor and keeps everything else of ``Qwen3VLProcessor`` unchanged for images:

- ``<|image_pad|>`` in the text is expanded to ``grid_t * grid_h * grid_w / merge_size**2`` copies,
  one per merged patch (``replace_image_token``, inherited);
- ``mm_token_type_ids`` (1 on image tokens, 0 elsewhere) is returned beside ``input_ids``: the
  5.x Qwen3-VL model needs it to build multimodal RoPE positions;
- ``apply_chat_template(..., tokenize=True)`` collects the images of the conversation and calls the
  processor, as TRL's ``GRPOTrainer`` and ``SFTTrainer`` do.

Any video input, or a ``<|video_pad|>`` in the text, is an error instead of being dropped.

``register()`` maps ``Qwen3VLConfig`` to this class in ``AutoProcessor`` (``import roma`` does it),
so ``AutoProcessor.from_pretrained(folder)`` returns it for folders saved by roma, whose
``processor_config.json`` names this class. Without the registration transformers cannot resolve
that name and silently falls back to a bare tokenizer.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoProcessor, Qwen3VLConfig, Qwen3VLProcessor
from transformers.image_utils import SizeDict
from transformers.processing_utils import ProcessorMixin

__all__ = ["Qwen3VLImageOnlyProcessor", "apply_pixel_bounds", "register"]


class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` for images and text only: ``(image_processor, tokenizer, chat_template)``.

    Inherits from ``Qwen3VLProcessor`` so that code checking for it accepts this class and so that
    the image behaviour is the parent's own (``replace_image_token``, ``return_mm_token_type_ids``,
    ``model_input_names``); only the constructor (no video processor) and the input validation
    (videos are refused) differ.
    """

    def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str | None = None):
        # The attributes Qwen3VLProcessor.__init__ sets, read from the tokenizer in the same way; the
        # parent constructor itself is skipped because it insists on a video processor.
        self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
        self.vision_start_token = getattr(tokenizer, "vision_start_token", "<|vision_start|>")
        self.vision_end_token = getattr(tokenizer, "vision_end_token", "<|vision_end|>")
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.image_token_id = _token_id(tokenizer, self.image_token)
        self.video_token_id = _token_id(tokenizer, self.video_token)
        self.vision_start_token_id = _token_id(tokenizer, self.vision_start_token)
        self.vision_end_token_id = _token_id(tokenizer, self.vision_end_token)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """Refuse video and audio input, then run the parent's checks (placeholders match the images)."""
        if videos is not None:
            raise ValueError(
                f"{type(self).__name__} handles images and text only, got videos={type(videos).__name__}; "
                "use transformers' Qwen3VLProcessor (needs torchvision) for video"
            )
        if audio is not None:
            raise ValueError(f"{type(self).__name__} handles images and text only, got audio input")
        # The parent also rejects a <|video_pad|> in the text, since no videos can be passed.
        super().validate_inputs(images=images, text=text, videos=None, audio=None, **kwargs)

    def _get_num_multimodal_tokens(self, image_sizes=None, video_sizes=None, **kwargs):
        """Image token counts per ``(height, width)``, as the parent; video sizes are refused."""
        if video_sizes is not None:
            raise ValueError(f"{type(self).__name__} has no video processor, got video_sizes={video_sizes}")
        return super()._get_num_multimodal_tokens(image_sizes=image_sizes, **kwargs)


def _token_id(tokenizer: Any, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {token!r} token; a Qwen3-VL tokenizer needs it")
    return int(token_id)


def register() -> None:
    """Make ``AutoProcessor`` return :class:`Qwen3VLImageOnlyProcessor` for Qwen3-VL folders saved by roma.

    Idempotent. Folders whose ``processor_config.json`` names transformers' own ``Qwen3VLProcessor``
    (released checkpoints) still load that class: transformers resolves its own names first.
    """
    AutoProcessor.register(Qwen3VLConfig, Qwen3VLImageOnlyProcessor, exist_ok=True)


def apply_pixel_bounds(processor: Any, *, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """Set the image area bounds (pixels) of a Qwen-VL processor's image processor, in place; return it.

    The image processor resizes every image to sides that are multiples of ``patch_size · merge_size``
    with an area in ``[min_pixels, max_pixels]`` (transformers' ``smart_resize``, aspect ratio kept), so
    ``max_pixels`` caps an image at ``max_pixels / (patch_size · merge_size)²`` vision tokens. ``None``
    keeps the current bound. ``ValueError`` for a bound < 1 or ``min_pixels > max_pixels``; ``TypeError``
    for a processor without a Qwen-style ``image_processor.size`` (``shortest_edge`` / ``longest_edge``).
    """
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    if size is None or "longest_edge" not in size or "shortest_edge" not in size:
        raise TypeError(f"{type(processor).__name__} has no Qwen-VL image processor size (shortest/longest_edge)")
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
    low = size["shortest_edge"] if min_pixels is None else min_pixels
    high = size["longest_edge"] if max_pixels is None else max_pixels
    if low > high:
        raise ValueError(f"min_pixels ({low}) must not exceed max_pixels ({high})")
    image_processor.size = SizeDict(shortest_edge=low, longest_edge=high)
    for name, value in (("min_pixels", low), ("max_pixels", high)):  # older configs keep them as attributes too
        if getattr(image_processor, name, None) is not None:
            setattr(image_processor, name, value)
    return processor
