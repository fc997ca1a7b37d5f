"""``roma demo``: configuration, variants, the stage cache, aggregation, and the quick demo end to end."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml

from roma.demo import run as demo
from roma.demo.config import VARIANTS, DemoConfig, build_config, parse_variant, train_recipe, variant_recipe
from roma.demo.report import aggregate_runs, criterion, main_table, mean_std, trainer_log_history
from roma.demo.run import count_stages
from roma.demo.stages import StageCache

# ----------------------------------------------------------------------------------------- variants


def test_parse_variant_with_overrides():
    variant = parse_variant("roma:lambda_kl=0.2,roma_views=2,correctness_mask=false")
    assert variant.name == "roma"
    assert variant.overrides == {"lambda_kl": 0.2, "roma_views": 2, "correctness_mask": False}
    assert isinstance(variant.overrides["roma_views"], int)
    assert variant.label == "roma:lambda_kl=0.2,roma_views=2,correctness_mask=false"
    assert variant.slug == "roma__lambda_kl_0.2_roma_views_2_correctness_mask_false"
    assert parse_variant("naive-aug").slug == "naive-aug"
    # YAML 1.1 reads 3e-5 as a string; a learning rate must arrive as a float
    assert parse_variant("grpo:learning_rate=3e-5,lr_scheduler_type=cosine").overrides == {
        "learning_rate": 3e-5, "lr_scheduler_type": "cosine"}
    assert not parse_variant("base").trained and parse_variant("grpo").trained


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ppo", "unknown variant 'ppo' in 'ppo'; choose one of ['base', 'grpo', 'naive-aug', 'roma'"),
        ("base:learning_rate=1", "variant 'base' has no RL recipe to override"),
        ("roma:lambda_kl", "variant overrides are key=value pairs separated by commas, got 'lambda_kl'"),
        ("roma:seed=3", "variant 'roma:seed=3' may not set 'seed'"),
        ("grpo:mode=roma", "variant 'grpo:mode=roma' may not set 'mode'"),
    ],
)
def test_parse_variant_rejects(spec, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_variant(spec)


def test_variant_recipes_share_the_common_block():
    config = DemoConfig()
    grpo = variant_recipe(config, parse_variant("grpo"))
    roma = variant_recipe(config, parse_variant("roma"))
    no_aux = variant_recipe(config, parse_variant("roma-no-aux"))
    mean = variant_recipe(config, parse_variant("roma-mean:lambda_kl=0.5"))
    assert grpo["mode"] == "grpo" and "lambda_kl" not in grpo and "roma_views" not in grpo
    assert variant_recipe(config, parse_variant("naive-aug"))["mode"] == "naive_aug"
    assert (roma["mode"], roma["lambda_kl"], roma["lambda_aux"], roma["roma_views"]) == ("roma", 2.0, 0.1, 3)
    assert (no_aux["lambda_kl"], no_aux["lambda_aux"]) == (2.0, 0.0)
    assert (mean["worst_case"], mean["lambda_kl"], mean["lambda_aux"]) == ("mean", 0.5, 0.1)
    budget = ("max_steps", "per_device_train_batch_size", "num_generations", "learning_rate", "dataset_seed")
    for recipe in (roma, no_aux, mean):
        assert {k: recipe[k] for k in budget} == {k: grpo[k] for k in budget}
    with pytest.raises(ValueError, match="variant 'base' is not trained"):
        variant_recipe(config, parse_variant("base"))


def test_train_recipe_sets_paths_and_seeds_and_saves_no_checkpoint(tmp_path):
    config = DemoConfig()
    recipe = train_recipe(config, parse_variant("roma"), 2, base_model=tmp_path / "sft" / "model",
                               out_dir=tmp_path / "train")
    assert recipe["model_name_or_path"] == str(tmp_path / "sft" / "model")
    assert (recipe["seed"], recipe["view_seed"]) == (2, 2)
    assert recipe["save_strategy"] == "no" and "save_steps" not in recipe
    assert (recipe["max_steps"], recipe["learning_rate"], recipe["lambda_kl"]) == (60, 3e-5, 2.0)
    assert recipe["synthetic_families"] == config.families


# -------------------------------------------------------------------------------------------- config


def test_config_precedence_defaults_quick_file_flags(tmp_path):
    assert build_config().out == "runs/demo" and build_config().eval_levels == [1, 2, 3]
    quick = build_config(quick=True)
    assert (quick.out, quick.eval_levels, quick.train["max_steps"]) == ("runs/demo-quick", [3], 2)
    assert quick.train["learning_rate"] == 3e-5  # nested blocks merge key by key: the default survives
    file = tmp_path / "matrix.yaml"
    file.write_text(yaml.safe_dump({"seeds": 3, "train": {"learning_rate": 5e-4}, "roma": {"lambda_kl": 0.2}}))
    config = build_config(quick=True, config_file=file, overrides={"seeds": 2, "out": str(tmp_path / "x")})
    assert config.seeds == 2  # the flag wins over the file
    assert config.out == str(tmp_path / "x")
    assert (config.train["learning_rate"], config.train["max_steps"]) == (5e-4, 2)
    assert (config.roma["lambda_kl"], config.roma["lambda_aux"]) == (0.2, 0.1)


def test_config_errors(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("seed: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown demo setting\(s\) \['seed'\]; accepted: \['out', "):
        build_config(config_file=file)
    with pytest.raises(ValueError, match=r"eval_split must be one of \['test', 'validation'\], got 'train'"):
        DemoConfig(eval_split="train")
    with pytest.raises(ValueError, match=r"train may not set \['output_dir', 'seed'\]"):
        DemoConfig(train={"seed": 1, "output_dir": "x"})
    with pytest.raises(ValueError, match=r"variants must be distinct, got \['roma', 'roma'\]"):
        DemoConfig(variants=["roma", "roma"])
    with pytest.raises(ValueError, match=r"eval_levels must be a non-empty subset of \[1, 2, 3\], got \[4\]"):
        DemoConfig(eval_levels=[4])
    with pytest.raises(ValueError, match="seeds must be an int >= 1, got 0"):
        DemoConfig(seeds=0)
    with pytest.raises(ValueError, match=r"families must be a non-empty subset of \[.*\], got \['hexagons'\]"):
        DemoConfig(families=["hexagons"])


def test_build_config_resolves_every_stage_at_once():
    """A bad key or value in any block or variant is reported before any stage runs, naming where it is."""
    with pytest.raises(ValueError, match=r"variant 'roma:lambda_klx=1': Unknown arguments from config file: "
                                         r"\['--lambda_klx', '1'\]"):
        build_config(overrides={"variants": ["base", "roma:lambda_klx=1"]})
    with pytest.raises(ValueError, match=r"variant 'roma:worst_case=max': worst_case must be one of"):
        build_config(overrides={"variants": ["roma:worst_case=max"]})
    with pytest.raises(ValueError, match=r"variant 'grpo': Unknown arguments from config file: \['--max_stepz'"):
        build_config(overrides={"variants": ["grpo"], "train": {"max_stepz": 3}})
    with pytest.raises(ValueError, match=r"variant 'roma': \['dataset_limit'\]|variant 'roma': dataset_limit applies"):
        build_config(overrides={"variants": ["roma"], "train": {"dataset_limit": 3}})
    with pytest.raises(ValueError, match=r"sft: .*unexpected keyword argument 'max_stepz'"):
        build_config(overrides={"sft": {"max_stepz": 3}})
    with pytest.raises(ValueError, match=r"model_spec: .*unexpected keyword argument 'layers'"):
        build_config(overrides={"model_spec": {"layers": 3}})
    # the base alone has no RL recipe: its train block is not parsed
    assert build_config(overrides={"variants": ["base"]}).variants == ["base"]


def test_families_default_to_the_whole_suite():
    from roma.data.synthetic import FAMILIES

    assert DemoConfig().families == list(FAMILIES)
    assert DemoConfig(families=[FAMILIES[0]]).families == [FAMILIES[0]]


def test_main_reports_a_bad_configuration(capsys):
    assert demo.main(["--variants", "grpo", "ppo"]) == 2
    assert "roma demo: unknown variant 'ppo'" in capsys.readouterr().err


def test_count_stages():
    # model + sft + eval/base + (train + eval) × 3 trained variants × 1 seed + report
    assert count_stages(DemoConfig()) == 2 + 1 + 2 * 3 + 1
    every = list(VARIANTS)
    assert count_stages(DemoConfig(variants=every, seeds=3)) == 2 + 1 + 2 * 7 * 3 + 1


# --------------------------------------------------------------------------------------- stage cache


def test_stage_cache_skips_reruns_and_invalidates(tmp_path):
    calls = []
    lines = []

    def body(tag):
        def run():
            calls.append(tag)
            (tmp_path / "s").mkdir(exist_ok=True)
            (tmp_path / "s" / "out.txt").write_text(tag)
            return f"value {tag}"

        return run

    outputs = [tmp_path / "s" / "out.txt"]
    first = StageCache(tmp_path, log=lines.append).run("a/b", {"x": 1}, body("1"), out_dir=tmp_path / "s", outputs=outputs)
    assert first.ran and calls == ["1"] and first.value == "value 1"  # the body's return value
    marker = json.loads((tmp_path / "stages" / "a--b.json").read_text())
    assert (marker["status"], marker["config"], marker["run_id"]) == ("done", {"x": 1}, first.run_id)

    again = StageCache(tmp_path, log=lines.append).run("a/b", {"x": 1}, body("2"), out_dir=tmp_path / "s", outputs=outputs)
    assert not again.ran and again.run_id == first.run_id and calls == ["1"] and again.value is None
    assert lines[-1] == f"==> [1] a/b: done earlier ({marker['seconds']:.1f} s), skipped"

    (tmp_path / "s" / "stale.txt").write_text("from the first run")
    changed = StageCache(tmp_path, log=lines.append).run("a/b", {"x": 2}, body("3"), out_dir=tmp_path / "s", outputs=outputs)
    assert changed.ran and changed.run_id != first.run_id and calls == ["1", "3"]
    assert not (tmp_path / "s" / "stale.txt").exists()  # the stage folder was wiped before the rerun
    assert "configuration changed" in lines[-2]

    (tmp_path / "s" / "out.txt").unlink()
    missing = StageCache(tmp_path, log=lines.append).run("a/b", {"x": 2}, body("4"), out_dir=tmp_path / "s", outputs=outputs)
    assert missing.ran and calls == ["1", "3", "4"]

    forced = StageCache(tmp_path, force=True, log=lines.append).run("a/b", {"x": 2}, body("5"), out_dir=tmp_path / "s")
    assert forced.ran and calls == ["1", "3", "4", "5"]


def test_stage_cache_resumes_only_resumable_interrupted_stages(tmp_path):
    def interrupted():
        (tmp_path / "s").mkdir(exist_ok=True)
        (tmp_path / "s" / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    for resumable, kept in ((True, True), (False, False)):
        name = f"stage-{resumable}"
        with pytest.raises(KeyboardInterrupt):
            StageCache(tmp_path, log=lambda _: None).run(name, {"x": 1}, interrupted, out_dir=tmp_path / "s")
        assert json.loads((tmp_path / "stages" / f"{name}.json").read_text())["status"] == "running"
        seen: list[bool] = []
        StageCache(tmp_path, log=lambda _: None).run(
            name, {"x": 1}, lambda seen=seen: seen.append((tmp_path / "s" / "partial.txt").exists()),
            out_dir=tmp_path / "s", resumable=resumable,
        )
        assert seen == [kept]


def test_trainer_log_history_prefers_the_run_folder_then_the_newest_checkpoint(tmp_path):
    for step in (9, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": step}]}))
    assert trainer_log_history(tmp_path) == [{"step": 10}]  # numeric, not alphabetical, order
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 0}]}))
    assert trainer_log_history(tmp_path) == [{"step": 0}]
    with pytest.raises(FileNotFoundError, match="no trainer_state.json in"):
        trainer_log_history(tmp_path / "checkpoint-9" / "nothing")


# --------------------------------------------------------------------------------------- aggregation


def _run(clean, seen, unseen):
    """A read_eval-shaped result at Level 3 with the given accuracies."""
    return {"clean": clean, "seen": {"3": seen}, "unseen": {"3": unseen}, "gap_seen": clean - seen,
            "gap_unseen": clean - unseen, "se": {"clean": 0.01, "seen": 0.02, "unseen": 0.03},
            "types": {"seen": {"jpeg": seen}, "unseen": {"pixelate": unseen}}}


def test_mean_std():
    assert mean_std([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    stat = mean_std([0.5, 0.7, 0.9])
    # mean 0.7; deviations ±0.2 and 0 → sample variance (0.04 + 0 + 0.04) / 2 = 0.04 → std 0.2
    assert stat["mean"] == pytest.approx(0.7) and stat["std"] == pytest.approx(0.2) and stat["n"] == 3
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


def test_aggregate_runs_pairs_deltas_by_seed():
    runs = {
        "base": {None: _run(0.4, 0.3, 0.2)},
        "grpo": {0: _run(0.5, 0.4, 0.3), 1: _run(0.7, 0.5, 0.4)},
        "roma": {0: _run(0.6, 0.5, 0.4), 1: _run(0.9, 0.7, 0.5)},
    }
    table = aggregate_runs(runs, 3)
    # GRPO clean 0.5, 0.7: mean 0.6, std sqrt((0.01 + 0.01) / 1) = 0.1414
    assert table["grpo"]["clean"]["mean"] == pytest.approx(0.6)
    assert table["grpo"]["clean"]["std"] == pytest.approx(math.sqrt(0.02))
    assert "delta_vs_grpo" not in table["grpo"]
    # ROMA − GRPO per seed: clean 0.1, 0.2 → mean 0.15, std sqrt((0.0025 + 0.0025) / 1) = 0.0707
    delta = table["roma"]["delta_vs_grpo"]
    assert delta["clean"]["mean"] == pytest.approx(0.15) and delta["clean"]["std"] == pytest.approx(math.sqrt(0.005))
    # seen: 0.1, 0.2 → 0.15; unseen: 0.1, 0.1 → 0.1 with std 0
    assert delta["seen"]["mean"] == pytest.approx(0.15)
    assert (delta["unseen"]["mean"], delta["unseen"]["std"]) == (pytest.approx(0.1), pytest.approx(0.0))
    # the base (one run) is paired with every GRPO seed: clean 0.4 − 0.5, 0.4 − 0.7 → mean −0.2, std 0.1414
    base = table["base"]
    assert base["delta_vs_grpo"]["clean"]["mean"] == pytest.approx(-0.2)
    assert base["delta_vs_grpo"]["clean"]["std"] == pytest.approx(math.sqrt(0.02))
    assert base["clean"]["std"] is None and base["se"]["clean"] == 0.01
    # gaps: ROMA clean − seen 0.1, 0.2 → 0.15
    assert table["roma"]["gap_seen"]["mean"] == pytest.approx(0.15)
    assert table["roma"]["levels"]["unseen"]["3"]["mean"] == pytest.approx(0.45)
    assert table["roma"]["types"]["seen"]["jpeg"]["mean"] == pytest.approx(0.6)

    check = criterion(table)
    # seen +15, unseen +10, clean +15 points: met
    assert check["met"] and check["delta_seen"] == pytest.approx(15.0) and check["delta_unseen"] == pytest.approx(10.0)
    runs["roma"] = {0: _run(0.48, 0.43, 0.33), 1: _run(0.68, 0.53, 0.43)}  # seen/unseen +3, clean −2: not met
    assert not criterion(aggregate_runs(runs, 3))["met"]
    assert criterion(aggregate_runs({"grpo": runs["grpo"]}, 3)) is None


def test_main_table_marks_single_runs():
    table = aggregate_runs({"grpo": {0: _run(0.5, 0.4, 0.3)}, "roma": {0: _run(0.6, 0.45, 0.3)}}, 3)
    lines = main_table(table, 3)
    assert lines[0].startswith("| Model | runs | Clean | Seen L3 | Unseen L3 | Clean−Seen | Clean−Unseen | Δ Clean vs GRPO")
    # one run: ± is the evaluation's standard error, marked with *
    assert lines[3] == "| roma | 1 | 60.0 ± 1.0* | 45.0 ± 2.0* | 30.0 ± 3.0* | 15.0 | 30.0 | +10.0 | +5.0 | +0.0 |"


def test_moving_average():
    from roma.demo.plots import moving_average

    # window 2: [1], [1, 2], [2, 3], [3, 4] → 1, 1.5, 2.5, 3.5
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([1.0, 5.0], 1) == [1.0, 5.0]
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        moving_average([1.0], 0)


# ------------------------------------------------------------------------------------- end to end


def _stage_markers(root: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "stages").glob("*.json"))}


def _assert_finite(value, path="summary"):
    if isinstance(value, dict):
        for k, v in value.items():
            _assert_finite(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _assert_finite(v, f"{path}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), path


@pytest.mark.slow
def test_quick_demo_end_to_end_and_cached_rerun(tmp_path, capsys):
    root = tmp_path / "demo"
    start = time.perf_counter()
    assert demo.main(["--quick", "--out", str(root), "--threads", "1"]) == 0
    first_seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    assert first_seconds < 120, f"--quick took {first_seconds:.0f} s"

    stages = _stage_markers(root)
    expected = {"model", "sft", "eval--base", "report"} | {
        f"{kind}--{v}--seed0" for kind in ("train", "eval") for v in ("grpo", "naive-aug", "roma")}
    assert set(stages) == expected
    assert all(m["status"] == "done" for m in stages.values())
    assert out.count("==> [") == 10 and "[10/10] report (new)" in out

    report = (root / "report.md").read_text()
    for row in ("| base | 1 |", "| grpo | 1 |", "| naive-aug | 1 |", "| roma | 1 |"):
        assert row in report
    assert "## Main results (Level 3)" in report and "ROMA − GRPO at Level 3" in report
    for png in ("accuracy-vs-level.png", "training-curves.png"):
        data = (root / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({png})" in report

    summary = json.loads((root / "demo-summary.json").read_text())
    _assert_finite(summary)
    assert list(summary["table"]) == ["base", "grpo", "naive-aug", "roma"]
    for label, entry in summary["table"].items():
        for key in ("clean", "seen", "unseen"):
            assert 0.0 <= entry[key]["mean"] <= 1.0, (label, key)
    assert summary["eval"] == {"split": "test", "examples": 3, "levels": [3]}
    # every RL run logged its 2 steps; only ROMA logs the invariance penalty
    curves = {run["label"]: run["curves"] for run in summary["training"]}
    assert set(curves) == {"grpo", "naive-aug", "roma"}
    assert all([s for s, _ in c["reward"]] == [1, 2] for c in curves.values())
    assert "roma/loss_inv" in curves["roma"] and "roma/loss_inv" not in curves["grpo"]
    # 3 examples × (clean + 9 types at Level 3) records per model
    for eval_dir in ("base", "grpo/seed0", "roma/seed0"):
        assert len((root / "eval" / eval_dir / "records.jsonl").read_text().splitlines()) == 30
    # every variant trained from the SFT base with the same budget; the recipe reruns with roma train
    recipes = {v: yaml.safe_load((root / "train" / v / "seed0" / "recipe.yaml").read_text())
               for v in ("grpo", "naive-aug", "roma")}
    assert {r["model_name_or_path"] for r in recipes.values()} == {str(root / "sft" / "model")}
    assert [recipes[v]["mode"] for v in ("grpo", "naive-aug", "roma")] == ["grpo", "naive_aug", "roma"]
    assert {r["max_steps"] for r in recipes.values()} == {2}

    # A second run skips every stage and is fast.
    start = time.perf_counter()
    assert demo.main(["--quick", "--out", str(root), "--threads", "1"]) == 0
    assert time.perf_counter() - start < 10
    out = capsys.readouterr().out
    assert out.count("skipped") == 10 and "(stages: 0 ran, 10 cached)" in out
    assert {k: m["run_id"] for k, m in _stage_markers(root).items()} == {k: m["run_id"] for k, m in stages.items()}

    # A changed evaluation setting reruns the evaluations and the report only.
    assert demo.main(["--quick", "--out", str(root), "--threads", "1", "--eval-examples", "2"]) == 0
    after = _stage_markers(root)
    rerun = {k for k in after if after[k]["run_id"] != stages[k]["run_id"]}
    assert rerun == {k for k in expected if k.startswith("eval") or k == "report"}
    assert len((root / "eval" / "base" / "records.jsonl").read_text().splitlines()) == 20



@pytest.mark.parametrize("name", ["matrix", "sweep", "seeds"])
def test_shipped_experiment_configs_resolve(name):
    """The experiment files of docs/results.md are valid DemoConfigs with the settings the results quote."""
    config = build_config(config_file=Path(__file__).resolve().parents[1] / "configs" / "demo" / f"{name}.yaml")
    assert config.eval_levels == [3] and config.eval_examples == 500
    assert config.train["learning_rate"] == 3e-5 and config.roma["lambda_kl"] == 2.0
    if name == "seeds":
        assert (config.out, config.num_threads, config.seeds, config.eval_split) == ("runs/demo", 2, 3, "test")
    else:  # the matrix and the sweep share their folder and a thread count that differs from make demo's
        assert (config.out, config.num_threads) == ("runs/matrix", 1)
        assert config.eval_split == ("test" if name == "matrix" else "validation")
        assert config.seeds == (3 if name == "matrix" else 1)
    slugs = [parse_variant(v).slug for v in config.variants]
    assert len(slugs) == len(set(slugs))
