"""``roma sft``: the real entry point on a tiny budget, the config contract, the stopping rule, the evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerControl, TrainerState

from roma.data.synthetic import generate
from roma.sft import (
    AccuracyStop,
    SFTRunConfig,
    accuracy_by_task,
    greedy_accuracy,
    main,
    use_linear_patch_embedding,
)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny-sft.yaml"


@pytest.fixture(scope="module")
def smoke_run(tiny_model_dir, tmp_path_factory):
    """8 steps on 32 training examples (4 epochs of batch 16), through ``roma.sft.main`` and the shipped YAML."""
    out = tmp_path_factory.mktemp("sft")
    argv = [
        "--config", str(CONFIG), "--model_dir", str(tiny_model_dir), "--output_dir", str(out),
        "--train_examples", "32", "--batch_size", "16", "--max_steps", "8", "--learning_rate", "0.005",
        "--warmup_steps", "0", "--validation_examples", "10", "--test_examples", "10", "--eval_every_steps", "4",
        "--logging_steps", "2", "--max_new_tokens", "8", "--num_threads", "1", "--families", "count", "arith",
        "--test_degradation_level", "1",
    ]
    assert main(argv) == 0
    return out


def test_smoke_run_lowers_the_training_loss(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    losses = [r["loss"] for r in metrics["train_loss"]]
    assert [r["step"] for r in metrics["train_loss"]] == [2, 4, 6, 8]
    assert losses[-1] < 0.8 * losses[0], losses  # 4 passes over the same 32 solutions at lr 5e-3
    assert metrics["steps"] == 8 and metrics["stop_reason"] == "max_steps"
    assert [r["step"] for r in metrics["validation"]] == [4, 8]
    assert set(metrics["test_accuracy_by_family"]) == {"count", "arith"} and metrics["test_examples"] == 10
    degraded = metrics["test_degraded"]  # every type of both pools, at the requested level
    assert {name: (r["pool"], r["level"]) for name, r in degraded.items()} == {
        **{name: ("seen", 1) for name in ("gaussian_noise", "gaussian_blur", "jpeg", "downscale")},
        **{name: ("unseen", 1) for name in ("motion_blur", "salt_pepper", "speckle_noise", "posterize", "pixelate")},
    }


def test_smoke_run_writes_the_resolved_config_and_run_info(smoke_run, tiny_model_dir):
    resolved = yaml.safe_load((smoke_run / "config.yaml").read_text())
    shipped = yaml.safe_load(CONFIG.read_text())
    assert set(resolved) == set(SFTRunConfig.__dataclass_fields__)
    assert resolved["max_steps"] == 8 and resolved["families"] == ["count", "arith"]  # from the command line
    assert resolved["target_accuracy"] == shipped["target_accuracy"]  # from the YAML
    assert resolved["model_dir"] == str(tiny_model_dir)
    info = json.loads((smoke_run / "run_info.json").read_text())
    assert info["trl"] == "1.16.0" and info["transformers"] == "5.24.0" and "git_commit" in info


def test_smoke_run_saves_a_loadable_base_policy(smoke_run):
    from roma.models import load_model_and_processor

    model, processor = load_model_and_processor(smoke_run / "model")
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert processor.tokenizer.eos_token == "<|im_end|>"


@pytest.fixture
def no_training(monkeypatch):
    """Parsing errors must stop ``main`` before any run: make a run a test failure."""

    def run_sft(config):
        raise AssertionError(f"main() started a run with {config}")

    monkeypatch.setattr("roma.sft.run_sft", run_sft)


def test_unknown_config_key_is_rejected(tmp_path, capsys, no_training):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    assert main(["--config", str(bad)]) == 2
    assert "Unknown arguments from config file: ['--learning_rat', '0.1']" in capsys.readouterr().err
    # a misspelt flag is an error too, also when it is a prefix of a real one (no argparse abbreviations)
    assert main(["--config", str(CONFIG), "--max_step", "3"]) == 2
    assert "not used by the HfArgumentParser: ['--max_step', '3']" in capsys.readouterr().err


def test_bad_values_are_rejected_with_the_accepted_ones(capsys, no_training):
    assert main(["--config", str(CONFIG), "--families", "count", "cnt"]) == 2
    assert "families must be a non-empty subset of ['count', 'color', 'chart', 'tallest', 'arith'], got " \
           "['count', 'cnt']" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"target_accuracy must lie in \(0, 1\], got 1.5"):
        SFTRunConfig(target_accuracy=1.5)


def run_callback(stopper: AccuracyStop, steps: int, max_steps: int = 100) -> list[int]:
    """Drive the callback as the Trainer does; return the steps after which training stopped."""
    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    stopper.on_train_begin(None, state, control)
    for step in range(1, steps + 1):
        state.global_step = step
        stopper.on_step_end(None, state, control, model=None)
        if control.should_training_stop:
            return [step]
    return []


def test_accuracy_stop_stops_at_the_first_measurement_reaching_the_target():
    measured = iter([0.2, 0.5, 0.6, 0.9])
    stopper = AccuracyStop(lambda model: (next(measured), {}), every_steps=5, target=0.55, max_seconds=1e9)
    assert run_callback(stopper, 50) == [15]  # measurements at steps 5, 10, 15: 0.2, 0.5, 0.6 >= 0.55
    assert [r["step"] for r in stopper.history] == [5, 10, 15] and stopper.reason == "target"


def test_accuracy_stop_measures_and_stops_when_time_is_up():
    stopper = AccuracyStop(lambda model: (0.1, {"count": 0.1}), every_steps=5, target=0.55, max_seconds=0.0)
    assert run_callback(stopper, 50) == [1]  # out of time after the first step: measured once, then stopped
    assert stopper.reason == "time" and [r["step"] for r in stopper.history] == [1]


def test_accuracy_by_task():
    # count: 2 of 3 correct, chart: 0 of 1
    assert accuracy_by_task(["count", "chart", "count", "count"], [True, False, False, True]) == {
        "count": 2 / 3, "chart": 0.0,
    }


class ScriptedModel(torch.nn.Module):
    """Stands in for the VLM in ``generate``: answers each prompt with a scripted completion.

    It reads the question back from the left-padded ``input_ids`` and appends the tokens of the
    completion scripted for it, padded on the right with eos, as ``generate`` returns them.
    """

    device = torch.device("cpu")  # where the generator puts the inputs, as for a real model

    def __init__(self, processor, completions: dict[str, str]):
        super().__init__()
        self.tokenizer = processor.tokenizer
        self.completions = completions
        self.calls: list[tuple[int, ...]] = []

    def generate(self, input_ids, attention_mask, pixel_values, image_grid_thw, max_new_tokens, **kwargs):
        assert kwargs["do_sample"] is False and (attention_mask[:, -1] == 1).all()  # left padding
        assert pixel_values.shape[0] == image_grid_thw.prod(-1).sum()
        self.calls.append(tuple(input_ids.shape))
        rows = []
        for ids in input_ids:
            prompt = self.tokenizer.decode(ids, skip_special_tokens=True)
            (text,) = [c for q, c in self.completions.items() if q in prompt]
            new = self.tokenizer(text, add_special_tokens=False)["input_ids"][:max_new_tokens]
            rows.append(new + [self.tokenizer.eos_token_id] * (max_new_tokens - len(new)))
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


def test_greedy_accuracy_scores_the_completions_of_each_prompt(tiny_model_dir):
    from roma.models import load_model_and_processor

    _, processor = load_model_and_processor(tiny_model_dir)
    rows = generate(5, seed=1)  # one per family, five different questions
    questions = [p[0]["content"][1]["text"].split("\n")[0] for p in rows["prompt"]]
    # right solution for examples 0, 2 and 4; a wrong box for 1; no box at all for 3
    scripted = [rows[0]["solution"], "<think>x</think>\\boxed{nothing}", rows[2]["solution"], "I give up",
                rows[4]["solution"]]
    model = ScriptedModel(processor, dict(zip(questions, scripted)))
    result = greedy_accuracy(model, processor, rows, batch_size=2, max_new_tokens=24)
    assert result.correct == [True, False, True, False, True] and result.accuracy == pytest.approx(0.6)
    assert result.completions[0] == rows[0]["solution"] and result.completions[3] == "I give up"
    assert [shape[0] for shape in model.calls] == [2, 2, 1]  # batches of 2, 2, 1
    with pytest.raises(ValueError, match="got 5 prompts but 2 images; one image per prompt"):
        greedy_accuracy(model, processor, rows, images=rows["image"][:2])


def test_linear_patch_embedding_matches_the_convolution(tiny_model_dir):
    from roma.models import load_model_and_processor

    model, _ = load_model_and_processor(tiny_model_dir)
    embed = model.model.visual.patch_embed
    patches = torch.randn(64, embed.proj.weight[0].numel(), generator=torch.Generator().manual_seed(0))
    reference = embed(patches)  # the stock Conv3d
    state = {k: v.clone() for k, v in model.state_dict().items()}
    use_linear_patch_embedding(model)
    torch.testing.assert_close(embed(patches), reference, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # same weights, same names
