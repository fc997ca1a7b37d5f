"""GPU readiness, checked on the CPU: image bounds and the derived vLLM context, the vLLM engine arguments,
the torchvision check of the Makefile. CUDA and vLLM are faked where needed."""

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


def test_pixel_bounds_are_checked_and_optional():
    unset = RomaConfig(output_dir="/tmp/unused", use_cpu=True, report_to="none")
    assert unset.vllm_max_model_length is None and unset.pixel_bounds == {}
    assert vllm_engine_kwargs(unset) == {"limit_mm_per_prompt": {"image": 1}}
    with pytest.raises(ValueError, match=r"min_pixels \(70000\) must not exceed max_pixels \(65536\)"):
        RomaConfig(output_dir="/tmp/unused", use_cpu=True, max_pixels=65536, min_pixels=70000)
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
