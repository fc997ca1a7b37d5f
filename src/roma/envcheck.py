"""``python src/roma/envcheck.py`` (``make venv``): refuse a torch / torchvision pair that cannot work together.

roma itself never imports torchvision (its processor is image-only, :mod:`roma.models.processor`), but
transformers imports it whenever it is installed. Two combinations break every run:

- a torchvision whose import fails beside the installed torch (built for another torch release: the
  classic ``operator torchvision::nms does not exist``);
- a CUDA-built torchvision next to a CPU-only torch (what ``pip install torchvision`` brings next to the
  pinned CPU wheel).

The matching pair that vLLM installs on a GPU machine (``pip install -e '.[gpu]'``: CUDA torch and its
torchvision) is fine, and so is no torchvision at all.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any


def torchvision_problem(
    find_spec: Callable[[str], Any] = importlib.util.find_spec,
    import_module: Callable[[str], Any] = importlib.import_module,
) -> str | None:
    """Why the installed torchvision cannot be used beside the installed torch, or ``None`` if it can
    (or if there is none). The two callables exist for tests."""
    if find_spec("torchvision") is None:
        return None
    torch = import_module("torch")
    try:
        torchvision = import_module("torchvision")
    except Exception as error:  # any failure at import is the broken pair
        return (f"torchvision does not import beside torch {torch.__version__} ({type(error).__name__}: {error}); "
                "uninstall it (pip uninstall torchvision) or install the torchvision built for this torch")
    torch_cuda = getattr(torch.version, "cuda", None)
    vision_cuda = getattr(getattr(torchvision, "version", None), "cuda", None)
    if torch_cuda is None and vision_cuda is not None:
        return (f"torchvision {torchvision.__version__} is built for CUDA {vision_cuda} but torch "
                f"{torch.__version__} is the CPU build; uninstall it (pip uninstall torchvision)")
    return None


def main() -> int:
    problem = torchvision_problem()
    if problem:
        print(f"roma: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
