"""``roma sft``: supervised warm-up of a (random) tiny Qwen3-VL on the synthetic suite's worked solutions.

RL from a random policy never sees a reward, so the GRPO / ROMA runs start from a base policy with
moderate accuracy. This command makes one::

    roma sft --config configs/tiny-sft.yaml [--key value ...]

1. Builds the tiny model with :func:`roma.models.build_tiny_qwen3vl` if ``model_dir`` does not exist.
2. Trains it with TRL's ``SFTTrainer`` on ``load_split("train")``: conversational prompt–completion rows
   (``prompt`` = the user turn with the image, ``completion`` = the assistant turn holding
   ``<think>…</think>\\boxed{answer}``), so TRL's vision collator processes images on the fly and the
   loss covers the completion tokens only (``completion_only_loss``).
3. Every ``eval_every_steps`` a callback measures greedy accuracy on the validation split and stops
   training once it reaches ``target_accuracy`` (or at ``max_steps`` / ``max_minutes``): a tiny model
   trained from random weights sits at chance and then jumps, so stopping on time alone would give a
   base that is either useless or saturated.
4. Saves the model and processor to ``<output_dir>/model``, measures the test split (overall and per
   family) and writes ``config.yaml`` (resolved), ``run_info.json`` (package versions, git commit) and
   ``metrics.json`` (validation curve, losses, test accuracy, timings) to ``output_dir``.

:func:`greedy_accuracy` measures accuracy with the evaluation package's generator and judge
(:mod:`roma.eval.generation`, :mod:`roma.eval.judge`) and :func:`degraded_accuracy` with its degraded
views (:func:`roma.eval.protocol.make_view`), so the warm-up's numbers are ``roma eval``'s; the evaluation
package's :func:`roma.eval.evaluate` runs the full clean / seen / unseen protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import TrainerCallback

from roma.data.synthetic import FAMILIES, load_split
from roma.preflight import check_field_types, check_writable_dir, load_yaml_mapping
from roma.provenance import run_info


@dataclass
class SFTRunConfig:
    """Everything an SFT warm-up run depends on; YAML (``--config``) and CLI flags override these defaults."""

    model_dir: str = field(
        default="runs/tiny-model",
        metadata={"help": "Folder of the model to train. If it does not exist, a random tiny Qwen3-VL is built "
                  "there first (roma.models.build_tiny_qwen3vl with `seed`)."},
    )
    output_dir: str = field(
        default="runs/sft",
        metadata={"help": "Where the base policy (<output_dir>/model) and the run records are written."},
    )
    seed: int = field(default=0, metadata={"help": "Seeds the model build, the data order and the trainer."})
    families: list[str] = field(
        default_factory=lambda: list(FAMILIES),
        metadata={"help": f"Synthetic families to train and evaluate on, a subset of {list(FAMILIES)}."},
    )
    image_size: int = field(
        default=128,
        metadata={"help": "Image side in pixels, a multiple of 32 (128 gives 16 vision tokens)."},
    )
    train_examples: int = field(
        default=16_000,
        metadata={"help": "Size of the training split; the trainer cycles through it (more examples than "
                  "steps × batch means no example is seen twice)."},
    )
    validation_examples: int = field(
        default=250, metadata={"help": "Validation examples measured every eval_every_steps (stopping rule)."}
    )
    test_examples: int = field(
        default=500,
        metadata={"help": "Held-out test examples measured once at the end (0 skips it); ~±2 points at 500."},
    )
    test_degradation_level: int = field(
        default=3,
        metadata={"help": "Also measure the test split under each of the 9 degradation types at this level "
                  "(the views of roma.eval.protocol, seeded by `seed`); 0 skips it."},
    )
    batch_size: int = field(default=32, metadata={"help": "Training sequences per optimiser step."})
    learning_rate: float = field(
        default=2e-3, metadata={"help": "Peak AdamW learning rate (a tiny model from scratch wants a large one)."}
    )
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "transformers scheduler name, decayed over max_steps."}
    )
    warmup_steps: int = field(default=50, metadata={"help": "Linear learning-rate warm-up steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_steps: int = field(
        default=800, metadata={"help": "Hard limit on optimiser steps; the cosine schedule decays over them."}
    )
    max_minutes: float = field(
        default=5.0,
        metadata={"help": "Wall-clock limit of the training loop (validation included); checked after each step."},
    )
    eval_every_steps: int = field(
        default=50, metadata={"help": "Measure validation accuracy every this many steps."}
    )
    target_accuracy: float = field(
        default=0.55,
        metadata={"help": "Stop as soon as validation accuracy reaches this: the base must be moderate, "
                  "neither at chance (no RL signal) nor saturated (nothing left to learn or to lose)."},
    )
    eval_batch_size: int = field(default=50, metadata={"help": "Prompts per batched greedy generate call."})
    max_new_tokens: int = field(
        default=32, metadata={"help": "Generation budget; the worked solutions are 15–25 tokens long."}
    )
    num_threads: int = field(
        default=1,
        metadata={"help": "torch CPU threads. 1 by default: with other processes on a 2-core machine, 2 threads "
                  "ran ~10x slower (OpenMP threads waiting on each other), 1 thread was steady."},
    )
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every this many steps."})

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed}")
        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown:
            raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {self.families}")
        if self.image_size <= 0 or self.image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError(f"target_accuracy must lie in (0, 1], got {self.target_accuracy}")
        positive = {
            name: getattr(self, name)
            for name in ("train_examples", "validation_examples", "batch_size", "max_steps", "max_minutes",
                         "eval_every_steps", "eval_batch_size", "max_new_tokens", "num_threads", "logging_steps")
        }
        bad = {k: v for k, v in positive.items() if v <= 0}
        if bad:
            raise ValueError(f"these settings must be > 0: {bad}")
        if self.test_degradation_level not in (0, 1, 2, 3):
            raise ValueError(f"test_degradation_level must be 0 (skip), 1, 2 or 3, got {self.test_degradation_level}")
        if self.test_examples < 0:
            raise ValueError(f"test_examples must be >= 0, got {self.test_examples}")


# ------------------------------------------------------------------------------------------ evaluation


class GreedyEval(NamedTuple):
    """Result of :func:`greedy_accuracy`: mean accuracy, per-example correctness, decoded completions."""

    accuracy: float
    correct: list[bool]
    completions: list[str]


@torch.no_grad()
def greedy_accuracy(
    model: Any, processor: Any, dataset: Any, *, batch_size: int = 50, max_new_tokens: int = 32,
    images: Sequence[Any] | None = None,
) -> GreedyEval:
    """Greedy accuracy of ``model`` on a dataset in roma's schema, through the evaluation package's
    generator (:class:`roma.eval.generation.HFGenerator`: left padding, vision tokens suppressed) and
    judge (:class:`roma.eval.judge.RuleJudge`: ``roma.rewards.extract_answer`` scored by
    ``roma.rewards.is_correct`` with the row's ``answer_type``, ``choices`` and ``tolerance``).

    ``images`` replaces the dataset's images (e.g. degraded views, same order); prompts go to the model
    ``batch_size`` at a time, in dataset order, with the model in eval mode (its mode is restored after).
    """
    from roma.eval.generation import HFGenerator
    from roma.eval.judge import RuleJudge

    images = list(dataset["image"]) if images is None else list(images)
    prompts = dataset["prompt"]
    if len(prompts) != len(images):
        raise ValueError(f"got {len(prompts)} prompts but {len(images)} images; one image per prompt")
    generator = HFGenerator(model, processor, max_new_tokens=max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        completions: list[str] = []
        for start in range(0, len(prompts), batch_size):
            batch = generator(prompts[start : start + batch_size], images[start : start + batch_size])
            completions += [completion.text for completion in batch]
    finally:
        model.train(was_training)
    judge = RuleJudge()
    rows = dataset.select_columns(["answer", "answer_type", "choices", "tolerance"])
    correct = [judge(text, row).correct for text, row in zip(completions, rows)]
    return GreedyEval(sum(correct) / max(len(correct), 1), correct, completions)


def accuracy_by_task(tasks: Sequence[str], correct: Sequence[bool]) -> dict[str, float]:
    """Mean of ``correct`` per task name, tasks in order of first appearance."""
    if len(tasks) != len(correct):
        raise ValueError(f"got {len(tasks)} tasks but {len(correct)} correctness flags")
    groups: dict[str, list[bool]] = defaultdict(list)
    for task, ok in zip(tasks, correct):
        groups[task].append(bool(ok))
    return {task: sum(oks) / len(oks) for task, oks in groups.items()}


def degraded_accuracy(
    model: Any, processor: Any, dataset: Any, *, level: int, seed: int, batch_size: int, max_new_tokens: int
) -> dict[str, dict[str, Any]]:
    """Greedy accuracy under each seen and unseen degradation type at ``level``, per type and per family.

    The degraded views are those of the evaluation protocol (``roma.eval.protocol.make_view``: seeded by
    ``(seed, example id, type, level)``), so these numbers match ``roma eval`` on the same examples.
    """
    from roma.eval.protocol import conditions, make_view

    results: dict[str, dict[str, Any]] = {}
    for condition in conditions(("seen", "unseen"), levels=(level,)):
        views = [
            make_view(image, condition, seed=seed, example_id=example_id)[0]
            for image, example_id in zip(dataset["image"], dataset["id"])
        ]
        result = greedy_accuracy(
            model, processor, dataset, batch_size=batch_size, max_new_tokens=max_new_tokens, images=views
        )
        results[condition.type] = {
            "pool": condition.setting, "level": level, "accuracy": result.accuracy,
            "accuracy_by_family": accuracy_by_task(dataset["task"], result.correct),
        }
        print(f"[roma sft] test accuracy under {condition.type} L{level}: {result.accuracy:.3f}", flush=True)
    return results


# --------------------------------------------------------------------------------------------- training


class AccuracyStop(TrainerCallback):
    """Measure validation accuracy every ``every_steps`` steps; stop at ``target`` accuracy or ``max_seconds``.

    ``evaluate(model) -> (accuracy, accuracy_by_family)``. The clock starts at ``on_train_begin`` and
    includes the validation passes; ``history`` keeps one record per measurement and ``reason`` says why
    training stopped (``target``, ``time`` or ``max_steps``).
    """

    def __init__(self, evaluate, *, every_steps: int, target: float, max_seconds: float):
        self.evaluate = evaluate
        self.every_steps = every_steps
        self.target = target
        self.max_seconds = max_seconds
        self.history: list[dict[str, Any]] = []
        self.reason = "max_steps"
        self.eval_seconds = 0.0
        self._start = 0.0
        self._cpu_start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.monotonic()
        self._cpu_start = time.process_time()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        elapsed = time.monotonic() - self._start
        out_of_time = elapsed >= self.max_seconds
        if state.global_step % self.every_steps == 0 or out_of_time or state.global_step >= state.max_steps:
            tic = time.monotonic()
            accuracy, by_family = self.evaluate(model)
            self.eval_seconds += time.monotonic() - tic
            self.history.append({
                "step": state.global_step, "seconds": round(elapsed, 2),
                "cpu_seconds": round(time.process_time() - self._cpu_start, 2), "val_accuracy": accuracy,
                "val_accuracy_by_family": by_family,
            })
            families = " ".join(f"{k} {v:.2f}" for k, v in by_family.items())
            print(f"[roma sft] step {state.global_step} ({elapsed:.0f} s): validation accuracy {accuracy:.3f} "
                  f"({families})", flush=True)
            if accuracy >= self.target:
                self.reason = "target"
                control.should_training_stop = True
                return control
        if out_of_time:
            self.reason = "time"
            control.should_training_stop = True
        return control


def use_linear_patch_embedding(model: Any) -> None:
    """Run the vision patch embedding of ``model`` as a matrix product instead of a ``Conv3d``.

    Qwen3-VL embeds each flattened ``3×2×16×16`` patch with a ``Conv3d`` whose kernel equals its stride,
    i.e. a linear map; on CPU the oneDNN 3-D convolution and its backward took ~30 % of an SFT step of
    the tiny model, the same product through ``F.linear`` ~5× less. Only this instance's ``forward``
    changes: the weights, their names and the saved checkpoint stay those of the stock module.
    """
    embed = model.model.visual.patch_embed
    proj = embed.proj

    def forward(hidden_states: torch.Tensor) -> torch.Tensor:  # (n_patches, C·T·P·P) -> (n_patches, D)
        weight = proj.weight.reshape(proj.weight.shape[0], -1)  # (D, C·T·P·P), the conv kernel's own layout
        return torch.nn.functional.linear(hidden_states.to(weight.dtype), weight, proj.bias)

    embed.forward = forward


def to_sft_rows(dataset: Any) -> Any:
    """Keep ``image`` and ``prompt`` and add the conversational ``completion``: the assistant's worked solution.
    The image goes through :func:`roma.data.images.prepare_image` (upright, RGB), as in RL and evaluation."""
    from roma.data.images import prepare_image

    def completion(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "image": prepare_image(row["image"]),
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": row["solution"]}]}],
        }

    keep = {"image", "prompt", "solution"}
    rows = dataset.remove_columns([c for c in dataset.column_names if c not in keep])
    return rows.map(completion, remove_columns=["solution"])


def run_sft(config: SFTRunConfig) -> Path:
    """Run the warm-up described by ``config``; return the folder of the base policy (``<output_dir>/model``)."""
    import yaml
    from trl import SFTTrainer

    from roma.models import build_tiny_qwen3vl, load_model_and_processor

    torch.set_num_threads(config.num_threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    (out / "run_info.json").write_text(json.dumps(run_info(), indent=2))
    timings: dict[str, float] = {}

    tic = time.monotonic()
    if not Path(config.model_dir).exists():
        build_tiny_qwen3vl(config.model_dir, seed=config.seed)
    model, processor = load_model_and_processor(config.model_dir)
    use_linear_patch_embedding(model)
    timings["build_and_load_model_s"] = time.monotonic() - tic

    tic = time.monotonic()
    split = {"families": config.families, "image_size": config.image_size}
    train = to_sft_rows(load_split("train", config.train_examples, **split))
    validation = load_split("validation", config.validation_examples, **split)
    timings["make_data_s"] = time.monotonic() - tic

    def validation_accuracy(m: Any) -> tuple[float, dict[str, float]]:
        result = greedy_accuracy(
            m, processor, validation, batch_size=config.eval_batch_size, max_new_tokens=config.max_new_tokens
        )
        return result.accuracy, accuracy_by_task(validation["task"], result.correct)

    stopper = AccuracyStop(
        validation_accuracy, every_steps=config.eval_every_steps, target=config.target_accuracy,
        max_seconds=60.0 * config.max_minutes,
    )
    args = _sft_config(config, out)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=train, processing_class=processor, callbacks=[stopper]
    )
    tic = time.monotonic()
    trainer.train()
    timings["train_loop_s"] = time.monotonic() - tic
    timings["validation_s"] = stopper.eval_seconds
    steps = trainer.state.global_step
    train_only = max(timings["train_loop_s"] - stopper.eval_seconds, 1e-9)

    model_dir = _save_base(trainer, processor, out)

    metrics: dict[str, Any] = {
        "stop_reason": stopper.reason,
        "steps": steps,
        "examples_seen": steps * config.batch_size,
        "steps_per_s": steps / train_only,
        "validation": stopper.history,
        "train_loss": [
            {"step": r["step"], "loss": r["loss"]} for r in trainer.state.log_history if "loss" in r
        ],
    }
    if config.test_examples:
        metrics.update(_test_metrics(config, model, processor, timings))
    metrics["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _print_result(metrics, model_dir)
    return model_dir


def _print_result(metrics: dict[str, Any], model_dir: Path) -> None:
    """Why and when the warm-up stopped, where the base policy is, and its test accuracy if measured."""
    print(f"[roma sft] stopped by {metrics['stop_reason']} after {metrics['steps']} steps "
          f"({metrics['steps_per_s']:.2f} steps/s); base policy in {model_dir}", flush=True)
    if "test_accuracy" in metrics:
        print(f"[roma sft] test accuracy {metrics['test_accuracy']:.3f} "
              f"{json.dumps({k: round(v, 3) for k, v in metrics['test_accuracy_by_family'].items()})}", flush=True)


def _save_base(trainer: Any, processor: Any, out: Path) -> Path:
    """Save the trained model and its processor to ``<out>/model``; drop the empty checkpoint folder."""
    model_dir = out / "model"
    trainer.save_model(str(model_dir))
    processor.save_pretrained(str(model_dir))
    if not any(Path(trainer.args.output_dir).iterdir()):  # nothing checkpointed (save_strategy="no")
        Path(trainer.args.output_dir).rmdir()
    return model_dir


def _sft_config(config: SFTRunConfig, out: Path) -> Any:
    """TRL's ``SFTConfig`` of the warm-up: CPU, no checkpoints, loss on the completion tokens only."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_steps=config.max_steps,
        logging_steps=config.logging_steps,
        seed=config.seed,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,  # TRL turns it on by default; on a 1.5 M model it only costs time
        completion_only_loss=True,
        max_length=None,  # truncation would cut image tokens or the answer
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def _test_metrics(config: SFTRunConfig, model: Any, processor: Any, timings: dict[str, float]) -> dict[str, Any]:
    """Accuracy on the test split, overall and per family, and with ``test_degradation_level`` under each
    degradation type; the seconds spent go to ``timings``."""
    metrics: dict[str, Any] = {}
    split = {"families": config.families, "image_size": config.image_size}
    tic = time.monotonic()
    test = load_split("test", config.test_examples, **split)
    result = greedy_accuracy(
        model, processor, test, batch_size=config.eval_batch_size, max_new_tokens=config.max_new_tokens
    )
    timings["test_s"] = time.monotonic() - tic
    metrics["test_accuracy"] = result.accuracy
    metrics["test_accuracy_by_family"] = accuracy_by_task(test["task"], result.correct)
    metrics["test_examples"] = len(result.correct)
    if config.test_degradation_level:
        tic = time.monotonic()
        metrics["test_degraded"] = degraded_accuracy(
            model, processor, test, level=config.test_degradation_level, seed=config.seed,
            batch_size=config.eval_batch_size, max_new_tokens=config.max_new_tokens,
        )
        timings["test_degraded_s"] = time.monotonic() - tic
    return metrics


# ----------------------------------------------------------------------------------------------- CLI


def parse_config(argv: Sequence[str] | None = None) -> SFTRunConfig:
    """``--config file.yaml`` then ``--key value`` flags over :class:`SFTRunConfig`; unknown or repeated keys and
    values of the wrong type raise ``ValueError``."""
    from trl import TrlParser

    parser = TrlParser(
        dataclass_types=[SFTRunConfig], prog="roma sft", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # --max_step must be an error, not --max_steps
    )
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args and args.index("--config") + 1 < len(args):
        load_yaml_mapping(args[args.index("--config") + 1])  # a repeated key or invalid YAML: ValueError
    (config,) = parser.parse_args_and_config(args=args)
    return config


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        check_writable_dir(config.output_dir, what="output_dir")
    except ValueError as err:
        print(f"roma sft: {err}", file=sys.stderr)
        return 2
    run_sft(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
