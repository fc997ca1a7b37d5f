"""roma: RL fine-tuning of vision-language models that keeps reasoning under degraded images.

``import roma`` is cheap: it loads neither torch nor transformers. It arranges for roma's image-only
Qwen3-VL processor (``roma.models.processor``) to be registered with ``AutoProcessor`` the moment
transformers' auto-processor module is imported, so that ``AutoProcessor.from_pretrained(folder)`` returns
it for folders built by roma (without the registration it would silently return a bare tokenizer).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_AUTO_PROCESSING = "transformers.models.auto.processing_auto"


def _register_processor() -> None:
    from roma.models.processor import register

    register()


class _RegisterAfterExec(importlib.abc.Loader):
    """Wraps the real loader of transformers' auto-processor module; registers once it has run."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):  # noqa: ANN001 - importlib protocol
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001 - importlib protocol
        self._loader.exec_module(module)
        _register_processor()


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: finds the module with the other finders, then wraps its loader."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001 - importlib protocol
        if name != _AUTO_PROCESSING:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfterExec(spec.loader)
        return spec


if _AUTO_PROCESSING in sys.modules:
    _register_processor()
elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterOnImport())
