"""Tests of roma.models: tokenizer, chat template, image-only processor, builder, loaders, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen2Tokenizer,
    Qwen3VLForConditionalGeneration,
)

from roma.data.schema import INSTRUCTION, make_prompt, prompt_text
from roma.data.synthetic import tokenizer_corpus
from roma.models import (
    BUILD_INFO_FILE,
    SPECIAL_TOKENS,
    THINK_TOKENS,
    VISION_SPECIAL_TOKENS,
    Qwen3VLImageOnlyProcessor,
    TinyQwen3VLSpec,
    build_tiny_qwen3vl,
    load_model_and_processor,
    vision_token_ids,
)
from roma.models.builder import make_model, mrope_section
from roma.models.cli import main as cli_main

# ---------------------------------------------------------------------------------------------- helpers


def _image(seed: int, height: int = 128, width: int = 128) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _noisy(image: Image.Image, seed: int) -> Image.Image:
    """Gaussian noise (sigma 40) on the same pixel grid: a degraded view of the same size."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image).astype(np.float64) + rng.normal(0.0, 40.0, size=np.asarray(image).shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _prompt_text(processor, question: str = "How many red shapes are in the image?") -> str:
    return processor.apply_chat_template(make_prompt(question), add_generation_prompt=True)


@pytest.fixture()
def model_and_processor(tiny_model_dir):
    """A fresh copy per test: tests below add hooks and gradients to the model."""
    return load_model_and_processor(tiny_model_dir)


# -------------------------------------------------------------------------------------------- tokenizer

ROUND_TRIP_TEXTS = [
    "",
    "0123456789",
    "-3.5e+10 and 1,234,567.89 at 12:45; 3/4 = 0.75",
    r"$\frac{a}{b} + \sqrt{x^2 + y^2} = \int_0^1 f(x)\,dx$",
    r"\boxed{\dfrac{3}{4}}",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
    "Größe ≤ 5 μm — naïve café",
    "中文 日本語 한국어",
    "emoji 🙂👍 and θ = 30°, π ≈ 3.14159",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\nand\n\n\nblank lines",
    "<think>\nThe square is left of the circle.\n</think>\n\\boxed{C}",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n",
    INSTRUCTION,
    prompt_text("Which shape is red?", ["circle", "square", "triangle"]),
]


def test_tokenizer_round_trips_suite_latex_unicode_and_digits(model_and_processor):
    _, processor = model_and_processor
    tokenizer = processor.tokenizer
    # Suite texts from another seed than the one the tokenizer was trained on.
    texts = ROUND_TRIP_TEXTS + tokenizer_corpus(seed=1, n=100)
    failures = [t for t in texts if tokenizer.decode(tokenizer.encode(t, add_special_tokens=False)) != t]
    assert failures == []


def test_tokenizer_normalises_to_nfc(model_and_processor):
    # The Qwen2 tokenizer applies NFC: a decomposed "e" + combining acute comes back composed. All
    # other text round-trips exactly (test above).
    tokenizer = model_and_processor[1].tokenizer
    decomposed = "cafe\u0301"
    assert tokenizer.decode(tokenizer.encode(decomposed)) == unicodedata.normalize("NFC", decomposed) == "caf\u00e9"


def test_digits_are_single_tokens_and_think_tags_are_kept(model_and_processor):
    tokenizer = model_and_processor[1].tokenizer
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("1234567890")) == list("1234567890")
    ids = tokenizer.encode("<think>7 + 5 = 12</think>\\boxed{12}<|im_end|>")
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<think>" and "</think>" in tokens
    assert tokens[tokens.index("{") + 1 : tokens.index("{") + 3] == ["1", "2"]
    # <think> tags are ordinary added tokens (TRL decodes completions with skip_special_tokens=True);
    # the chat and vision tokens are special and disappear.
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>7 + 5 = 12</think>\\boxed{12}"


def test_special_token_layout(model_and_processor, tiny_model_dir):
    model, processor = model_and_processor
    tokenizer = processor.tokenizer
    info = json.loads((tiny_model_dir / BUILD_INFO_FILE).read_text())
    n_bpe = info["tokenizer"]["bpe_vocab_size"]
    added = [*SPECIAL_TOKENS, *THINK_TOKENS]
    # Qwen's order right after the BPE ids, then <think>, </think>; nothing else.
    assert tokenizer.convert_tokens_to_ids(added) == list(range(n_bpe, n_bpe + len(added)))
    assert len(tokenizer) == n_bpe + len(added) == model.config.text_config.vocab_size
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert tokenizer.padding_side == "left"
    assert set(tokenizer.all_special_tokens) == set(SPECIAL_TOKENS)


def test_bpe_is_trained_on_the_pieces_between_added_tokens():
    from roma.models.builder import train_tokenizer

    # At encoding time "<think>" is cut out before pre-tokenisation, so "Zebra" must be learnt alone,
    # not as ">Zebra" (what the Qwen2 regex makes of the raw string "<think>Zebra").
    tokenizer = train_tokenizer(["<think>Zebra</think>"] * 5, vocab_size=300)
    assert tokenizer.tokenize("<think>Zebra</think>") == ["<think>", "Zebra", "</think>"]


def test_role_names_are_single_tokens(model_and_processor):
    tokenizer = model_and_processor[1].tokenizer
    rendered = "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    # "Ċ" is the byte-level symbol of "\n".
    assert tokenizer.tokenize(rendered) == [
        "<|im_start|>", "system", "Ċ", "<|im_end|>", "Ċ",
        "<|im_start|>", "user", "Ċ", "<|im_end|>", "Ċ",
        "<|im_start|>", "assistant", "Ċ",
    ]


def test_tokenizer_training_is_deterministic():
    corpus = tokenizer_corpus(seed=3, n=50)
    from roma.models.builder import train_tokenizer

    first = train_tokenizer(corpus, vocab_size=400)
    second = train_tokenizer(corpus, vocab_size=400)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()


# -------------------------------------------------------------------------------------------- template


def test_chat_template_renders_expected_string(model_and_processor):
    _, processor = model_and_processor
    conversation = [
        {"role": "system", "content": "You count shapes."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<think>2 + 1 = 3</think>\\boxed{3}"}]},
        {"role": "user", "content": "Sure?"},
    ]
    expected = (
        "<|im_start|>system\nYou count shapes.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many?<|im_end|>\n"
        "<|im_start|>assistant\n<think>2 + 1 = 3</think>\\boxed{3}<|im_end|>\n"
        "<|im_start|>user\nSure?<|im_end|>\n"
    )
    assert processor.apply_chat_template(conversation) == expected
    assert processor.apply_chat_template(conversation, add_generation_prompt=True) == (
        expected + "<|im_start|>assistant\n"
    )
    # The tokenizer carries the same template (text-only users, TRL's tokenizer paths).
    assert processor.tokenizer.apply_chat_template(conversation, tokenize=False) == expected


def test_chat_template_refuses_what_it_cannot_render(model_and_processor):
    _, processor = model_and_processor
    with pytest.raises(Exception, match="unsupported role tool; the template knows system, user and assistant"):
        processor.apply_chat_template([{"role": "tool", "content": "x"}])
    with pytest.raises(Exception, match="unsupported content part type video; the template knows text and image"):
        processor.apply_chat_template([{"role": "user", "content": [{"type": "video"}]}])
    with pytest.raises(Exception, match="a system message must be the first message"):
        processor.apply_chat_template([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])


# ------------------------------------------------------------------------------------------- processor


def test_auto_processor_returns_the_image_only_processor(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(processor) is Qwen3VLImageOnlyProcessor
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model) is Qwen3VLForConditionalGeneration


def test_processor_expands_image_tokens_and_patchifies_like_qwen(model_and_processor):
    _, processor = model_and_processor
    image = _image(0)
    out = processor(images=[image], text=[_prompt_text(processor)], return_tensors="pt")
    ids = out["input_ids"][0].tolist()
    image_pad, start, end = (processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>",
                                                                                     "<|vision_start|>",
                                                                                     "<|vision_end|>"))
    # 128 / 16 = 8 patches per side -> grid [1, 8, 8]; 64 patches / (2*2 merge) = 16 image tokens.
    assert out["image_grid_thw"].tolist() == [[1, 8, 8]]
    first = ids.index(start)
    assert ids[first + 1 : first + 17] == [image_pad] * 16 and ids[first + 17] == end
    assert ids.count(image_pad) == 16
    assert out["mm_token_type_ids"][0].tolist() == [int(i == image_pad) for i in ids]
    # Reference patchify, written with plain loops: rescale to [0, 1], normalise with mean = std = 0.5,
    # then rows in (2x2 merge block, position in block) raster order, each row = (C, T=2 copies, 16, 16).
    x = (np.asarray(image).astype(np.float32) / 255.0 - 0.5) / 0.5
    x = x.transpose(2, 0, 1)  # (3, 128, 128)
    rows = []
    for block_row in range(4):
        for block_col in range(4):
            for in_row in range(2):
                for in_col in range(2):
                    top, left = (2 * block_row + in_row) * 16, (2 * block_col + in_col) * 16
                    patch = x[:, top : top + 16, left : left + 16]
                    rows.append(np.stack([patch, patch], axis=1).reshape(-1))
    np.testing.assert_allclose(out["pixel_values"].numpy(), np.stack(rows), rtol=0, atol=1e-6)


def test_degraded_view_of_same_size_gives_same_grid_and_ids(model_and_processor):
    _, processor = model_and_processor
    text = [_prompt_text(processor)]
    clean = processor(images=[_image(1)], text=text, return_tensors="pt")
    noisy = processor(images=[_noisy(_image(1), seed=2)], text=text, return_tensors="pt")
    assert noisy["image_grid_thw"].tolist() == clean["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert torch.equal(noisy["input_ids"], clean["input_ids"])
    assert torch.equal(noisy["mm_token_type_ids"], clean["mm_token_type_ids"])
    assert not torch.equal(noisy["pixel_values"], clean["pixel_values"])


@pytest.mark.parametrize(
    ("height", "width", "grid", "n_tokens"),
    [
        (64, 64, [1, 4, 4], 4),  # sides multiples of 32, 4096 px in [1024, 65536]: kept; 16 patches / 4
        (96, 160, [1, 6, 10], 15),  # kept; 60 patches / 4
        (100, 100, [1, 6, 6], 9),  # round(100 / 32) * 32 = 96: resized to 96 x 96
        (512, 512, [1, 16, 16], 64),  # 262144 px > 65536: scaled by 1/2 to 256 x 256
    ],
)
def test_image_token_count_per_size(model_and_processor, height, width, grid, n_tokens):
    _, processor = model_and_processor
    out = processor(images=[_image(3, height, width)], text=[_prompt_text(processor)], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [grid]
    assert (out["input_ids"] == processor.image_token_id).sum().item() == n_tokens


def test_processor_batch_is_left_padded_like_trl_expects(model_and_processor):
    _, processor = model_and_processor
    texts = [_prompt_text(processor, "Short?"), _prompt_text(processor, "A much longer question about shapes?")]
    out = processor(images=[[_image(4)], [_image(5)]], text=texts, padding=True, return_tensors="pt")
    lengths = out["attention_mask"].sum(dim=1)
    assert lengths[0] < lengths[1] and out["input_ids"].shape[1] == lengths[1]
    n_pad = int(out["input_ids"].shape[1] - lengths[0])
    assert out["input_ids"][0, :n_pad].tolist() == [processor.tokenizer.pad_token_id] * n_pad
    assert out["mm_token_type_ids"].shape == out["input_ids"].shape
    assert out["pixel_values"].shape == (2 * 64, 3 * 2 * 16 * 16)


def test_processor_refuses_video(model_and_processor):
    _, processor = model_and_processor
    with pytest.raises(ValueError, match="Found 1 <\\|video_pad\\|> tokens in the text but no videos were passed"):
        processor(text=["<|vision_start|><|video_pad|><|vision_end|>what happens?"])
    with pytest.raises(ValueError, match="handles images and text only, got videos=list"):
        processor(text=["hi"], videos=[np.zeros((2, 32, 32, 3), dtype=np.uint8)])


def test_apply_chat_template_tokenizes_with_images(model_and_processor):
    # The call TRL's GRPOTrainer makes: images inside the conversation, tokenize=True, return_dict=True.
    _, processor = model_and_processor
    conversation = [{"role": "user", "content": [{"type": "image", "image": _image(6)},
                                                 {"type": "text", "text": "How many?"}]}]
    out = processor.apply_chat_template(
        [conversation], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert out["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert (out["input_ids"] == processor.image_token_id).sum().item() == 16
    assert set(out) == {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"}


# ----------------------------------------------------------------------------------------------- model


def test_saved_folder_reloads_to_identical_weights(model_and_processor, tiny_model_dir):
    model, processor = model_and_processor
    info = json.loads((tiny_model_dir / BUILD_INFO_FILE).read_text())
    spec = TinyQwen3VLSpec(**{**info["spec"], "deepstack_layers": tuple(info["spec"]["deepstack_layers"])})
    rebuilt = make_model(spec, processor.tokenizer, seed=info["seed"])
    loaded, fresh = model.state_dict(), rebuilt.state_dict()
    assert loaded.keys() == fresh.keys()
    assert all(torch.equal(loaded[k], fresh[k]) for k in loaded)
    other_seed = make_model(spec, processor.tokenizer, seed=info["seed"] + 1).state_dict()
    assert not torch.equal(other_seed["lm_head.weight"], fresh["lm_head.weight"])


def test_build_leaves_global_rng_alone(tmp_path):
    state = torch.random.get_rng_state()
    build_tiny_qwen3vl(tmp_path / "m", seed=5, corpus=tokenizer_corpus(seed=5, n=20))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_parameter_count_under_five_million(model_and_processor, tiny_model_dir):
    model, _ = model_and_processor
    info = json.loads((tiny_model_dir / BUILD_INFO_FILE).read_text())
    total = sum(p.numel() for p in model.parameters())
    assert total == info["parameters"]["total"] < 5_000_000
    assert info["parameters"]["vision"] + info["parameters"]["language"] == total  # LM head tied


def test_generation_never_emits_vision_tokens_even_when_forced(model_and_processor):
    model, processor = model_and_processor
    vision_ids = vision_token_ids(processor)
    inputs = processor(images=[_image(7)], text=[_prompt_text(processor)], return_tensors="pt")
    prompt_len = inputs["input_ids"].shape[1]

    def force_vision_tokens(module, args, logits):  # +1e4 on the five vision tokens' logits
        return logits.index_add(-1, torch.tensor(vision_ids), torch.full((*logits.shape[:-1], 5), 1e4))

    model.lm_head.register_forward_hook(force_vision_tokens)
    with torch.no_grad():
        forced = model.generate(**inputs, max_new_tokens=6, suppress_tokens=[])[0, prompt_len:].tolist()
        default = model.generate(**inputs, max_new_tokens=6)[0, prompt_len:].tolist()
    assert forced[0] in vision_ids  # the hook does force them when nothing is suppressed
    assert len(default) > 0 and not set(default) & set(vision_ids)
    assert sorted(model.generation_config.suppress_tokens) == sorted(vision_ids)


def test_vision_token_ids_match_the_model_config(model_and_processor):
    model, processor = model_and_processor
    ids = vision_token_ids(processor)
    assert ids == processor.tokenizer.convert_tokens_to_ids(list(VISION_SPECIAL_TOKENS))
    config = model.config
    assert [ids[0], ids[1], ids[3], ids[4]] == [
        config.vision_start_token_id, config.vision_end_token_id, config.image_token_id, config.video_token_id
    ]
    assert vision_token_ids(processor.tokenizer) == ids
    plain = Qwen2Tokenizer(vocab={"a": 0, "<|endoftext|>": 1}, merges=[])
    with pytest.raises(ValueError, match=r"the tokenizer has no \['<\|vision_start\|>', "):
        vision_token_ids(plain)


def test_teacher_forced_forward_backward(model_and_processor):
    model, processor = model_and_processor
    model.train()
    questions = ["How many red shapes?", "What colour is the square?"]
    answers = ["<think>There are 3 red shapes.</think>\\boxed{3}", "<think>It is blue.</think>\\boxed{blue}"]
    images = [[_image(8)], [_image(9)]]
    prompts = [_prompt_text(processor, q) for q in questions]
    full = [p + a + "<|im_end|>" for p, a in zip(prompts, answers)]
    batch = processor(images=images, text=full, padding=True, padding_side="right", return_tensors="pt")
    # Prompt lengths measured after processing: the image placeholder expands to 16 tokens.
    prompt_lens = [processor(images=i, text=[p])["input_ids"][0].__len__() for i, p in zip(images, prompts)]
    labels = batch["input_ids"].clone()
    for row, n in enumerate(prompt_lens):
        labels[row, :n] = -100
    labels[batch["attention_mask"] == 0] = -100
    out = model(**batch, labels=labels)
    # Reference loss: next-token cross-entropy over the completion tokens only.
    logits = out.logits[:, :-1]  # (B, L-1, V)
    reference = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.isfinite(out.loss) and torch.allclose(out.loss, reference, atol=1e-5)
    out.loss.backward()
    patch_grad = model.model.visual.patch_embed.proj.weight.grad
    embed_grad = model.model.language_model.embed_tokens.weight.grad
    assert patch_grad is not None and patch_grad.abs().sum() > 0  # the image reaches the loss
    assert embed_grad is not None and embed_grad.abs().sum() > 0


def test_logits_depend_on_the_image(model_and_processor):
    model, processor = model_and_processor
    text = [_prompt_text(processor)]
    with torch.no_grad():
        clean = model(**processor(images=[_image(10)], text=text, return_tensors="pt")).logits
        noisy = model(**processor(images=[_noisy(_image(10), seed=11)], text=text, return_tensors="pt")).logits
    assert clean.shape == noisy.shape and not torch.allclose(clean[:, -1], noisy[:, -1])


# ---------------------------------------------------------------------------------------- spec and CLI


def test_mrope_section_keeps_qwen3vl_proportions():
    # Qwen3-VL: head_dim 128 -> [24, 20, 20]; 20/64 of 16 = 5 (floor), the rest (6) to time.
    assert mrope_section(128) == [24, 20, 20]
    assert mrope_section(32) == [6, 5, 5]
    assert mrope_section(16) == [4, 2, 2]


def test_spec_validation_messages():
    with pytest.raises(ValueError, match="image_size must be a multiple of patch_size \\* merge_size = 32, got 100"):
        TinyQwen3VLSpec(image_size=100)
    with pytest.raises(ValueError, match=r"image_size\*\*2 = 262144 must lie in \[min_pixels, max_pixels\]"):
        TinyQwen3VLSpec(image_size=512)
    with pytest.raises(ValueError, match=r"deepstack_layers \[2\] are not in \[0, vision_depth=2\)"):
        TinyQwen3VLSpec(deepstack_layers=(2,))
    with pytest.raises(ValueError, match=r"\['text_layers'\] must be > 0, got \[0\]"):
        TinyQwen3VLSpec(text_layers=0)


def test_build_refuses_bad_arguments(tmp_path, tiny_model_dir):
    with pytest.raises(FileExistsError, match="is not empty; pass overwrite=True"):
        build_tiny_qwen3vl(tiny_model_dir, corpus=["a b"])
    with pytest.raises(TypeError, match=r"corpus must hold strings; items \(index, type\) \[\(1, 'int'\)\] are not"):
        build_tiny_qwen3vl(tmp_path / "a", corpus=["a", 3])
    with pytest.raises(ValueError, match="corpus is empty"):
        build_tiny_qwen3vl(tmp_path / "b", corpus=[])
    with pytest.raises(TypeError, match="spec must be a TinyQwen3VLSpec, got dict"):
        build_tiny_qwen3vl(tmp_path / "c", corpus=["a"], spec={"vocab_size": 300})


def test_cli_builds_a_loadable_smaller_model(tmp_path, capsys):
    out = tmp_path / "cli_model"
    argv = ["--out", str(out), "--seed", "2", "--vocab-size", "300", "--text-hidden-size", "64",
            "--text-head-dim", "16", "--vision-hidden-size", "64", "--deepstack-layers", "1",
            "--tie-word-embeddings", "false"]
    assert cli_main(argv) == 0
    assert f"built {out}:" in capsys.readouterr().out
    info = json.loads((out / BUILD_INFO_FILE).read_text())
    expected = replace(TinyQwen3VLSpec(), vocab_size=300, text_hidden_size=64, text_head_dim=16,
                       vision_hidden_size=64, deepstack_layers=(1,), tie_word_embeddings=False)
    assert info["spec"] == {**asdict(expected), "deepstack_layers": [1]}
    assert info["seed"] == 2 and info["corpus"]["source"] == "roma.data.synthetic.tokenizer_corpus"
    model, processor = load_model_and_processor(out)
    assert model.config.text_config.hidden_size == 64
    assert model.config.text_config.rope_parameters["mrope_section"] == [4, 2, 2]
    assert info["parameters"]["lm_head_untied"] == model.lm_head.weight.numel()
    inputs = processor(images=[_image(12)], text=[_prompt_text(processor)], return_tensors="pt")
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=3).shape[1] == inputs["input_ids"].shape[1] + 3


def test_cli_reports_spec_errors(tmp_path, capsys):
    assert cli_main(["--out", str(tmp_path / "x"), "--image-size", "100"]) == 2
    assert "image_size must be a multiple of patch_size * merge_size = 32, got 100" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ TRL compat


def test_trl_sft_collator_masks_all_but_the_assistant_turn(model_and_processor, tmp_path):
    # assistant_only_loss needs {% generation %} markers in the template, with <|im_end|> inside them.
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, processor = model_and_processor
    answer = "<think>There are 3 red shapes.</think>\\boxed{3}"
    rows = [{"messages": make_prompt("How many red shapes?") + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}],
             "images": [_image(13)]}]
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], max_length=None,
                     assistant_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    trained = batch["input_ids"][0][batch["labels"][0] != -100]
    assert processor.tokenizer.decode(trained) == answer + "<|im_end|>"
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]]


def test_trl_grpo_trainer_runs_a_step(model_and_processor, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, processor = model_and_processor
    rows = [{"prompt": make_prompt(f"How many red shapes? ({i})"), "image": _image(20 + i), "answer": "3"}
            for i in range(2)]
    seen: list[str] = []

    def length_reward(completions, answer, **_):
        seen.extend(c[0]["content"] for c in completions)
        return [float(len(c[0]["content"]) % 3) for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=6, max_steps=1, use_cpu=True, bf16=False, report_to=[],
                      save_strategy="no", generation_kwargs={"suppress_tokens": vision_token_ids(processor)})
    trainer = GRPOTrainer(model=model, reward_funcs=length_reward, args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=processor)
    result = trainer.train()
    assert result.global_step == 1 and len(seen) == 4


@pytest.mark.parametrize(
    "prelude",
    [
        "import roma\nfrom transformers import AutoProcessor\n",
        "from transformers import AutoProcessor\nimport roma\n",
        "import roma, transformers\nAutoProcessor = transformers.AutoProcessor\n",
    ],
    ids=["roma-first", "transformers-first", "attribute-access"],
)
def test_import_roma_registers_the_processor_in_any_import_order(tiny_model_dir, prelude):
    # A fresh interpreter: in this test process roma.models is already imported, which would hide
    # a registration that only happens through that import.
    code = prelude + f"print(type(AutoProcessor.from_pretrained({str(tiny_model_dir)!r})).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Qwen3VLImageOnlyProcessor"


def test_import_roma_and_its_light_modules_load_neither_torch_nor_transformers():
    code = "import sys, roma, roma.rewards, roma.degrade; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
