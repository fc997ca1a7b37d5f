"""roma: RL fine-tuning of vision-language models that keeps reasoning under degraded images.

Importing ``roma`` registers the image-only Qwen3-VL processor with ``AutoProcessor`` (see
``roma.models``) so that ``AutoProcessor.from_pretrained`` works on folders built by roma without
torchvision. Heavy submodules (trainer, eval) are imported on demand.
"""

__version__ = "0.1.0"


def _register_processor() -> None:
    try:
        from roma.models.processor import register
    except ImportError:  # the models module is optional at import time (e.g. rewards-only use)
        return
    register()


_register_processor()
