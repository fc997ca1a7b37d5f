"""The ``roma`` command: one sub-command per concern, each implemented next to its code.

Every sub-command lives in its own module as ``main(argv: list[str]) -> int``; this file only
dispatches, importing lazily so that ``roma degrade`` does not pay for importing torch/TRL.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "degrade": ("roma.degrade.cli", "Render a labelled grid of the degradation pools and levels."),
    "degrade-dataset": ("roma.degrade.dataset", "Seeded degraded copies of a dataset for any evaluation kit."),
    "build-model": ("roma.models.cli", "Build the tiny offline Qwen3-VL (tokenizer, processor, weights)."),
    "sft": ("roma.sft", "Supervised warm-up of a model on the synthetic suite's worked solutions."),
    "train": ("roma.train.cli", "GRPO / ROMA / naive-augmentation RL training from a YAML recipe."),
    "eval": ("roma.eval.cli", "Clean / seen / unseen evaluation of a model on benchmarks."),
    "report": ("roma.eval.report", "Side-by-side table and plot of several evaluation runs."),
    "demo": ("roma.demo.run", "The whole experiment at CPU scale: base vs GRPO vs ROMA."),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: roma <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'roma <command> --help' for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from roma import __version__

        print(f"roma {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"roma: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
