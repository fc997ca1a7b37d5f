"""Bad settings fail in the first second with one line naming them: ``roma.preflight``'s checks, each command's
use of them, and a walk over every ``roma`` sub-command with an unwritable output folder and a missing input."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from roma import cli
from roma.preflight import (
    check_field_types,
    check_model_folder,
    check_writable_dir,
    load_yaml,
    load_yaml_mapping,
)


@pytest.fixture
def blocker(tmp_path):
    """A regular file: a folder under it can be neither created nor written, even by root (chmod is not enough)."""
    path = tmp_path / "file.txt"
    path.write_text("a file, not a folder")
    return path


def test_check_writable_dir(tmp_path, blocker):
    assert check_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the test file is removed
    with pytest.raises(ValueError, match=r"output folder '.*file.txt/out' is not writable: Not a directory"):
        check_writable_dir(blocker / "out")
    with pytest.raises(ValueError, match=r"output_dir '.*file.txt' is not writable: File exists"):
        check_writable_dir(blocker, what="output_dir")


def test_check_model_folder(tmp_path, monkeypatch):
    check_model_folder(tmp_path)
    with pytest.raises(ValueError, match=r"^model folder '.*/runs/nope' does not exist$"):
        check_model_folder(tmp_path / "runs" / "nope")
    with pytest.raises(ValueError, match="model folder 'runs/final' does not exist, and HF_HUB_OFFLINE is set"):
        check_model_folder("runs/final")  # looks like a hub id, not cached, hub offline (conftest)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_model_folder("Qwen/Qwen3-VL-4B-Instruct")  # may be downloaded later: not refused


def test_load_yaml_refuses_repeated_keys(tmp_path):
    assert load_yaml("a: 1\nb: {c: 2}\n") == {"a": 1, "b": {"c": 2}}
    with pytest.raises(ValueError, match=r"^recipe: key 'lr' is repeated \(lines 1 and 3\); give it once$"):
        load_yaml("lr: 1\nx: 2\nlr: 3\n", source="recipe")
    with pytest.raises(ValueError, match=r"key 'k' is repeated \(lines 2 and 3\)"):
        load_yaml("outer:\n  k: 1\n  k: 2\n")  # nested mappings too
    with pytest.raises(ValueError, match="not valid YAML"):
        load_yaml("a: [1, 2\n")
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_yaml_mapping(path) == {}
    path.write_text("- 1\n")
    with pytest.raises(ValueError, match="expected a mapping of settings, got list"):
        load_yaml_mapping(path)
    with pytest.raises(ValueError, match="cannot read '.*missing.yaml': No such file or directory"):
        load_yaml_mapping(tmp_path / "missing.yaml")


def test_check_field_types():
    @dataclass
    class Config:
        steps: int = 1
        rate: float = 0.5
        flag: bool = False
        limit: int | None = None
        name: str = "x"

    check_field_types(Config(rate=1, limit=3, name=3))  # an int is a float; str fields are not looked at
    for bad, message in [
        ({"steps": 2.5}, "steps must be an int, got 2.5 (float)"),
        ({"steps": True}, "steps must be an int, got True (bool)"),
        ({"rate": "3e-5"}, "rate must be a float, got '3e-5' (str)"),
        ({"flag": 1}, "flag must be a bool, got 1 (int)"),
        ({"limit": 2.0}, "limit must be an int or null, got 2.0 (float)"),
    ]:
        with pytest.raises(ValueError, match=f"^{message.replace('(', r'[(]').replace(')', r'[)]')}$"):
            check_field_types(Config(**bad))


# ---------------------------------------------------------------------------------------- commands


def _one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"roma {command}: ") and "\n" not in err, captured.err
    assert "Traceback" not in captured.out + captured.err
    return err


def test_degrade_truncated_image(tmp_path, capsys):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert cli.main(["degrade", str(truncated), "--out", str(tmp_path / "grid.png")]) == 2
    err = _one_line_error(capsys, "degrade")
    assert "cannot read image" in err and "truncated" in err
    assert not (tmp_path / "grid.png").exists()


def test_degrade_checks_the_output_before_the_grid(blocker, capsys, monkeypatch):
    import roma.degrade.cli as degrade_cli

    def never(*args, **kwargs):
        raise AssertionError("the grid was computed before the output folder was checked")

    monkeypatch.setattr(degrade_cli, "render_grid", never)
    assert cli.main(["degrade", "--out", str(blocker / "out" / "grid.png")]) == 2
    assert "is not writable" in _one_line_error(capsys, "degrade")


def test_sft_negative_seed(capsys, tmp_path):
    assert cli.main(["sft", "--seed", "-3", "--output_dir", str(tmp_path / "sft")]) == 2
    assert _one_line_error(capsys, "sft") == "roma sft: seed must be an int >= 0, got -3"


def test_sft_recipe_with_a_repeated_key(capsys, tmp_path):
    recipe = tmp_path / "sft.yaml"
    recipe.write_text("max_steps: 3\nseed: 1\nmax_steps: 4\n")
    assert cli.main(["sft", "--config", str(recipe)]) == 2
    assert "key 'max_steps' is repeated (lines 1 and 3)" in _one_line_error(capsys, "sft")


def test_benchmark_file_without_a_usable_row(tmp_path, capsys):
    from roma.data.benchmarks import load_benchmark_with_skips

    empty = tmp_path / "chartqa.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"^chartqa \(test split of .*chartqa.jsonl\): read 0 rows \(an empty file or "
                                         r"split\), so there is no row to use$"):
        load_benchmark_with_skips(str(empty))
    broken = tmp_path / "broken" / "chartqa.jsonl"
    broken.parent.mkdir()
    broken.write_text('{"query": "q1", "label": "1", "image": null}\n{"query": "q2", "label": "2", "image": null}\n')
    with pytest.raises(ValueError, match=r"^chartqa \(test split of .*chartqa.jsonl\): 2 of 2 rows \(100%\) are "
                                         r"unusable, more than the 20% allowed; first: chartqa-0 \(missing or corrupt "
                                         r"image\); chartqa-1"):
        load_benchmark_with_skips(str(broken))
    from roma.data.benchmarks import read_benchmark

    with pytest.raises(ValueError, match=r"^chartqa \(test split of .*chartqa.jsonl\): read 2 row\(s\) and none is "
                                         r"usable; first: chartqa-0 \(missing or corrupt image\)$"):
        read_benchmark(str(broken), max_skipped_share=1.0)
    assert cli.main(["eval", "--model", str(tmp_path), "--data", str(broken), "--out", str(tmp_path / "o"),
                     "--no-progress"]) == 2
    assert "2 of 2 rows (100%) are unusable" in _one_line_error(capsys, "eval")


def test_demo_resolves_every_recipe_in_the_first_second(tmp_path, capsys):
    from roma.demo.config import DemoConfig, check_stage_configs

    out = str(tmp_path / "demo")
    train = DemoConfig().train
    cases = [
        ({"roma": {"lamda_kl": 0.3}}, "variant 'roma': Unknown arguments from config file: ['--lamda_kl', '0.3']"),
        ({"variants": ["base", "grpo"], "roma": {"lamda_kl": 0.3}},
         "the roma block: Unknown arguments from config file: ['--lamda_kl', '0.3']"),
        ({"variants": ["grpo", "roma:roma_veiws=2"]},
         "variant 'roma:roma_veiws=2': Unknown arguments from config file: ['--roma_veiws', '2']"),
        ({"train": {**train, "max_steps": 2.5}}, "train.max_steps must be an int >= 1, got 2.5"),
        ({"train": {**train, "learning_rate": True}}, "variant 'grpo': learning_rate must be a float, got True (bool)"),
        ({"train": {**train, "dataset_size": 0}}, "variant 'grpo': dataset_size must be an int >= 1 (or unset), got 0"),
        ({"sft": {"max_step": 3}}, "sft: SFTRunConfig.__init__() got an unexpected keyword argument 'max_step'"),
        ({"sft": {"learning_rate": "fast"}}, "sft: learning_rate must be a float, got 'fast' (str)"),
    ]
    for settings, message in cases:
        start = time.perf_counter()
        with pytest.raises(ValueError) as error:
            check_stage_configs(DemoConfig(out=out, **settings))
        assert message in str(error.value), (settings, str(error.value))
        assert time.perf_counter() - start < 10  # no model, no SFT: only the config classes
    assert cli.main(["demo", "--quick", "--out", out, "--variants", "grpo", "roma:roma_veiws=2"]) == 2
    assert "roma_veiws" in _one_line_error(capsys, "demo")
    assert not (tmp_path / "demo").exists()  # no stage ran, nothing written


def test_demo_config_file_with_a_repeated_key(tmp_path, capsys):
    config = tmp_path / "demo.yaml"
    config.write_text("seeds: 2\nroma:\n  lambda_kl: 0.1\n  lambda_kl: 0.2\n")
    assert cli.main(["demo", "--config", str(config), "--out", str(tmp_path / "d")]) == 2
    assert "key 'lambda_kl' is repeated (lines 3 and 4)" in _one_line_error(capsys, "demo")


def _argv(command: str, tmp_path, blocker, *, case: str) -> list[str] | None:
    """``roma <command>`` arguments writing under ``blocker`` (case "unwritable") or reading a missing input."""
    missing = str(tmp_path / "missing")
    model = tmp_path / "model-folder"
    model.mkdir(exist_ok=True)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: {model}\nuse_cpu: true\nbf16: false\n")
    bad_out = str(blocker / "out")
    source = tmp_path / "rows.parquet"
    source.write_bytes(b"")  # a parquet source by its name; the output folder is checked before it is read
    table = {
        "degrade": (["--out", f"{bad_out}/grid.png"], [f"{missing}.png", "--out", str(tmp_path / "g.png")]),
        "degrade-dataset": ([str(source), "--out", bad_out], [missing, "--out", str(tmp_path / "copies")]),
        "build-model": (["--out", bad_out], None),
        "sft": (["--output_dir", bad_out], ["--config", f"{missing}.yaml"]),
        "train": (["--config", str(recipe), "--output_dir", bad_out], ["--config", str(recipe), "--output_dir",
                  str(tmp_path / "t"), "--model_name_or_path", missing]),
        "eval": (["--model", str(model), "--data", "synthetic", "--out", bad_out],
                 ["--model", missing, "--data", "synthetic", "--out", str(tmp_path / "e")]),
        "report": ([str(tmp_path), "--out", bad_out], [missing, "--out", str(tmp_path / "r")]),
        "demo": (["--quick", "--out", bad_out], ["--config", f"{missing}.yaml", "--out", str(tmp_path / "d")]),
    }
    assert set(table) == set(cli.COMMANDS), "add the new sub-command to this walk"
    unwritable, missing_input = table[command]
    return unwritable if case == "unwritable" else missing_input


NO_INPUT = {"build-model"}  # builds from nothing: no input to miss


@pytest.mark.parametrize(("command", "case"), [(c, k) for c in cli.COMMANDS for k in ("unwritable", "missing")
                                               if not (k == "missing" and c in NO_INPUT)])
def test_every_command_fails_in_one_line(command, case, tmp_path, blocker, capsys):
    argv = _argv(command, tmp_path, blocker, case=case)
    start = time.perf_counter()
    code = cli.main([command, *argv])  # an uncaught exception here is the traceback the user would see
    assert code != 0
    err = _one_line_error(capsys, command)
    assert ("is not writable" in err) if case == "unwritable" else ("missing" in err)
    assert time.perf_counter() - start < 30  # before any model is built or loaded
