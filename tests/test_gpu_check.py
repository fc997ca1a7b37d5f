"""benchmarks/gpu_check.py runs its whole path on the CPU (``--cpu-smoke``) and prints its ratio table."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_cpu_smoke_prints_ratios_and_eval_speed(tiny_model_dir, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--cpu-smoke", "--model-dir", str(tiny_model_dir), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "vLLM absent: roma eval measured on the HF backend" in out
    rows = re.findall(r"^\| (\d) \| ([0-9.]+)x \| ([0-9.]+)x \| n/a \(CPU\) \|$", out, flags=re.MULTILINE)
    assert [k for k, _, _ in rows] == ["2"] and all(float(full) > 0 and float(loss) > 0 for _, full, loss in rows)
    assert re.search(r"roma eval \(hf backend\): 2 items in [0-9.]+ s, [0-9.]+ items/s, max_new_tokens 4", out)
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["eval"]["items"] == 2 and result["steps"]["2"]["memory"] is None


def test_gpu_check_refuses_to_run_without_a_gpu_unless_smoke(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main([])
    assert "no CUDA device: run with --cpu-smoke" in capsys.readouterr().err
