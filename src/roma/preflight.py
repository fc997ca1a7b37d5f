"""Checks a command makes before it loads any model: a bad setting fails in the first second, in one line.

One home for the checks every ``roma`` sub-command shares:

- :func:`check_writable_dir`: the output folder can be created and written (a real test file is created
  and removed, so read-only mounts, a path under a regular file and missing permissions are all caught);
- :func:`check_model_folder`: a model given as a folder exists (a hub id must be in the local cache when
  the hub is offline);
- :func:`load_yaml_mapping`: a YAML recipe read with a loader that refuses a repeated key (PyYAML keeps
  the last value silently);
- :func:`check_field_types`: the ``int`` / ``float`` / ``bool`` fields of a dataclass hold values of that
  type (a YAML ``max_steps: 2.5`` reaches a dataclass unconverted: argparse converts only string defaults).

Every check raises ``ValueError`` naming the bad value; the commands print it as ``roma <cmd>: <message>``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import yaml


def check_writable_dir(path: str | Path, *, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) if needed and prove it writable by creating and removing a file.

    Returns the folder. Raises ``ValueError("<what> <path> is not writable: <reason>")``.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".roma-write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"{what} {str(folder)!r} is not writable: {reason}") from None
    return folder


def looks_like_hub_id(name: str) -> bool:
    """``"owner/name"`` with no leading ``.``, ``/`` or ``~`` (a hub repository id rather than a path)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not name.endswith("/")


def check_model_folder(path: str | Path, *, hint: str = "") -> None:
    """``ValueError("model folder … does not exist")`` for a model that cannot be found without loading it.

    A hub id (``owner/name``) that is not a folder is accepted when the hub may be reached, and must be in
    the local Hugging Face cache when ``HF_HUB_OFFLINE`` is set.
    """
    name = str(path)
    if Path(name).is_dir():
        return
    if Path(name).exists():
        raise ValueError(f"model folder {name!r} is a file, not a folder")
    if looks_like_hub_id(name):
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        if not offline:
            return
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
        raise ValueError(f"model folder {name!r} does not exist, and HF_HUB_OFFLINE is set with no cached hub "
                         f"copy of {name!r}{hint}")
    raise ValueError(f"model folder {name!r} does not exist{hint}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key repeated in one mapping."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ValueError(
                f"key {key!r} is repeated (lines {seen[key]} and {key_node.start_mark.line + 1}); give it once"
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml(text: str, *, source: str = "YAML") -> Any:
    """``yaml.safe_load`` that raises ``ValueError("<source>: key 'x' is repeated …")`` on a repeated key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{source}: not valid YAML ({' '.join(str(error).split())})") from None


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (empty file: ``{}``), read with :func:`load_yaml`.

    ``ValueError`` for a missing file, a repeated key, invalid YAML or a top level that is not a mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    loaded = load_yaml(text, source=str(path))
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    return loaded


def _simple_kind(hint: Any) -> tuple[type, bool] | None:
    """``(int | float | bool, optional)`` for a hint of exactly that type (or ``T | None``); else ``None``."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) != 1:
            return None
        optional, hint = True, members[0]
    return (hint, optional) if hint in (int, float, bool) else None


def check_field_types(obj: Any, *, names: typing.Iterable[str] | None = None) -> None:
    """``ValueError`` naming the first ``int`` / ``float`` / ``bool`` field of dataclass ``obj`` of another type.

    ``int`` fields take ints (not bools, not ``2.5``), ``float`` fields ints or floats, ``bool`` fields
    bools; ``T | None`` fields also ``None``. Fields of other types are not looked at. ``names`` limits the
    check to those fields.
    """
    try:
        hints = typing.get_type_hints(type(obj))
    except Exception:  # noqa: BLE001 - an unresolvable annotation: check the fields whose type is a class
        hints = {f.name: f.type for f in dataclasses.fields(obj) if isinstance(f.type, type)}
    wanted = set(names) if names is not None else None
    for f in dataclasses.fields(obj):
        if wanted is not None and f.name not in wanted:
            continue
        kind = _simple_kind(hints.get(f.name))
        if kind is None:
            continue
        expected, optional = kind
        value = getattr(obj, f.name)
        if value is None and optional:
            continue
        if expected is bool:
            ok = isinstance(value, bool)
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            allowed = expected.__name__ + (" or null" if optional else "")
            raise ValueError(f"{f.name} must be {'a' if expected is not int else 'an'} {allowed}, got {value!r} "
                             f"({type(value).__name__})")
