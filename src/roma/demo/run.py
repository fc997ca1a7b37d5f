"""``roma demo``: the whole ROMA experiment at CPU scale, in one command.

::

    roma demo                          # the full demo (about 15 minutes on 2 CPU cores), into runs/demo
    roma demo --quick                  # a smoke run of every stage (under 2 minutes), into runs/demo-quick
    roma demo --seeds 3 --variants base grpo roma roma-mean roma-no-aux roma-no-mask roma-no-inv
    roma demo --config configs/demo/sweep.yaml     # any DemoConfig field from a YAML file

Stages, each cached (see below):

1. ``model``  — build the tiny offline Qwen3-VL with random weights (:func:`roma.models.build_tiny_qwen3vl`);
2. ``sft``    — supervised warm-up on the synthetic suite (:func:`roma.sft.run_sft`): the *base* policy;
3. ``eval/base`` — evaluate the base under the clean / seen / unseen protocol (:func:`roma.eval.evaluate`)
   on the synthetic **test** split (``eval_split``) at Levels 1–3;
4. ``train/<variant>/seed<s>`` then ``eval/<variant>/seed<s>`` — RL from the same base, with the same
   data, budget and seeds for every variant (:func:`roma.train.cli.run`): GRPO, naive augmentation,
   ROMA and its ablations (:data:`VARIANTS`);
5. ``report`` — ``report.md`` (the paper-style table at Level 3: clean / seen / unseen, gaps, deltas
   against GRPO, mean ± std over seeds; per-level and per-type tables; training summaries; stage
   timings), ``demo-summary.json`` and two plots: ``accuracy-vs-level.png`` and ``training-curves.png``
   (reward, success rate and invariance penalty read from each run's ``trainer_state.json``).

**Caching.** Each stage writes ``<out>/stages/<stage>.json`` with its configuration, a fingerprint of it,
its status and its wall time. A rerun skips a stage whose marker says ``done`` with the same fingerprint.
A stage's configuration includes the run id of every stage it reads from, so a changed SFT recipe (say)
reruns the SFT, which reruns every training and evaluation after it. A stage left ``running`` by an
interrupted demo starts again from scratch, except an evaluation, which resumes from its
``records.jsonl``. ``--force`` reruns every stage.

**Settings.** :class:`DemoConfig` holds every setting; its defaults are the full demo. ``--quick``
applies :data:`QUICK` (tiny budgets, Level 3 only), then ``--config FILE`` overrides fields (the nested
``sft`` / ``train`` / ``roma`` mappings are merged key by key), then the command-line flags. Nothing here
is tuned on the test split: the ``eval_split: validation`` setting exists for tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from roma.demo.config import (
    EVAL_SPLITS,
    VARIANTS,
    DemoConfig,
    Outputs,
    Variant,
    build_config,
    parse_variant,
    sft_settings,
    train_recipe,
)
from roma.demo.report import main_table, write_report
from roma.demo.stages import (
    EvalData,
    StageCache,
    StageResult,
    build_model,
    eval_settings,
    run_eval,
    run_sft_stage,
    run_train,
)
from roma.preflight import check_writable_dir


def count_stages(config: DemoConfig) -> int:
    variants = [parse_variant(v) for v in config.variants]
    trained = sum(v.trained for v in variants)
    return 2 + (len(variants) - trained) + 2 * trained * config.seeds + 1


def run_demo(config: DemoConfig, *, force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every stage of the demo; return the content of ``demo-summary.json``."""
    import yaml

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = Path(config.out)
    root.mkdir(parents=True, exist_ok=True)
    files = Outputs.of(config)
    (root / files.config).write_text(yaml.safe_dump(asdict(config), sort_keys=False), encoding="utf-8")
    cache = StageCache(root, force=force, total=count_stages(config), log=log)
    data = EvalData(config)
    wall = time.perf_counter()

    model_dir = root / "model"
    model = cache.run("model", {"seed": config.base_seed, "model_spec": config.model_spec},
                      lambda: build_model(config, model_dir), out_dir=model_dir, outputs=[model_dir / "config.json"])
    sft = sft_settings(config, root)
    base_model = root / "sft" / "model"
    sft_stage = cache.run("sft", {"sft": sft, "model": model.run_id}, lambda: run_sft_stage(sft), out_dir=root / "sft",
                          outputs=[base_model / "model.safetensors"])

    evaluation = eval_settings(config)
    evals: dict[str, dict[int | None, Path]] = {}
    trains: dict[str, dict[int, Path]] = {}
    upstream: dict[str, str] = {}
    for variant in (parse_variant(v) for v in config.variants):
        if not variant.trained:
            out_dir = root / files.eval_dir / variant.slug
            stage = cache.run(
                f"{files.eval_dir}/{variant.slug}", {"eval": evaluation, "model": sft_stage.run_id, "label": variant.label},
                lambda out_dir=out_dir, variant=variant: run_eval(config, data, base_model, out_dir, variant.label),
                out_dir=out_dir, outputs=[out_dir / "summary.json"], resumable=True,
            )
            evals[variant.label] = {None: out_dir}
            upstream[stage.name] = stage.run_id
            continue
        for seed in range(config.seeds):
            train_dir, eval_dir, stages = _rl_stages(cache, config, data, variant, seed, base_model, sft_stage.run_id)
            evals.setdefault(variant.label, {})[seed] = eval_dir
            trains.setdefault(variant.label, {})[seed] = train_dir
            upstream.update({stage.name: stage.run_id for stage in stages})

    report = cache.run(
        files.report.removesuffix(".md"), {"upstream": upstream, "variants": config.variants, "eval": evaluation},
        lambda: write_report(config, root, evals, trains, cache.results),
        outputs=[root / files.report, root / files.summary],
    )
    summary = report.value if report.ran else json.loads((root / files.summary).read_text(encoding="utf-8"))
    log(f"\nDemo finished in {time.perf_counter() - wall:.0f} s (stages: "
        f"{sum(r.ran for r in cache.results)} ran, {sum(not r.ran for r in cache.results)} cached).\n")
    _log_summary(summary, root / files.report, log)
    return summary


def _rl_stages(
    cache: StageCache, config: DemoConfig, data: EvalData, variant: Variant, seed: int, base_model: Path, base_run: str
) -> tuple[Path, Path, list[StageResult]]:
    """The ``train/<variant>/seed<s>`` and ``eval/<variant>/seed<s>`` stages of one RL run from the base
    (run id ``base_run``); returns the training and evaluation folders and the two stage results."""
    root, files, evaluation = Path(config.out), Outputs.of(config), eval_settings(config)
    train_dir = root / "train" / variant.slug / f"seed{seed}"
    recipe = train_recipe(config, variant, seed, base_model=base_model, out_dir=train_dir)
    trained = cache.run(
        f"train/{variant.slug}/seed{seed}", {"recipe": recipe, "base": base_run},
        lambda: run_train(recipe, train_dir, config.num_threads),
        out_dir=train_dir, outputs=[train_dir / "model.safetensors"],
    )
    eval_dir = root / files.eval_dir / variant.slug / f"seed{seed}"
    evaluated = cache.run(
        f"{files.eval_dir}/{variant.slug}/seed{seed}",
        {"eval": evaluation, "model": trained.run_id, "label": variant.label},
        lambda: run_eval(config, data, train_dir, eval_dir, variant.label),
        out_dir=eval_dir, outputs=[eval_dir / "summary.json"], resumable=True,
    )
    return train_dir, eval_dir, [trained, evaluated]


def _log_summary(summary: dict[str, Any], report: Path, log: Callable[[str], None]) -> None:
    """The main table, the ROMA − GRPO check and where the report is."""
    log("\n".join(main_table(summary["table"], summary["main_level"])))
    check = summary.get("criterion")
    if check is not None:
        log(f"\nROMA − GRPO at Level {summary['main_level']}: seen {check['delta_seen']:+.1f}, unseen "
            f"{check['delta_unseen']:+.1f}, clean {check['delta_clean']:+.1f} points (target ≥ +2 / ≥ +2 / ≥ −1: "
            f"{'met' if check['met'] else 'not met'}).")
    log(f"\nReport: {report}")


# ------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roma demo",
        description="The whole ROMA experiment at CPU scale: tiny model → SFT → base / GRPO / naive augmentation / "
                    "ROMA → clean / seen / unseen evaluation → report. Stages are cached in the output folder.",
        epilog="Variants: " + "; ".join(f"{k}: {v.help}" for k, v in VARIANTS.items()),
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets everywhere, Level 3 only: a smoke run of every stage (< 2 minutes)")
    parser.add_argument("--config", metavar="FILE", help="YAML file of DemoConfig fields (e.g. configs/demo/matrix.yaml)")
    parser.add_argument("--seeds", type=int, help="RL seeds per variant (default 1)")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT",
                        help="variants, each NAME or NAME:key=value[,key=value] (default: base grpo naive-aug roma)")
    parser.add_argument("--out", help="output folder (default runs/demo; --quick: runs/demo-quick)")
    parser.add_argument("--eval-split", choices=EVAL_SPLITS, help="synthetic split to compare on (default test)")
    parser.add_argument("--eval-examples", type=int, help="examples of the evaluation split (default 200)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    parser.add_argument("--force", action="store_true", help="rerun every stage, cached or not")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {"seeds": args.seeds, "variants": args.variants, "out": args.out, "eval_split": args.eval_split,
             "eval_examples": args.eval_examples, "num_threads": args.threads}
    try:
        config = build_config(quick=args.quick, config_file=args.config,
                              overrides={k: v for k, v in flags.items() if v is not None})
        check_writable_dir(config.out)
    except (ValueError, TypeError, OSError) as error:
        print(f"roma demo: {error}", file=sys.stderr)
        return 2
    run_demo(config, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
