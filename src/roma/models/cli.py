"""``roma build-model``: build the tiny offline Qwen3-VL into a folder.

Every size of :class:`roma.models.builder.TinyQwen3VLSpec` is a flag (``--text-hidden-size 64``);
the defaults are the spec's. The tokenizer is trained on the synthetic suite's corpus
(``roma.data.synthetic.tokenizer_corpus(seed=SEED)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from roma.models.builder import BUILD_INFO_FILE, TinyQwen3VLSpec, build_tiny_qwen3vl
from roma.preflight import check_writable_dir


def _str_to_bool(value: str) -> bool:
    accepted = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if value.lower() not in accepted:
        raise argparse.ArgumentTypeError(f"expected one of {sorted(accepted)}, got {value!r}")
    return accepted[value.lower()]


def _add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model sizes (TinyQwen3VLSpec)")
    for spec_field in dataclasses.fields(TinyQwen3VLSpec):
        flag = "--" + spec_field.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": spec_field.name, "default": spec_field.default}
        help_ = f"{spec_field.metadata['help']} (default: %(default)s)"
        if spec_field.type == "int":
            kwargs["type"] = int
        elif spec_field.type == "float":
            kwargs["type"] = float
        elif spec_field.type == "bool":
            kwargs.update(type=_str_to_bool, metavar="{true,false}")
        elif spec_field.type == "tuple[int, ...]":
            kwargs.update(type=int, nargs="+")
        else:
            raise TypeError(f"no CLI conversion for TinyQwen3VLSpec.{spec_field.name} of type {spec_field.type}")
        group.add_argument(flag, help=help_, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roma build-model",
        description="Build the tiny offline Qwen3-VL (tokenizer, processor, random weights) into a folder.",
    )
    parser.add_argument("--out", required=True, help="Folder to write (must be absent or empty).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the tokenizer corpus and the weights.")
    parser.add_argument("--overwrite", action="store_true", help="Write into a non-empty folder.")
    _add_spec_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    spec_values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TinyQwen3VLSpec)}
    spec_values["deepstack_layers"] = tuple(spec_values["deepstack_layers"])
    try:
        spec = TinyQwen3VLSpec(**spec_values)
        out = Path(args.out)
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise ValueError(f"{out} is not empty; pass --overwrite to replace its files")
        check_writable_dir(out)
    except ValueError as error:
        print(f"roma build-model: {error}", file=sys.stderr)
        return 2
    out_dir = build_tiny_qwen3vl(out, seed=args.seed, spec=spec, overwrite=args.overwrite)
    info = json.loads((out_dir / BUILD_INFO_FILE).read_text(encoding="utf-8"))
    params = info["parameters"]
    print(
        f"built {out_dir}: {params['total']:,} parameters (vision {params['vision']:,}, "
        f"language {params['language']:,}), vocabulary {info['tokenizer']['total_vocab_size']}, "
        f"{info['build_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
