"""The step-overhead benchmark script runs end to end on a tiny configuration and prints its table."""

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "step_overhead.py"


@pytest.fixture(scope="module")
def step_overhead():
    spec = importlib.util.spec_from_file_location("step_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_overhead_prints_a_ratio_row_per_configuration(step_overhead, tiny_model_dir, capsys):
    code = step_overhead.main([
        "--model-dir", str(tiny_model_dir), "--trials", "1", "--loss-repeats", "1", "--max-completion-length", "4",
        "--views", "2", "--worst-cases", "batch", "mean", "--no-memory",
    ])
    assert code == 0
    table = capsys.readouterr().out
    rows = re.findall(r"^\| (\w+) \| (\d) \| ([0-9.]+)x \| ([0-9.]+)x \|$", table, flags=re.MULTILINE)
    assert [(worst_case, k) for worst_case, k, _, _ in rows] == [("batch", "2"), ("mean", "2")]
    assert all(float(full) > 0 and float(loss) > 0 for _, _, full, loss in rows)
    assert "max_completion_length 4, success all" in table


def test_step_overhead_rejects_zero_views_and_trials(step_overhead, tiny_model_dir, capsys):
    with pytest.raises(SystemExit):
        step_overhead.main(["--model-dir", str(tiny_model_dir), "--views", "0", "--no-memory"])
    assert "--views must be >= 1, got [0]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        step_overhead.main(["--model-dir", str(tiny_model_dir), "--trials", "0"])
    assert "--trials must be >= 1, got 0" in capsys.readouterr().err
