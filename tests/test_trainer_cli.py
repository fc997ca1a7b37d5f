"""``roma train``: recipes parse into RomaConfig, the entry point runs in-process and under ``accelerate launch``."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from roma.train import RomaConfig, cli
from roma.train.cli import effective_training_args, main, parse_args, validate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# A 2-step ROMA run small enough for a test: 2 prompts x 2 completions of at most 8 tokens per step.
SMALL_RUN = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "2",
    "--max_completion_length", "8", "--dataset_size", "8", "--report_to", "none", "--logging_steps", "1",
    "--save_strategy", "no", "--correctness_mask", "false", "--disable_tqdm", "true",
]


@pytest.mark.parametrize(
    ("recipe", "mode", "lambdas"),
    [("tiny-roma", "roma", (2.0, 0.1)), ("tiny-grpo", "grpo", (0.0, 0.0)), ("tiny-naive-aug", "naive_aug", (0.0, 0.0))],
)
def test_tiny_recipes_parse(recipe, mode, lambdas):
    training_args, model_args, data_args = parse_args(["--config", str(CONFIGS / f"{recipe}.yaml")])
    assert isinstance(training_args, RomaConfig)
    assert (training_args.mode, (training_args.lambda_kl, training_args.lambda_aux)) == (mode, lambdas)
    assert training_args.use_cpu and not training_args.bf16 and not training_args.use_vllm
    assert model_args.model_name_or_path == "runs/sft/model"
    assert data_args.dataset_name == "synthetic" and data_args.reward_funcs == ["accuracy", "format"]
    assert training_args.success_reward == "accuracy_reward"


@pytest.mark.parametrize("written", ["3", "'3'"])
def test_a_recipe_level_parses_to_the_int(tmp_path, written):
    recipe = (CONFIGS / "tiny-roma.yaml").read_text(encoding="utf-8")
    original = "degradation_pool: seen\ndegradation_level: train"
    assert original in recipe
    recipe = recipe.replace(original, f"degradation_pool: unseen\ndegradation_level: {written}")
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe, encoding="utf-8")
    training_args, _, _ = parse_args(["--config", str(path)])
    assert training_args.degradation_level == 3 and type(training_args.degradation_level) is int
    training_args, _, _ = parse_args(["--config", str(path), "--degradation_level", "2"])
    assert training_args.degradation_level == 2 and type(training_args.degradation_level) is int


@pytest.mark.parametrize(("recipe", "model"), [("qwen3vl-8b-roma", "Qwen3-VL-8B"), ("qwen3vl-4b-roma", "Qwen3-VL-4B")])
def test_gpu_recipes_parse(recipe, model):
    # bf16 needs a GPU at construction unless use_cpu is set; everything else is validated as on the GPU.
    training_args, model_args, data_args = parse_args(["--config", str(CONFIGS / f"{recipe}.yaml"), "--use_cpu", "true"])
    assert isinstance(training_args, RomaConfig)
    assert model_args.model_name_or_path == f"Qwen/{model}-Instruct" and model_args.dtype == "bfloat16"
    assert training_args.bf16 and training_args.use_vllm and training_args.vllm_mode == "colocate"
    assert (training_args.mode, training_args.roma_views, training_args.lambda_kl, training_args.lambda_aux) == (
        "roma", 3, 0.05, 0.1,
    )
    assert training_args.worst_case == "batch" and training_args.gradient_checkpointing
    assert training_args.view_batch_size == 2
    assert data_args.dataset_name == "mmrl30k"


@pytest.mark.parametrize(("name", "distributed_type"), [("zero3", "DEEPSPEED"), ("fsdp2", "FSDP"), ("cpu-2proc", "MULTI_GPU")])
def test_accelerate_configs_load(name, distributed_type):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type == distributed_type
    if name == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3 and config.mixed_precision == "bf16"
    if name == "fsdp2":
        assert config.fsdp_config["fsdp_version"] == 2


def test_unknown_recipe_key_and_flag_are_errors(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model_name_or_path: x/y\nuse_cpu: true\nlambda_klx: 0.1\n")
    assert main(["--config", str(recipe)]) == 2
    assert "Unknown arguments from config file: ['--lambda_klx', '0.1']" in capsys.readouterr().err
    assert main(["--model_name_or_path", "x/y", "--use_cpu", "true", "--lambda_klx", "0.1"]) == 2
    assert "not used by the HfArgumentParser: ['--lambda_klx', '0.1']" in capsys.readouterr().err


def test_missing_model_and_bad_values_are_reported(tmp_path, capsys):
    assert main(["--config", str(CONFIGS / "tiny-roma.yaml"), "--model_name_or_path", str(tmp_path / "none")]) == 2
    assert "does not exist; train the SFT base first" in capsys.readouterr().err
    assert main(["--config", str(CONFIGS / "tiny-roma.yaml"), "--lambda_kl", "-1"]) == 2
    assert "lambda_kl must be a finite number >= 0, got -1.0" in capsys.readouterr().err
    assert main(["--config", str(CONFIGS / "tiny-roma.yaml"), "--build_tiny_model", "true", "--model_name_or_path",
                 str(tmp_path / "m"), "--reward_funcs", "accuracy", "speed"]) == 2
    assert "reward_funcs must be a non-empty list of ['accuracy', 'format'], got ['accuracy', 'speed']" in (
        capsys.readouterr().err
    )
    gpu_recipe = ["--config", str(CONFIGS / "qwen3vl-8b-roma.yaml"), "--use_cpu", "true"]
    assert main([*gpu_recipe, "--dataset_size", "100"]) == 2
    assert "['dataset_size'] apply to dataset_name='synthetic' only, not to 'mmrl30k'" in capsys.readouterr().err
    assert main(["--config", str(CONFIGS / "tiny-roma.yaml"), "--build_tiny_model", "true", "--model_name_or_path",
                 str(tmp_path / "m"), "--dataset_limit", "10"]) == 2
    assert "dataset_limit applies to benchmarks" in capsys.readouterr().err
    assert main([*gpu_recipe, "--model_init_kwargs", '{"dtype": "float16"}']) == 2
    assert "model_init_kwargs['dtype']='float16' contradicts dtype='bfloat16'; set it once, as dtype" in (
        capsys.readouterr().err
    )


def test_the_trainer_gets_a_resolved_copy_of_the_parsed_config(tiny_model_dir):
    from transformers import AutoProcessor

    from roma.models import vision_token_ids

    argv = ["--config", str(CONFIGS / "tiny-roma.yaml"), "--model_name_or_path", str(tiny_model_dir),
            "--generation_kwargs", '{"suppress_tokens": [5]}', "--dtype", "float32"]
    training_args, model_args, data_args = parse_args(argv)
    validated = validate(training_args, model_args, data_args)
    assert validated.checkpoint is None and [f.__name__ for f in validated.rewards] == ["accuracy_reward", "format_reward"]
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    args = effective_training_args(training_args, data_args, validated, processor)
    assert args.generation_kwargs == {"suppress_tokens": sorted({5, *vision_token_ids(processor)})}
    assert args.model_init_kwargs == validated.model_init_kwargs and args.model_init_kwargs["dtype"] == "float32"
    # the parsed configuration is untouched
    assert training_args.generation_kwargs == {"suppress_tokens": [5]}
    assert training_args.model_init_kwargs is None


def test_train_in_process_builds_the_model_and_records_the_run(tmp_path, monkeypatch):
    model_dir, output_dir = tmp_path / "tiny", tmp_path / "run"
    argv = ["--config", str(CONFIGS / "tiny-roma.yaml"), "--model_name_or_path", str(model_dir),
            "--build_tiny_model", "true", "--output_dir", str(output_dir), *SMALL_RUN]
    checks = []
    monkeypatch.setattr(cli, "check_data_args", lambda data_args: checks.append(data_args))
    assert main(argv) == 0
    assert len(checks) == 1  # validated once, before anything is built
    assert (model_dir / "config.json").exists()  # built, since it did not exist
    for name in ("config.yaml", "run_info.json", "model.safetensors", "processor_config.json", "trainer_state.json"):
        assert (output_dir / name).exists(), name
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2]
    assert all(math.isfinite(entry["roma/loss_inv"]) for entry in history if "loss" in entry)
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["trl"] == "1.16.0" and info["transformers"] == "5.24.0" and info["world_size"] == 1
    assert info["git_commit"] and info["train_examples"] == 8
    config = yaml.safe_load((output_dir / "config.yaml").read_text())
    assert (config["mode"], config["lambda_kl"], config["max_steps"], config["roma_agg"]) == ("roma", 2.0, 2, "token")
    assert config["generation_kwargs"]["suppress_tokens"]  # the vision tokens were added
    # The resolved config is itself a recipe.
    training_args, _, _ = parse_args(["--config", str(output_dir / "config.yaml")])
    assert training_args.mode == "roma" and training_args.roma_views == 3


@pytest.mark.slow
def test_accelerate_launch_two_processes(tiny_model_dir, tmp_path):
    """Two CPU processes (torchrun + gloo) run 2 ROMA steps of the tiny recipe."""
    output_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "accelerate" / "cpu-2proc.yaml"),
        "-m", "roma.train.cli", "--config", str(CONFIGS / "tiny-roma.yaml"), "--model_name_or_path", str(tiny_model_dir),
        "--output_dir", str(output_dir), *SMALL_RUN,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["world_size"] == 2
    logs = [line for line in result.stdout.splitlines() if "'roma/loss_inv'" in line]
    assert len(logs) == 2  # one log line per step, from the main process only
    assert (output_dir / "model.safetensors").exists()


def test_training_data_names_its_copy_and_never_reads_a_test_split(tmp_path):
    """``--data mmrl30k=PATH --split S`` as in ``roma eval``; MMRL30k's k12_test is never training data."""
    from roma.train.cli import DataArguments, load_train_dataset

    mmrl = REPO / ".." / "shared" / "bench-fixtures" / "mmrl30k" / "MMRL30k"
    _, _, data_args = parse_args(["--model_name_or_path", "x/y", "--use_cpu", "true", "--data", f"mmrl30k={mmrl}",
                                  "--split", "train"])
    assert (data_args.dataset_name, data_args.dataset_split) == (f"mmrl30k={mmrl}", "train")
    train = load_train_dataset(data_args)
    assert train["answer"] == ["3", "34", "C", "\\frac{1}{2}"]  # the 4 train rows, not the 2 k12_test rows
    with pytest.raises(ValueError, match="mmrl30k: split 'k12_test' is held out for evaluation"):
        load_train_dataset(DataArguments(dataset_name=f"mmrl30k={mmrl}", dataset_split="k12_test"))
    shard = next((mmrl / "data").glob("k12_test-*.parquet"))
    with pytest.raises(ValueError, match="mmrl30k: split 'k12_test' is held out for evaluation"):
        load_train_dataset(DataArguments(dataset_name=f"mmrl30k={shard}"))  # a file of the test split
    with pytest.raises(ValueError, match="mathvista: split 'testmini' is held out for evaluation"):
        load_train_dataset(DataArguments(dataset_name="mathvista"))


# ------------------------------------------------------------------ bad settings fail before any model loads


def _recipe(tmp_path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text("use_cpu: true\nbf16: false\nmodel_name_or_path: runs/none\noutput_dir: " + str(tmp_path / "out")
                    + "\n" + text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_steps: 2.5\n", "max_steps must be an int, got 2.5 (float)"),
        ("learning_rate: true\n", "learning_rate must be a float, got True (bool)"),
        ("max_steps: 2\nlambda_kl: 0.1\nmax_steps: 3\n", "key 'max_steps' is repeated (lines 5 and 7)"),
        ("dataset_size: 0\n", "dataset_size must be an int >= 1 (or unset), got 0"),
        ("num_train_epochs: 0\n", "max_steps=-1 and num_train_epochs=0 train 0 steps"),
    ],
)
def test_recipe_errors_name_the_key(tmp_path, capsys, text, message):
    assert main(["--config", _recipe(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("roma train: ")


def _checkpoint(folder, step, *, complete=True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_last_skips_incomplete_checkpoints(tmp_path):
    from roma.train.cli import resolve_checkpoint

    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, complete=False)  # killed before trainer_state.json
    (_checkpoint(tmp_path, 14) / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    notes = []
    assert resolve_checkpoint("last", str(tmp_path), log=notes.append) == str(tmp_path / "checkpoint-10")
    assert notes == ["roma train: skipped incomplete checkpoint(s) checkpoint-14, checkpoint-12 (no readable "
                     "trainer_state.json: a save was interrupted); resuming from checkpoint-10"]
    with pytest.raises(ValueError, match="checkpoint-12' is incomplete"):
        resolve_checkpoint(str(tmp_path / "checkpoint-12"), str(tmp_path))
    empty = tmp_path / "only-broken"
    _checkpoint(empty, 4, complete=False)
    with pytest.raises(ValueError, match=r"holds no complete checkpoint-\* folder \(incomplete, no readable "
                                         r"trainer_state.json: checkpoint-4\)"):
        resolve_checkpoint("last", str(empty))


def test_unwritable_output_dir_fails_up_front(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    recipe = _recipe(tmp_path, "build_tiny_model: true\n")
    assert main(["--config", recipe, "--output_dir", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roma train: output_dir ") and "file.txt/out' is not writable" in err
    assert not (tmp_path / "runs").exists()  # nothing built


def test_a_training_file_without_rows_is_one_line(tmp_path, capsys):
    empty = tmp_path / "train.jsonl"
    empty.write_text("")
    recipe = _recipe(tmp_path, f"dataset_name: mmrl30k={empty}\nbuild_tiny_model: true\n")
    assert main(["--config", recipe]) == 2
    err = capsys.readouterr().err
    assert err == f"roma train: mmrl30k (train split of {empty}): read 0 rows (an empty file or split), so there is no " \
                  "row to use\n"
    assert not (tmp_path / "runs").exists()  # no model built
