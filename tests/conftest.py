"""Shared test fixtures, session-scoped so the expensive ones are built once per run.

Session settings (applied when this file is imported, before any test module imports transformers):

- ``HF_HUB_OFFLINE=1``: nothing may reach the Hugging Face Hub; everything is built locally.
- ``TOKENIZERS_PARALLELISM=false``: no tokenizer thread pools (and no fork warnings).
- ``torch.set_num_threads(1)`` (in :func:`_single_torch_thread`): timings on a shared 2-core
  machine are far less noisy with one thread.

Fixtures:

- ``tiny_model_dir``: a folder holding the tiny Qwen3-VL built by
  :func:`roma.models.build_tiny_qwen3vl` (seed 0, default sizes), its tokenizer trained on a
  300-scene corpus of the synthetic suite. Treat it as read-only; load it with
  ``roma.models.load_model_and_processor(tiny_model_dir)``.
"""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

TINY_MODEL_SEED = 0
TINY_MODEL_CORPUS_SCENES = 300


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Folder of the tiny Qwen3-VL (seed 0), built once per session in a few seconds."""
    from roma.data.synthetic import tokenizer_corpus
    from roma.models import build_tiny_qwen3vl

    corpus = tokenizer_corpus(seed=TINY_MODEL_SEED, n=TINY_MODEL_CORPUS_SCENES)
    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny_qwen3vl"), seed=TINY_MODEL_SEED, corpus=corpus)
