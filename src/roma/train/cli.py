"""``roma train``: GRPO / ROMA / naive-augmentation RL of a vision-language model from a YAML recipe.

::

    roma train --config configs/tiny-roma.yaml [--key value ...]
    accelerate launch --config_file configs/accelerate/zero3.yaml -m roma.train.cli --config configs/qwen3vl-8b-roma.yaml

Every key of the recipe (and every ``--key value`` flag, which wins over the recipe) is a field of
:class:`roma.train.RomaConfig` (TRL's ``GRPOConfig`` + ROMA's options), of TRL's ``ModelConfig``
(``model_name_or_path``, ``dtype``, ``use_peft``, ``lora_r``, …) or of :class:`DataArguments`; an
unknown key is an error. The run:

1. builds a random tiny Qwen3-VL at ``model_name_or_path`` if ``build_tiny_model`` is set and the folder
   does not exist (a smoke-test policy; real runs start from the SFT base, ``roma sft``);
2. loads the training set: ``dataset_name: synthetic`` (roma's suite) or MMRL30k, the paper's training
   set (``mmrl30k``, or ``mmrl30k=PATH`` / ``--data mmrl30k=PATH --split train`` for a local copy, read by
   :func:`roma.data.benchmarks.load_benchmark`); evaluation splits are refused;
3. adds the vision special tokens to ``generation_kwargs["suppress_tokens"]`` (transformers generation
   only; TRL's own list, which these replace, holds the image token alone);
4. trains :class:`roma.train.RomaTrainer`, resuming from ``resume_from_checkpoint`` (a checkpoint folder,
   or ``last`` for the newest *complete* ``checkpoint-*`` of ``output_dir``: one whose
   ``trainer_state.json``, written last, is readable; newer incomplete ones are named and skipped);
5. writes ``config.yaml`` (the resolved configuration, re-usable as ``--config``), ``run_info.json``
   (package versions, git commit, command) and the final model and processor to ``output_dir``.
"""

import argparse
import copy
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roma.preflight import check_field_types, check_writable_dir, load_yaml_mapping, looks_like_hub_id
from roma.train.config import RomaConfig

LAST_CHECKPOINT = "last"
SYNTHETIC_SIZE, SYNTHETIC_SEED, SYNTHETIC_IMAGE_SIZE = 512, 7, 128
SYNTHETIC_ONLY: tuple[str, ...] = ("dataset_size", "dataset_seed", "synthetic_families", "synthetic_image_size")


@dataclass
class DataArguments:
    """The training set, the rewards and the model bootstrap of a ``roma train`` run."""

    dataset_name: str = field(
        default="synthetic",
        metadata={"aliases": ["--data"],
                  "help": "'synthetic' (roma's embedded suite, see dataset_size / dataset_seed), 'mmrl30k' (its hub "
                  "id, read from the local Hugging Face cache) or NAME=PATH for a local copy, as in 'roma eval "
                  "--data' (e.g. mmrl30k=./MMRL30k, a repository snapshot with train / k12_test shards)."},
    )
    dataset_split: str | None = field(
        default=None,
        metadata={"aliases": ["--split"],
                  "help": "synthetic: 'train' (default), 'validation' or 'test' (disjoint scene buckets); "
                  "MMRL30k: its training split 'train' (default). Held-out splits (k12_test, any benchmark's "
                  "evaluation split) are refused."},
    )
    dataset_size: int | None = field(
        default=None, metadata={"help": f"synthetic only: number of examples (unset: {SYNTHETIC_SIZE})."}
    )
    dataset_seed: int | None = field(
        default=None,
        metadata={"help": f"synthetic only: generator seed (unset: {SYNTHETIC_SEED}; the SFT warm-up uses the "
                  "split seeds, so the RL examples differ from the warm-up's)."},
    )
    dataset_limit: int | None = field(
        default=None, metadata={"help": "benchmarks only: keep the first N source rows."}
    )
    synthetic_families: list[str] | None = field(
        default=None, metadata={"help": "synthetic only: task families (unset: all)."}
    )
    synthetic_image_size: int | None = field(
        default=None,
        metadata={"help": f"synthetic only: image side in pixels (unset: {SYNTHETIC_IMAGE_SIZE} → 16 vision tokens)."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={"help": "Reward functions by their roma.rewards.REWARD_FUNCS name, summed with "
                  "reward_weights. success_reward names the one that defines success (its function name, "
                  "e.g. 'accuracy_reward')."},
    )
    build_tiny_model: bool = field(
        default=False,
        metadata={"help": "Build a random tiny Qwen3-VL at model_name_or_path when that folder does not exist "
                  "(smoke tests; RL from random weights never earns a reward)."},
    )
    suppress_vision_tokens: bool = field(
        default=True,
        metadata={"help": "Add the five vision special tokens to generation_kwargs['suppress_tokens'] "
                  "(transformers generation): a sampled <|image_pad|> breaks the teacher-forced passes."},
    )


def parse_args(argv: Sequence[str] | None = None) -> tuple[RomaConfig, Any, DataArguments]:
    """``--config recipe.yaml`` then ``--key value`` flags → ``(RomaConfig, ModelConfig, DataArguments)``.

    Unknown keys in the recipe raise ``ValueError``; unknown flags exit with argparse's usage error.
    """
    from trl import ModelConfig, TrlParser

    parser = TrlParser(
        dataclass_types=[RomaConfig, ModelConfig, DataArguments],
        prog="roma train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args and args.index("--config") + 1 < len(args):
        load_yaml_mapping(args[args.index("--config") + 1])  # a repeated key or invalid YAML: ValueError
    training_args, model_args, data_args = parser.parse_args_and_config(args=args)
    for parsed in (training_args, model_args, data_args):
        check_field_types(parsed)
    if model_args.model_name_or_path is None:
        raise ValueError("model_name_or_path is required (a model folder, or a hub id on a machine with a hub)")
    return training_args, model_args, data_args


def parse_recipe(recipe: dict[str, Any]) -> tuple[RomaConfig, Any, DataArguments]:
    """A recipe as a mapping (the keys of a YAML recipe) → ``(RomaConfig, ModelConfig, DataArguments)``,
    parsed exactly as ``roma train --config`` parses the YAML file; ``ValueError`` for an unknown key or a
    bad value (argparse's own errors included)."""
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        try:
            return parse_args(["--config", str(path)])
        except SystemExit as error:  # argparse rejected a value (its message went to stderr)
            raise ValueError(f"the recipe has a value argparse rejects (see the message above): {recipe}") from error


def load_train_dataset(data_args: DataArguments) -> Any:
    """The training set in roma's schema (``roma.data.schema``) of :func:`validate`-d ``data_args``; a held-out
    (evaluation) split is refused before and after reading."""
    if data_args.dataset_name == "synthetic":
        from roma.data.synthetic import generate

        return generate(
            SYNTHETIC_SIZE if data_args.dataset_size is None else data_args.dataset_size,
            seed=SYNTHETIC_SEED if data_args.dataset_seed is None else data_args.dataset_seed,
            families=data_args.synthetic_families,
            image_size=SYNTHETIC_IMAGE_SIZE if data_args.synthetic_image_size is None else data_args.synthetic_image_size,
            split=data_args.dataset_split or "train",
        )
    import warnings

    from roma.data.benchmarks import check_training_split, parse_data_arg, read_benchmark, resolve_benchmark

    benchmark, source = parse_data_arg(data_args.dataset_name)
    spec, _ = resolve_benchmark(source, benchmark)
    check_training_split(spec, data_args.dataset_split or spec.split)  # before reading anything
    loaded = read_benchmark(source, split=data_args.dataset_split, limit=data_args.dataset_limit, benchmark=benchmark)
    check_training_split(spec, loaded.split)  # a single file may hold another split than asked for
    if loaded.skipped:
        shown = ", ".join(f"{s.id} ({s.reason})" for s in loaded.skipped[:5])
        warnings.warn(f"{spec.name}: skipped {len(loaded.skipped)} of {loaded.n_rows} training row(s): {shown}",
                      stacklevel=2)
    return loaded.dataset


def check_data_args(data_args: DataArguments) -> None:
    """``ValueError`` for a dataset option that the chosen dataset would ignore, or a size below 1."""
    for name in ("dataset_size", "dataset_limit", "synthetic_image_size"):
        value = getattr(data_args, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 (or unset), got {value!r}: a run on 0 examples trains nothing")
    if data_args.dataset_name == "synthetic":
        if data_args.dataset_limit is not None:
            raise ValueError("dataset_limit applies to benchmarks; for the synthetic suite set dataset_size")
    else:
        ignored = [name for name in SYNTHETIC_ONLY if getattr(data_args, name) is not None]
        if ignored:
            raise ValueError(f"{ignored} apply to dataset_name='synthetic' only, not to {data_args.dataset_name!r}")


def check_budget(training_args: RomaConfig) -> None:
    """``ValueError`` for a run that would train 0 steps (``max_steps`` unset and ``num_train_epochs`` <= 0)."""
    if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
        raise ValueError(f"max_steps={training_args.max_steps} and num_train_epochs={training_args.num_train_epochs} "
                         "train 0 steps: set max_steps >= 1 or num_train_epochs > 0")


def reward_functions(names: Sequence[str]) -> list[Any]:
    """The reward functions named in ``roma.rewards.REWARD_FUNCS``; ``ValueError`` for an unknown name."""
    from roma.rewards import REWARD_FUNCS

    unknown = [name for name in names if name not in REWARD_FUNCS]
    if unknown or not names:
        raise ValueError(f"reward_funcs must be a non-empty list of {sorted(REWARD_FUNCS)}, got {list(names)}")
    return [REWARD_FUNCS[name] for name in names]


def is_complete_checkpoint(folder: str | Path) -> bool:
    """Whether a checkpoint folder was saved to the end: ``trainer_state.json`` exists and parses.

    transformers' ``Trainer._save_checkpoint`` writes the model, then the optimizer, scheduler and RNG
    states, and ``trainer_state.json`` last; a save killed midway leaves a folder without it (or with a
    truncated one), from which a resume crashes.
    """
    state = Path(folder) / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _checkpoint_step(folder: Path) -> int:
    suffix = folder.name.removeprefix("checkpoint-")
    return int(suffix) if suffix.isdigit() else -1


def latest_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[Path]]:
    """``(newest complete checkpoint-<step> folder of output_dir or None, the newer incomplete ones skipped)``."""
    folders = sorted((p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and _checkpoint_step(p) >= 0),
                     key=_checkpoint_step, reverse=True)
    skipped = []
    for folder in folders:
        if is_complete_checkpoint(folder):
            return folder, skipped
        skipped.append(folder)
    return None, skipped


def resolve_checkpoint(value: str | None, output_dir: str, *, log: Any = None) -> str | None:
    """``resume_from_checkpoint`` as Trainer.train takes it: ``last`` → the newest *complete* checkpoint folder.

    ``log`` (e.g. ``print``) is told which incomplete checkpoints were skipped. ``ValueError`` when there is
    no complete checkpoint to resume from, or a named folder is not a complete checkpoint.
    """
    if value is None:
        return None
    if value == LAST_CHECKPOINT:
        folder, skipped = latest_complete_checkpoint(output_dir)
        names = ", ".join(p.name for p in skipped)
        if folder is None:
            why = f" (incomplete, no readable trainer_state.json: {names})" if skipped else ""
            raise ValueError(f"resume_from_checkpoint='last' but {output_dir} holds no complete checkpoint-* folder{why}")
        if skipped and log is not None:
            log(f"roma train: skipped incomplete checkpoint(s) {names} (no readable trainer_state.json: a save was "
                f"interrupted); resuming from {folder.name}")
        return str(folder)
    if not Path(value).is_dir():
        raise ValueError(f"resume_from_checkpoint={value!r} is not a checkpoint folder (or use 'last')")
    if not is_complete_checkpoint(value):
        raise ValueError(f"resume_from_checkpoint={value!r} is incomplete (no readable trainer_state.json: its save "
                         "was interrupted); use an earlier checkpoint or 'last'")
    return value


def check_model_path(model_args: Any, data_args: DataArguments) -> None:
    """``ValueError`` for a local-looking model path that does not exist and will not be built."""
    path = model_args.model_name_or_path
    if not Path(path).exists() and not data_args.build_tiny_model and not looks_like_hub_id(path):
        raise ValueError(
            f"model_name_or_path {path!r} does not exist; train the SFT base first (roma sft --config "
            "configs/tiny-sft.yaml writes runs/sft/model) or pass --build_tiny_model true for a random tiny model"
        )


def merged_model_init_kwargs(training_args: RomaConfig, model_args: Any) -> dict[str, Any]:
    """``model_init_kwargs`` (how TRL loads the policy) with ModelConfig's revision, dtype and attention.

    ``ValueError`` when both name the same setting with different values.
    """
    kwargs = dict(training_args.model_init_kwargs or {})
    from_model_config = {
        "revision": ("model_revision", model_args.model_revision),
        "dtype": ("dtype", model_args.dtype),
        "attn_implementation": ("attn_implementation", model_args.attn_implementation),
    }
    for key, (name, value) in from_model_config.items():
        if value is None:
            continue
        if key in kwargs and kwargs[key] != value:
            raise ValueError(
                f"model_init_kwargs[{key!r}]={kwargs[key]!r} contradicts {name}={value!r}; set it once, as {name}"
            )
        kwargs[key] = value
    return kwargs


# Fields GRPOConfig derives from the others at construction; a recipe may set only one of them.
DERIVED_FIELDS: tuple[str, ...] = ("generation_batch_size",)


def resolved_config(training_args: RomaConfig, model_args: Any, data_args: DataArguments) -> dict[str, Any]:
    """All fields of the three dataclasses as plain YAML-able values (one flat mapping, as the recipes),
    without :data:`DERIVED_FIELDS`, so that the mapping is itself a valid recipe."""
    config = {**training_args.to_dict(), **asdict(model_args), **asdict(data_args)}
    config = {key: value for key, value in config.items() if key not in DERIVED_FIELDS}
    if training_args.vllm_max_model_length_derived:  # re-derived from the recipe's lengths when it is reused
        config["vllm_max_model_length"] = None
    return json.loads(json.dumps(config, default=str))


@dataclass(frozen=True)
class ValidatedRun:
    """What :func:`validate` resolves from the three parsed configurations, which it leaves untouched."""

    checkpoint: str | None  # resume_from_checkpoint as Trainer.train takes it (a complete checkpoint folder)
    rewards: list[Any]  # the reward functions of data_args.reward_funcs
    model_init_kwargs: dict[str, Any]  # how TRL loads the policy (RomaConfig's merged with ModelConfig's)


def validate(training_args: RomaConfig, model_args: Any, data_args: DataArguments) -> ValidatedRun:
    """Every check of a ``roma train`` run, once, before anything is built; ``ValueError`` naming the
    first bad setting. (RomaConfig, ModelConfig and DataArguments validate their own fields at parsing.)"""
    check_model_path(model_args, data_args)
    main_process = os.environ.get("RANK", "0") == "0"  # say once which incomplete checkpoints are skipped
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir,
                                    log=print if main_process else None)
    check_data_args(data_args)
    check_budget(training_args)
    rewards = reward_functions(data_args.reward_funcs)
    return ValidatedRun(checkpoint, rewards, merged_model_init_kwargs(training_args, model_args))


def run(training_args: RomaConfig, model_args: Any, data_args: DataArguments) -> Path:
    """Validate, then train as configured; return ``output_dir``."""
    return execute(training_args, model_args, data_args, validate(training_args, model_args, data_args))


def execute(training_args: RomaConfig, model_args: Any, data_args: DataArguments, validated: ValidatedRun, *,
            train_dataset: Any = None) -> Path:
    """Train a :func:`validate`-d run; return ``output_dir``. ``train_dataset``: the training set when already
    read (:func:`load_train_dataset`). The parsed configurations are not modified:
    the trainer gets a copy of ``training_args`` with the resolved ``model_init_kwargs`` and
    ``generation_kwargs`` (plus the vision tokens to suppress)."""
    from accelerate import PartialState
    from transformers import AutoProcessor
    from trl import get_peft_config, get_quantization_config

    from roma.models import build_tiny_qwen3vl
    from roma.train.trainer import RomaTrainer

    state = PartialState()
    model_path = model_args.model_name_or_path
    if not Path(model_path).exists() and data_args.build_tiny_model:
        with state.main_process_first():
            if not Path(model_path).exists():
                build_tiny_qwen3vl(model_path, seed=training_args.seed)

    if train_dataset is None:
        train_dataset = load_train_dataset(data_args)
    processor = AutoProcessor.from_pretrained(
        model_path, revision=model_args.model_revision, padding_side="left", truncation_side="left"
    )
    args = effective_training_args(training_args, data_args, validated, processor)
    trainer = RomaTrainer(
        model=model_path,
        reward_funcs=validated.rewards,
        args=args,
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    output_dir = Path(args.output_dir)
    if state.is_main_process:
        _write_run_records(output_dir, args, model_args, data_args, state.num_processes, len(train_dataset))
    trainer.train(resume_from_checkpoint=validated.checkpoint)
    trainer.save_model(str(output_dir))  # the model and the processor
    if state.is_main_process:  # the per-step logs, also when no checkpoint was saved
        trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
    # Leave together: a worker that exits while the main process still saves can abort in gloo's teardown.
    state.wait_for_everyone()
    return output_dir


def effective_training_args(
    training_args: RomaConfig, data_args: DataArguments, validated: ValidatedRun, processor: Any
) -> RomaConfig:
    """A shallow copy of ``training_args`` with the resolved ``model_init_kwargs`` and, unless vLLM generates
    or ``suppress_vision_tokens`` is off, the processor's vision tokens added to
    ``generation_kwargs["suppress_tokens"]``; ``training_args`` itself is not modified."""
    from roma.models import vision_token_ids

    args = copy.copy(training_args)
    if data_args.suppress_vision_tokens and not training_args.use_vllm:
        generation_kwargs = dict(training_args.generation_kwargs or {})
        suppressed = set(generation_kwargs.get("suppress_tokens") or []) | set(vision_token_ids(processor))
        generation_kwargs["suppress_tokens"] = sorted(suppressed)
        args.generation_kwargs = generation_kwargs
    args.model_init_kwargs = dict(validated.model_init_kwargs)
    return args


def _write_run_records(
    output_dir: Path, args: RomaConfig, model_args: Any, data_args: DataArguments, world_size: int, examples: int
) -> None:
    """``config.yaml`` (the resolved configuration, a valid recipe) and ``run_info.json`` in ``output_dir``."""
    import yaml

    from roma.provenance import run_info

    output_dir.mkdir(parents=True, exist_ok=True)
    config = resolved_config(args, model_args, data_args)
    (output_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
    info = {
        **run_info(),
        "world_size": world_size,
        "generation_batch_size": args.generation_batch_size,
        "train_examples": examples,
    }
    (output_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    try:
        training_args, model_args, data_args = parse_args(argv)
        validated = validate(training_args, model_args, data_args)
        check_writable_dir(training_args.output_dir, what="output_dir")
        # the data is read before any model is built or loaded: an unusable dataset is one line too
        train_dataset = load_train_dataset(data_args)
    except ValueError as err:
        print(f"roma train: {err}", file=sys.stderr)
        return 2
    execute(training_args, model_args, data_args, validated, train_dataset=train_dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
