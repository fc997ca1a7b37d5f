"""``roma eval``: clean / seen / unseen evaluation of a model on the synthetic suite or benchmarks.

Example::

    roma eval --model runs/roma/final --data synthetic mathvista chartqa=./copies/ChartQA-M4 --levels 3 --out evals/roma

An interrupted run resumes when the same command is run again (finished records are kept in
``OUT/records.jsonl``; a record is reused only for the same model weights and settings and an unchanged
row, and one run at a time holds ``OUT``). With ``--judge openai --judge-url http://host:8000/v1 --judge-model M`` an LLM
over an OpenAI-compatible API extracts and judges the answers instead of the rule judge; its API key,
if any, is read from the environment variable named by ``--judge-api-key-env``.
"""

from __future__ import annotations

import argparse
import os
import sys

from roma.eval.protocol import LEVELS, MAIN_LEVEL, SETTINGS, known_settings, pools


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roma eval",
        description="Evaluate a model on clean images and under seen / unseen degradations (resumable).",
    )
    parser.add_argument("--model", required=True, help="model folder (Qwen3-VL, e.g. the tiny one or a checkpoint)")
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="NAME[=PATH]",
        help="'synthetic'; a benchmark name (mathvista, wemath, chartqa, logicvista, mmstar, visualpuzzles, "
             "realworldqa, mmrl30k) or its hub id, read from the local Hugging Face cache (never downloaded); "
             "or NAME=PATH for a local copy (save_to_disk folder, downloaded repository snapshot or its data/ "
             "folder, parquet / arrow / json / jsonl file) or a hub copy (chartqa=HuggingFaceM4/ChartQA). A "
             "bare PATH works when its name starts with the benchmark's (./MathVista)",
    )
    parser.add_argument(
        "--split", nargs="+", metavar="S",
        help="source split: one for every benchmark, or one per --data entry (default: each benchmark's "
             "evaluation split, e.g. mathvista testmini, mmstar val, chartqa test); never merged with another",
    )
    parser.add_argument("--settings", nargs="+", choices=known_settings(), default=None,
                        help="clean and degradation pools to run (default: clean seen unseen)")
    parser.add_argument("--pool", nargs="+", choices=list(pools()), metavar="POOL",
                        help=f"evaluate clean and these degradation pools ({', '.join(pools())}); "
                             "combined with --settings when both are given")  # fmt: skip
    parser.add_argument("--levels", nargs="+", type=int, choices=LEVELS, default=[MAIN_LEVEL],
                        help="degradation levels (default: 3, the paper's main results)")
    parser.add_argument("--limit", type=int, help="first N examples per dataset (synthetic: its size, default 500)")
    parser.add_argument("--batch-size", type=int, default=8, help="items per generate call (default 8)")
    parser.add_argument("--out", default="eval-out", help="output folder (default ./eval-out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degraded views (default 0)")
    parser.add_argument("--max-new-tokens", type=int,
                        help="generation length limit (default: the model folder's roma train max_completion_length, "
                             "else 2048, the GPU recipes' training length: shorter cuts chains of thought)")
    parser.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto",
                        help="auto: vLLM when installed (pip install -e '.[gpu]') and a GPU is present, else "
                             "transformers (bfloat16 on CUDA, float32 on the CPU)")
    parser.add_argument("--max-model-len", type=int,
                        help="vLLM context length (default: 1024 prompt tokens + the image's tokens under --max-pixels "
                             "+ --max-new-tokens; without --max-pixels, vLLM's default)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM: GPUs per model (default 1)")
    parser.add_argument("--max-pixels", type=int,
                        help="largest image area in pixels (processor and vLLM; default: the model's processor's)")
    parser.add_argument("--min-pixels", type=int, help="smallest image area in pixels (default: the processor's)")
    parser.add_argument("--name", help="model label in the report (default: the folder name)")
    parser.add_argument("--judge", choices=("rule", "openai"), default="rule", help="answer judge (default rule)")
    parser.add_argument("--judge-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    parser.add_argument("--judge-model", help="judge model name, e.g. Qwen/Qwen2.5-72B-Instruct")
    parser.add_argument("--judge-protocol", choices=("judge", "extract"), default="judge",
                        help="openai judge: 'judge' (the LLM extracts and decides; the paper's, used for paper-style "
                             "tables) or 'extract' (the LLM extracts, the rule judge compares; lmms-eval's MathVista)")
    parser.add_argument("--judge-api-key-env", help="environment variable holding the judge's API key")
    parser.add_argument("--judge-retries", type=int, default=5, help="retries of a failed judge request (default 5)")
    parser.add_argument("--image-fit", choices=("reject", "pad"), default="reject",
                        help="an image the processor refuses (aspect ratio > 200): reject = skip and list the row "
                             "(default), pad = pad it with white until it is accepted")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def console_notes(summary: dict, out: str) -> list[str]:
    """What the console must say besides the scores: rows skipped, records regenerated on a resume."""
    counts = summary.get("counts", {})
    notes = []
    regenerated = counts.get("regenerated", {})
    if regenerated.get("changed_row"):
        notes.append(f"{regenerated['changed_row']} record(s) generated again: their rows changed since they were "
                     "written")
    if regenerated.get("other_run"):
        notes.append(f"{regenerated['other_run']} record(s) of an earlier run without this run's identity dropped "
                     "and generated again")
    skipped = sum(counts.get("skipped_examples", {}).values())
    if skipped:
        notes.append(f"{skipped} row(s) skipped (see {out}/report.md and {out}/summary.json)")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pool:
        args.settings = list(dict.fromkeys([*(args.settings or ["clean"]), *args.pool]))
    elif args.settings is None:
        args.settings = list(SETTINGS)
    from roma.eval.judge import JudgeUnavailableError, OpenAIJudge, RuleJudge
    from roma.eval.runner import evaluate

    if args.judge == "openai":
        if not args.judge_url or not args.judge_model:
            parser.error("--judge openai needs --judge-url and --judge-model")
        api_key = None
        if args.judge_api_key_env:
            api_key = os.environ.get(args.judge_api_key_env)
            if not api_key:
                parser.error(f"environment variable {args.judge_api_key_env} is not set")
        judge = OpenAIJudge(args.judge_url, args.judge_model, api_key=api_key, max_retries=args.judge_retries,
                            protocol=args.judge_protocol)
    else:
        if args.judge_url or args.judge_model or args.judge_api_key_env:
            parser.error("--judge-url / --judge-model / --judge-api-key-env need --judge openai")
        judge = RuleJudge()
    try:
        summary = evaluate(
            args.model, args.data, splits=args.split, settings=args.settings, levels=args.levels, limit=args.limit,
            batch_size=args.batch_size, out_dir=args.out, seed=args.seed, max_new_tokens=args.max_new_tokens,
            judge=judge, backend=args.backend, model_name=args.name, progress=not args.no_progress,
            image_fit=args.image_fit,
            engine={"max_model_len": args.max_model_len, "tensor_parallel_size": args.tensor_parallel_size,
                    "min_pixels": args.min_pixels, "max_pixels": args.max_pixels},
        )
    except JudgeUnavailableError as error:
        print(f"roma eval: {error}", file=sys.stderr)
        return 3
    except ValueError as error:
        print(f"roma eval: {error}", file=sys.stderr)
        return 2
    from roma.eval.report import main_level, pct

    for line in console_notes(summary, args.out):
        print(line)
    level = main_level(summary)
    avg = summary["average"]
    lv = avg["levels"].get(level, {})
    print(f"average over {len(summary['benchmarks'])} dataset(s), level {level}: clean {pct(avg.get('clean'))}, "
          f"seen {pct(lv.get('seen'))}, unseen {pct(lv.get('unseen'))}")
    for name, items in summary["skipped"].items():
        if items:
            listed = "; ".join(f"{item['id']} ({item['reason']})" for item in items[:10])
            print(f"{name}: skipped {len(items)} item(s): {listed}{' ...' if len(items) > 10 else ''}")
    print(f"wrote {args.out}/records.jsonl, summary.json, report.md, eval-levels.png, eval-settings.png")
    return 0
