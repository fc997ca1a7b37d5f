"""What every run writes next to its outputs: package versions and the git commit of the code.

One home for it, so a training run, an SFT warm-up, an evaluation and a built model all record the
same facts in the same form.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES: tuple[str, ...] = (
    "roma", "torch", "transformers", "trl", "accelerate", "datasets", "peft", "tokenizers",
    "numpy", "pillow", "opencv-python-headless", "math-verify",
)


def package_versions() -> dict[str, str]:
    """Installed versions of roma's stack (``"not installed"`` for a missing optional one) and Python's."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    """The commit of the checkout roma runs from, with ``+dirty`` for uncommitted changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def provenance() -> dict[str, object]:
    """``{"versions": {...}, "git_commit": "..."}`` — merge it into a run's resolved-config file."""
    return {"versions": package_versions(), "git_commit": git_commit()}


def run_info() -> dict[str, object]:
    """What a training run writes to ``run_info.json``: the versions, the platform, the commit (``"unknown"``
    outside git) and the command line."""
    return {**package_versions(), "platform": platform.platform(), "git_commit": git_commit() or "unknown",
            "command": sys.argv}
