"""Extra cost of a ROMA step over a GRPO step: time and peak memory, as ratios measured in one process.

::

    python benchmarks/step_overhead.py [--trials 5] [--model-dir DIR] [--max-completion-length 48] [--success half]

The tiny Qwen3-VL (built in a temporary folder unless ``--model-dir`` is given) runs on the CPU with one
torch thread. For every ROMA configuration (K = 1…4 views × each ``worst_case``) and every trial, a GRPO
step and a ROMA step run back to back on the same batch (same prompts, same seed, hence the same
completions, since no optimizer step changes the weights), in alternating order; the reported ratio is
the median over trials of ROMA / GRPO of each pair. Two time ratios, because generation dominates a real
step and hides the loss cost:

- **full step**: ``Trainer.training_step`` — rollout (generation + scoring), views, clean pass, pass 2,
  backward; the optimizer update (identical for both) is left out;
- **loss only**: ``compute_loss`` + ``backward`` on an already generated micro-batch (ROMA's pass 2 and
  the extra backward against TRL's clean pass + backward).

Peak memory is the peak of live CPU tensor bytes during one full step (PyTorch's memory profiler):
weights, gradients, activations, generation cache, views; AdamW's moments (2 × the weights, identical for
both) are not in it. On the tiny model the weights are a few MiB, so the peak is activations and the
transient of a forward pass, and the ratio is close to the ratio of activation memory.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import MemoryProfileTimeline

from roma.data.synthetic import generate, tokenizer_corpus
from roma.models import build_tiny_qwen3vl, load_model_and_processor, vision_token_ids
from roma.train import RomaConfig, RomaTrainer

WORST_CASES = ("batch", "sequence", "token", "mean")
VIEW_COUNTS = (1, 2, 3, 4)


def half_reward(completions, **kwargs):
    """Every other completion succeeds: the correctness mask keeps half of the batch for pass 2."""
    return [float(i % 2 == 0) for i in range(len(completions))]


def all_reward(completions, **kwargs):
    """Every completion succeeds: pass 2 runs on the whole batch (ROMA's most expensive case)."""
    return [1.0] * len(completions)


REWARDS = {"half": half_reward, "all": all_reward}


def make_trainer(model_dir: Path, output_dir: Path, options: argparse.Namespace, dataset, **roma) -> RomaTrainer:
    model, processor = load_model_and_processor(model_dir)
    args = RomaConfig(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=options.prompts * options.generations,
        num_generations=options.generations,
        max_completion_length=options.max_completion_length,
        report_to=[],
        save_strategy="no",
        gradient_checkpointing=options.gradient_checkpointing,
        disable_tqdm=True,
        success_reward=REWARDS[options.success].__name__,
        generation_kwargs={"suppress_tokens": vision_token_ids(processor)},
        **roma,
    )
    trainer = RomaTrainer(model=model, reward_funcs=[REWARDS[options.success]], args=args, processing_class=processor,
                          train_dataset=dataset)
    trainer.model.train()
    if args.gradient_checkpointing:  # normally switched on by Trainer.train
        trainer.model.gradient_checkpointing_enable(args.gradient_checkpointing_kwargs)
    trainer.current_gradient_accumulation_steps = 1  # normally set by Trainer's training loop
    return trainer


def full_step(trainer: RomaTrainer, rows: list, seed: int) -> float:
    torch.manual_seed(seed)
    start = time.perf_counter()
    trainer.training_step(trainer.model, rows, None)
    seconds = time.perf_counter() - start
    trainer.model.zero_grad(set_to_none=True)
    return seconds


def loss_only(trainer: RomaTrainer, rows: list, seed: int, repeats: int) -> float:
    torch.manual_seed(seed)
    inputs = trainer._prepare_inputs(rows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.compute_loss(trainer.model, inputs).backward()
        times.append(time.perf_counter() - start)
        trainer.model.zero_grad(set_to_none=True)
    return min(times)


def peak_memory(trainer: RomaTrainer, rows: list, seed: int) -> int:
    """Peak live CPU tensor bytes during a full step."""
    torch.manual_seed(seed)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        trainer.training_step(trainer.model, rows, None)
    trainer.model.zero_grad(set_to_none=True)
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    return max(sum(size) for size in sizes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="tiny Qwen3-VL folder (default: build one)")
    parser.add_argument("--trials", type=int, default=5, help="GRPO/ROMA step pairs per configuration")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per batch")
    parser.add_argument("--generations", type=int, default=4, help="completions per prompt (G)")
    parser.add_argument("--max-completion-length", type=int, default=48)
    parser.add_argument("--loss-repeats", type=int, default=3, help="loss-only timings per pair (min kept)")
    parser.add_argument("--success", choices=sorted(REWARDS), default="all",
                        help="share of successful completions: 'all' (pass 2 on every sequence, the upper bound) "
                        "or 'half' (the correctness mask halves pass 2)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in backward, as the GPU recipes do")
    parser.add_argument("--view-batch-size", type=int, default=None,
                        help="RomaConfig.view_batch_size: (view, sequence) pairs per pass-2 forward "
                        "(default: one view's worth of sequences)")
    parser.add_argument("--per-sequence-encoding", action="store_true",
                        help="RomaConfig.share_view_encoding=False: the vision tower runs once per sequence in pass 2")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) memory profile")
    parser.add_argument("--views", type=int, nargs="+", default=list(VIEW_COUNTS), help="values of K to measure")
    parser.add_argument("--worst-cases", nargs="+", choices=WORST_CASES, default=list(WORST_CASES),
                        help="worst_case modes to measure")
    options = parser.parse_args(argv)
    if any(k < 1 for k in options.views):
        parser.error(f"--views must be >= 1, got {options.views}")
    if options.trials < 1:
        parser.error(f"--trials must be >= 1, got {options.trials}")
    torch.set_num_threads(1)

    scratch = Path(tempfile.mkdtemp(prefix="roma-bench-"))
    model_dir = options.model_dir
    if model_dir is None:
        model_dir = build_tiny_qwen3vl(scratch / "model", seed=0, corpus=tokenizer_corpus(seed=0, n=300))
    dataset = generate(options.prompts * (options.trials + 1), seed=11)
    batches = [
        [dataset[t * options.prompts + p] for p in range(options.prompts) for _ in range(options.generations)]
        for t in range(options.trials + 1)
    ]

    grpo = make_trainer(model_dir, scratch / "grpo", options, dataset, mode="grpo")
    configs = [(k, worst_case) for worst_case in options.worst_cases for k in options.views]
    roma = {
        c: make_trainer(
            model_dir, scratch / f"roma-{c[0]}-{c[1]}", options, dataset, roma_views=c[0], worst_case=c[1],
            view_batch_size=options.view_batch_size, share_view_encoding=not options.per_sequence_encoding,
        )
        for c in configs
    }
    # Warm-up: the first step of a trainer pays one-off costs.
    for trainer in [grpo, *roma.values()]:
        full_step(trainer, batches[-1], seed=0)

    results = {}
    for c, trainer in roma.items():
        full_ratios, loss_ratios, grpo_full, grpo_loss = [], [], [], []
        for t in range(options.trials):
            seed = 1000 + t
            pair = [(grpo, "grpo"), (trainer, "roma")]
            times = {}
            for runner, name in pair if t % 2 == 0 else pair[::-1]:  # alternate which runs first
                times[name] = (
                    full_step(runner, batches[t], seed),
                    loss_only(runner, batches[t], seed, options.loss_repeats),
                )
            full_ratios.append(times["roma"][0] / times["grpo"][0])
            loss_ratios.append(times["roma"][1] / times["grpo"][1])
            grpo_full.append(times["grpo"][0])
            grpo_loss.append(times["grpo"][1])
        results[c] = {
            "full": statistics.median(full_ratios),
            "loss": statistics.median(loss_ratios),
            "grpo_full": statistics.median(grpo_full),
            "grpo_loss": statistics.median(grpo_loss),
        }
        print(f"K={c[0]} worst_case={c[1]}: full x{results[c]['full']:.2f}, loss x{results[c]['loss']:.2f}",
              file=sys.stderr, flush=True)

    if not options.no_memory:
        grpo_peak = peak_memory(grpo, batches[0], seed=1000)
        for c, trainer in roma.items():
            results[c]["memory"] = peak_memory(trainer, batches[0], seed=1000) / grpo_peak

    n_params = sum(p.numel() for p in grpo.model.parameters())
    print(f"\nTiny Qwen3-VL ({n_params / 1e6:.2f} M parameters), CPU, 1 thread; batch {options.prompts} prompts x "
          f"{options.generations} completions, max_completion_length {options.max_completion_length}, "
          f"success {options.success}, gradient checkpointing {'on' if options.gradient_checkpointing else 'off'}; "
          f"median of {options.trials} paired steps. GRPO: full step {statistics.median(r['grpo_full'] for r in results.values()):.3f} s, "
          f"loss+backward {statistics.median(r['grpo_loss'] for r in results.values()):.3f} s"
          + (f", peak {grpo_peak / 2**20:.1f} MiB" if not options.no_memory else "")
          + (f"; view_batch_size {options.view_batch_size}" if options.view_batch_size else "")
          + ("; vision tower per sequence in pass 2." if options.per_sequence_encoding else "."))
    header = "| worst_case | K | full step time | loss+backward time |"
    rule = "|---|---|---|---|"
    if not options.no_memory:
        header += " peak memory |"
        rule += "---|"
    print(header)
    print(rule)
    for (k, worst_case), r in results.items():
        row = f"| {worst_case} | {k} | {r['full']:.2f}x | {r['loss']:.2f}x |"
        if not options.no_memory:
            row += f" {r['memory']:.2f}x |"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
