"""Every run records the same provenance: versions of the stack and the git commit."""

import re
import subprocess
from pathlib import Path

import torch
import transformers
import trl

from roma.provenance import git_commit, package_versions, provenance


def test_versions_are_the_installed_ones():
    versions = package_versions()
    assert versions["torch"] == torch.__version__
    assert versions["transformers"] == transformers.__version__
    assert versions["trl"] == trl.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions["python"])


def test_git_commit_names_the_checkout_head():
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    if head.returncode != 0:  # an exported source tree: nothing to name
        assert git_commit() is None
        return
    commit = git_commit()
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert commit.split("+")[0] == head.stdout.strip()
    assert set(provenance()) == {"versions", "git_commit"}


def test_run_info_holds_versions_platform_commit_and_command(monkeypatch):
    from roma.provenance import run_info

    monkeypatch.setattr("sys.argv", ["roma", "train", "--config", "x.yaml"])
    info = run_info()
    assert info["command"] == ["roma", "train", "--config", "x.yaml"]
    assert info["trl"] == "1.16.0" and info["torch"].startswith("2.13.0") and info["python"]
    assert info["platform"] and isinstance(info["git_commit"], str) and info["git_commit"]
