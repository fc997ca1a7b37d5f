"""What makes an evaluation folder's records the records of one run: its lock and its identities.

- :func:`locked_out_dir`: an exclusive ``fcntl.flock`` on ``<out_dir>/.lock`` held for the whole run; a
  second run into the same folder fails at once (:class:`OutDirLockedError`). The kernel drops the lock
  when the process ends, however it ends (``kill -9`` included), so a killed run never blocks the next.
- :func:`model_fingerprint`: a SHA-256 of a model folder's weights and configuration files, so a model
  retrained into the same folder is a different model.
- :func:`row_digest`: a SHA-256 of one example's content (every schema field, the image bytes included),
  stored in each record as ``row``: a resumed run reuses a record only when its row is unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

LOCK_FILE = ".lock"
_CHUNK = 1 << 20


class OutDirLockedError(ValueError):
    """Another process holds the lock of an output folder."""


@contextlib.contextmanager
def locked_out_dir(out_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on ``out_dir`` (created if needed) for the ``with`` block.

    Raises :class:`OutDirLockedError` naming the folder and the process that holds it.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise OutDirLockedError(
                f"{folder} is in use by another run ({holder}); wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# Files of a model folder that define the model: weights, configuration, tokenizer and processor.
_MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".model", ".jinja", ".txt", ".tiktoken")
_NOT_MODEL_FILES = {"trainer_state.json", "run_info.json", "training_args.bin", "build_info.json"}


def model_fingerprint(folder: str | Path) -> str:
    """SHA-256 (hex, 16 characters) of a model folder's top-level weights, configuration and tokenizer files.

    Each file enters with its name and its full content; training leftovers (optimizer, scheduler, RNG
    states, ``trainer_state.json``) do not, so a checkpoint folder and the same weights saved alone agree.
    """
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(root.iterdir()):
        name = path.name
        weights_bin = name.startswith(("pytorch_model", "adapter_model")) and name.endswith(".bin")
        if not path.is_file() or name in _NOT_MODEL_FILES or not (name.endswith(_MODEL_FILE_SUFFIXES) or weights_bin):
            continue
        digest.update(name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _image_bytes(value: Any) -> bytes:
    """The bytes an image cell stands for: its encoded bytes, its file, or a PIL image's mode, size and pixels."""
    if isinstance(value, (list, tuple)):
        return b"".join(_image_bytes(v) for v in value)
    if isinstance(value, Image.Image):
        return f"{value.mode}{value.size}".encode() + value.tobytes()
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        if value.get("path") and os.path.exists(value["path"]):
            return Path(value["path"]).read_bytes()
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return repr(value).encode()


def row_digest(example: dict[str, Any]) -> str:
    """SHA-256 (hex, 16 characters) of one example: every field but the image as sorted JSON, then the image.

    Changing the question (``prompt``), the answer, the choices, the tolerance or one byte of the image
    changes the digest.
    """
    fields = {k: v for k, v in example.items() if k != "image"}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str, ensure_ascii=False).encode())
    digest.update(b"\0")
    digest.update(_image_bytes(example.get("image")))
    return digest.hexdigest()[:16]


def identity_digest(identity: dict[str, Any]) -> str:
    """SHA-256 (hex, 16 characters) of a run's identity mapping (model, its fingerprint, generation settings)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
