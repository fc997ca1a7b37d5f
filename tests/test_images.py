"""Images as users have them (roma.data.images): one decode/convert path for the rollout, the views, ``roma
eval``, ``roma degrade`` and the benchmark loaders; rows a model cannot use skipped and listed (eval) or
refused up front (train); prompts with several images. Each kind is tested with the input that failed."""

from __future__ import annotations

import io
import json
import time

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from roma.data import images as roma_images
from roma.data.schema import make_prompt, with_image_parts
from roma.data.synthetic import generate
from roma.degrade import SEEN, derive_seed, to_rgb
from roma.eval import evaluate
from roma.eval.protocol import Condition, make_view
from roma.models import load_model_and_processor, vision_token_ids
from roma.train import RomaConfig, RomaTrainer
from roma.train import views as views_module
from test_trainer import LossInputs


def encoded(image: Image.Image, fmt: str = "PNG", **save) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return {"bytes": buffer.getvalue(), "path": None}


def oriented_jpeg() -> bytes:
    """A JPEG stored 128 wide × 64 tall with EXIF Orientation = 6 (shown rotated: 64 wide × 128 tall);
    the left half red, the right half blue as stored."""
    pixels = np.zeros((64, 128, 3), np.uint8)
    pixels[:, :64] = (255, 0, 0)
    pixels[:, 64:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)["bytes"]


def grey16_ramp(width: int = 64, height: int = 64) -> Image.Image:
    """16-bit grey (``I;16``), a horizontal ramp 0 … 65535."""
    ramp = np.round(np.linspace(0, 65535, width)).astype(np.uint16)
    return Image.fromarray(np.tile(ramp, (height, 1)))


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_model_and_processor(tiny_model_dir)[1]


class StubGenerator:
    """``generator(prompts, images)`` answering ``\\boxed{A}``, recording what it was given; has the processor."""

    def __init__(self, processor=None):
        self.processor, self.prompts, self.images = processor, [], []

    def __call__(self, prompts, images):
        self.prompts += list(prompts)
        self.images += list(images)
        return ["\\boxed{A}"] * len(prompts)


def eval_rows(images, ids=None, answers=None) -> datasets.Dataset:
    """Rows of roma's schema, one per entry of ``images`` (a PIL image / encoded cell, or a list of them)."""
    n = len(images)
    ids = ids or [f"r{i}" for i in range(n)]
    answers = answers or ["A"] * n
    several = any(isinstance(entry, list) for entry in images)
    rows = {
        "id": ids, "task": ["t"] * n, "answer": answers, "choices": [["w", "x", "y", "z"]] * n,
        "answer_type": ["choice"] * n, "tolerance": [0.0] * n,
        "prompt": [with_image_parts(make_prompt("Which?", ["w", "x", "y", "z"]), len(e) if several else 1)
                   for e in images],
    }
    column = "images" if several else "image"
    rows[column] = images
    dataset = datasets.Dataset.from_dict(rows)
    return dataset.cast_column(column, datasets.List(datasets.Image()) if several else datasets.Image())


def roma_args(tmp_path, processor, **overrides) -> RomaConfig:
    kwargs = dict(
        output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=4, max_steps=1, logging_steps=1, report_to=[], save_strategy="no",
        gradient_checkpointing=False, learning_rate=1e-3, seed=0, disable_tqdm=True,
        generation_kwargs={"suppress_tokens": vision_token_ids(processor)}, success_reward="id_parity_reward",
    )
    return RomaConfig(**{**kwargs, **overrides})


def id_parity_reward(completions, id, **kwargs):
    """1.0 for the examples with an even index (ids 'c<index>'): success names the example."""
    return [float(int(example_id[1:]) % 2 == 0) for example_id in id]


def trainer_for(model_dir, args, dataset):
    model, processor = load_model_and_processor(model_dir)
    return RomaTrainer(model=model, reward_funcs=[id_parity_reward], args=args, train_dataset=dataset,
                       processing_class=processor)


# ------------------------------------------------------------------------------------ the one path


def test_rgb_images_pass_unchanged():
    """The synthetic suite's plain RGB images are handed on as the very same objects (the demo is unchanged)."""
    rows = generate(4, seed=3)
    for row in rows:
        assert roma_images.prepare_row_images(row) == [row["image"]]
        assert roma_images.prepare_image(row["image"]) is row["image"]
        assert roma_images.with_images(row, [row["image"]])["image"] is row["image"]


def test_every_mode_becomes_rgb_by_one_rule():
    ramp = grey16_ramp(4, 1)  # 0, 21845, 43690, 65535 -> 0, 85, 170, 255
    assert np.asarray(roma_images.prepare_image(ramp))[0, :, 0].tolist() == [0, 85, 170, 255]
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))  # transparent -> white, as the processor's convert_to_rgb
    assert np.asarray(roma_images.prepare_image(rgba)).tolist() == [[[255, 255, 255]] * 2]
    for mode in ("P", "LA", "CMYK", "1", "L", "I", "F", "YCbCr"):
        assert roma_images.prepare_image(Image.new(mode, (3, 2))).mode == "RGB"
    with pytest.raises(roma_images.ImageError, match=r"undecodable image"):
        roma_images.prepare_image({"bytes": b"\x89PNG broken", "path": None})
    with pytest.raises(roma_images.ImageError, match=r"no image \(None\)"):
        roma_images.prepare_image(None)


def test_exif_orientation_is_applied_once_at_decode_everywhere(tmp_path, processor, monkeypatch):
    """Kind 2: Orientation = 6, stored 128×64 — training (datasets) saw it rotated, eval and degrade did not."""
    raw = oriented_jpeg()
    upright = roma_images.prepare_image({"bytes": raw, "path": None})
    assert upright.size == (64, 128)  # (width, height): rotated 90° clockwise
    top = np.asarray(upright)[2, 32]  # the stored left (red) half is now on top
    assert top[0] > 200 and top[2] < 60
    assert roma_images.prepare_image(upright).size == (64, 128)  # applying it again changes nothing
    # training: datasets decodes the column (and applies the tag); the trainer's path keeps the same picture
    decoded = datasets.Dataset.from_dict({"image": [{"bytes": raw, "path": None}]},
                                         features=datasets.Features({"image": datasets.Image()}))[0]["image"]
    assert roma_images.prepare_image(decoded).size == (64, 128)
    # eval: the generator gets the upright image, so the vision-token grid is the one training sees
    stub = StubGenerator(processor)
    evaluate(None, [("exif", eval_rows([{"bytes": raw, "path": None}]))], settings=("clean",), generator=stub,
             progress=False, report=False)
    (seen,) = stub.images
    assert seen.size == (64, 128)
    grids = [processor.image_processor(images=[image])["image_grid_thw"].tolist() for image in (seen, decoded)]
    assert grids[0] == grids[1]
    # roma degrade reads its file through the same path
    path = tmp_path / "oriented.jpg"
    path.write_bytes(raw)
    sizes = []
    from roma.degrade import cli as degrade_cli

    def capture(image, **kwargs):
        sizes.append(image.size)
        raise ValueError("stop here")

    monkeypatch.setattr(degrade_cli, "render_grid", capture)
    assert degrade_cli.main([str(path), "--out", str(tmp_path / "g.png")]) == 2
    assert sizes == [(64, 128)]
    # roma degrade-dataset's copies (and their replay) are upright too
    from roma.degrade.dataset import degrade_encoded, replay

    png, params, shape = degrade_encoded(raw, "jpeg", 1, seed=0)
    assert shape == (128, 64) and Image.open(io.BytesIO(png)).size == (64, 128)
    assert np.array_equal(replay({"type": "jpeg", "params": params}, raw), np.asarray(Image.open(io.BytesIO(png))))


def test_huge_images_are_capped_at_the_processors_budget(processor):
    """Kind 8: a 10000×10000 image is resized to the processor's max_pixels before anything degrades it."""
    budget = roma_images.processor_max_pixels(processor.image_processor)
    assert budget == processor.image_processor.size.longest_edge == 65536
    huge = Image.new("RGB", (10000, 10000), (90, 120, 150))
    start = time.perf_counter()
    (capped,) = roma_images.prepare_row_images({"image": huge}, processor.image_processor)
    view, _ = make_view(capped, Condition("seen", "gaussian_blur", 3), seed=0, example_id="huge")
    seconds = time.perf_counter() - start
    assert capped.size == (256, 256) and capped.width * capped.height <= budget
    assert view.size == (256, 256)
    assert seconds < 30, seconds  # was ~4 minutes through the degradations without the cap
    assert roma_images.cap_pixels(huge, None) is huge


def test_processor_problems_are_found_from_the_size_and_padding_fixes_them(processor):
    ip = processor.image_processor
    assert roma_images.processor_problem(20000, 20, ip) == (
        "the image processor refuses a 20000×20 image: absolute aspect ratio must be smaller than 200, got 1000.0"
    )
    assert roma_images.processor_problem(64, 1, ip) is None
    padded = roma_images.fit_for_processor(Image.new("RGB", (20000, 20), (0, 0, 0)))
    assert padded.size == (20000, 100) and roma_images.processor_problem(*padded.size, ip) is None
    assert np.asarray(padded)[0, 0].tolist() == [255, 255, 255] and np.asarray(padded)[50, 0].tolist() == [0, 0, 0]
    with pytest.raises(roma_images.ImageError, match=r"refuses a 20000×20 image.*image_fit='pad' pads it instead"):
        roma_images.prepare_row_images({"image": Image.new("RGB", (20000, 20))}, ip)


# ------------------------------------------------------------------------------------ evaluation


def test_eval_skips_and_lists_rows_it_cannot_use_and_converts_32bit_tiffs(tmp_path, processor):
    """Kinds 4 and 5: a 20000×20 image, an undecodable one and a row without an image are skipped, counted
    and listed (summary.json, report.md); 32-bit TIFFs (modes I and F) are converted by their range."""
    good = Image.new("RGB", (64, 64), (10, 200, 30))
    tiff_i = encoded(Image.fromarray(np.array([[0, 1 << 20], [1 << 21, 1 << 22]] * 16, np.int32).repeat(32, 1)),
                     "TIFF")
    tiff_f = encoded(Image.fromarray(np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)), "TIFF")
    cells = [encoded(good), encoded(Image.new("RGB", (20000, 20))), {"bytes": b"II*\x00 broken", "path": None},
             tiff_i, tiff_f, None]
    stub = StubGenerator(processor)
    out = tmp_path / "out"
    summary = evaluate(None, [("users", eval_rows(cells))], settings=("clean", "seen"), generator=stub,
                       out_dir=out, progress=False)
    skipped = {item["id"]: item["reason"] for item in summary["skipped"]["users"]}
    assert sorted(skipped) == ["r1", "r2", "r5"]
    assert "refuses a 20000×20 image: absolute aspect ratio must be smaller than 200" in skipped["r1"]
    assert skipped["r2"].startswith("undecodable image") and skipped["r5"] == "the row has no image"
    assert summary["counts"]["skipped_examples"] == {"users": 3}
    assert summary["benchmarks"]["users"]["n_examples"] == 3  # r0, r3, r4
    assert json.loads((out / "summary.json").read_text())["skipped"]["users"] == summary["skipped"]["users"]
    report = (out / "report.md").read_text()
    assert "users: 3 example(s) skipped: `r1` (the image processor refuses a 20000×20 image" in report
    assert "`r2` (undecodable image" in report and "`r5` (the row has no image)" in report
    clean = {r["id"]: r for r in (json.loads(line) for line in (out / "records.jsonl").read_text().splitlines())
             if r["setting"] == "clean"}
    assert sorted(clean) == ["r0", "r3", "r4"] and all(r["n_images"] == 1 for r in clean.values())
    # the TIFFs reached the model as RGB, scaled by their data range (min -> 0, max -> 255)
    for image in (stub.images[5], stub.images[10]):  # example-major: r0, r3, r4 under clean + 4 seen types
        pixels = np.asarray(image)
        assert image.mode == "RGB" and pixels.min() == 0 and pixels.max() == 255
    # a rerun reuses every record and skips the same rows again, without stopping
    again = evaluate(None, [("users", eval_rows(cells))], settings=("clean", "seen"), generator=StubGenerator(processor),
                     out_dir=out, progress=False)
    assert again["counts"]["generated"] == 0 and sorted(i["id"] for i in again["skipped"]["users"]) == sorted(skipped)
    # image_fit="pad" evaluates the 20000×20 row instead
    padded = evaluate(None, [("users", eval_rows(cells[:2]))], settings=("clean",), generator=StubGenerator(processor),
                      progress=False, report=False, image_fit="pad")
    assert padded["skipped"]["users"] == [] and padded["benchmarks"]["users"]["n_examples"] == 2


def test_duplicate_ids_are_made_unique_before_anything_is_keyed(processor):
    """Kind 6: four rows, two sharing an id, one answered right: 4 examples, accuracy 0.25 (was 3 and 0.333)."""
    images = [Image.new("RGB", (32, 32), (c, c, c)) for c in (10, 80, 150, 220)]
    rows = eval_rows(images, ids=["a", "b", "b", "c"], answers=["A", "B", "C", "D"])
    summary = evaluate(None, [("dupes", rows)], settings=("clean",), generator=StubGenerator(processor),
                       progress=False, report=False)
    bench = summary["benchmarks"]["dupes"]
    assert bench["n_examples"] == 4 and bench["clean"]["acc"] == 0.25 and summary["counts"]["records"] == 4


def test_eval_degrades_every_image_of_a_row(processor):
    """Kind 7 in eval: a row with images [a, b] shows both, each degraded by the condition's type."""
    a, b = Image.new("RGB", (64, 64), (40, 40, 40)), Image.new("RGB", (32, 96), (200, 200, 200))
    stub = StubGenerator(processor)
    summary = evaluate(None, [("pairs", eval_rows([[a, b]]))], settings=("clean", "seen"), levels=(3,),
                       generator=stub, progress=False, report=False)
    assert summary["skipped"]["pairs"] == []
    clean, *degraded = stub.images
    assert [image.size for image in clean] == [(64, 64), (32, 96)]
    assert [np.asarray(image).tolist() for image in clean] == [np.asarray(a).tolist(), np.asarray(b).tolist()]
    noisy = degraded[0]  # gaussian_noise at level 3 on both images, each with its own noise
    assert len(noisy) == 2 and all(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(noisy, (a, b)))
    expected = make_view(b, Condition("seen", "gaussian_noise", 3), seed=0, example_id="r0", image_index=1)[0]
    assert np.array_equal(np.asarray(noisy[1]), np.asarray(expected))


# ------------------------------------------------------------------------------------ training


def test_training_refuses_unusable_rows_up_front_naming_them(tiny_model_dir, tmp_path, processor):
    """Kinds 4 and 6 and rows without an image: refused before the first step, the rows named."""
    good = [Image.new("RGB", (64, 64), (c, c, c)) for c in (10, 90, 170)]
    rows = {"id": ["c0", "c1", "c1", "c3"], "image": [good[0], Image.new("RGB", (20000, 20)), good[1], None],
            "prompt": [make_prompt("Which?")] * 4, "answer": ["1"] * 4}
    dataset = datasets.Dataset.from_dict(rows)
    with pytest.raises(ValueError, match=r"3 problem\(s\) with training rows: 'c1': the image processor refuses a "
                                         r"20000×20 image.*'c1': repeats the id of row 1.*'c3': has no image"):
        trainer_for(tiny_model_dir, roma_args(tmp_path, processor), dataset)
    fine = dataset.select([0, 1])
    with pytest.raises(ValueError, match=r"'c1': the image processor refuses a 20000×20 image"):
        trainer_for(tiny_model_dir, roma_args(tmp_path, processor), fine)
    trainer = trainer_for(tiny_model_dir, roma_args(tmp_path, processor, image_fit="pad"), fine)
    (padded,) = trainer._prepare_images([fine[1]])
    # capped to the 65536-px budget (20000×20 · 0.4048 → 8095×8), then padded to ceil(8095 / 200) = 41 px tall
    assert padded["image"].size == (8095, 41)


def test_16bit_grey_clean_pass_and_views_see_the_same_picture(tiny_model_dir, tmp_path, processor):
    """Kind 1: an ``I;16`` ramp. TRL's clean pixel_values come from roma's conversion (not Pillow's clamp),
    and the views degrade that same RGB image."""
    ramp = grey16_ramp()
    dataset = datasets.Dataset.from_dict(
        {"id": ["c0", "c1"], "image": [encoded(ramp), encoded(ramp)], "prompt": [make_prompt("Which?")] * 2,
         "answer": ["1"] * 2}
    ).cast_column("image", datasets.Image())
    assert dataset[0]["image"].mode.startswith("I;16") or dataset[0]["image"].mode == "I"
    trainer = trainer_for(tiny_model_dir, roma_args(tmp_path, processor), dataset)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = trainer._prepare_inputs([dataset[i] for i in (0, 0, 1, 1)])
    ip = processor.image_processor
    scaled = Image.fromarray(to_rgb(ramp))
    expected = ip(images=[scaled], return_tensors="pt")["pixel_values"]  # (rows, D)
    clamped = ip(images=[ramp.convert("RGB")], return_tensors="pt")["pixel_values"]
    assert not torch.equal(expected, clamped)  # Pillow's own conversion is almost white
    rows = expected.shape[0]
    for i in range(4):
        assert torch.equal(inputs["pixel_values"][i * rows : (i + 1) * rows], expected)
    views = views_module.make_views(trainer.args, 0, [{"id": "c0", "image": scaled}], inputs["image_grid_thw"][:1], ip)
    assert any(torch.equal(v, views["roma_view_pixel_values"][0]) for v in inputs["roma_view_pixel_values"])


@pytest.mark.parametrize("height", [4, 3, 1])
def test_views_of_thin_images_keep_the_clean_grid(tmp_path, processor, height):
    """Kind 3: 4×64, 3×64 and 1×64 images — views reach the processor as PIL images, so no channel axis is
    guessed and each view has its clean image's grid."""
    ip = processor.image_processor
    image = Image.fromarray(np.random.default_rng(height).integers(0, 256, (height, 64, 3), dtype=np.uint8))
    clean = ip(images=[image], return_tensors="pt")
    args = roma_args(tmp_path, processor)
    out = views_module.make_views(args, 0, [{"id": "thin", "image": image}], clean["image_grid_thw"], ip)
    (views,) = out["roma_view_pixel_values"]
    assert views.shape == (args.roma_views, *clean["pixel_values"].shape)


def two_image_dataset(n: int) -> datasets.Dataset:
    """Example i: image a, 64×64 of grey 40 + 12·i, and image b, 4×64 (thin) of grey 240 − 12·i; id 'c<i>'."""
    a = [Image.new("RGB", (64, 64), (40 + 12 * i,) * 3) for i in range(n)]
    b = [Image.new("RGB", (64, 4), (240 - 12 * i,) * 3) for i in range(n)]
    return datasets.Dataset.from_dict({
        "id": [f"c{i}" for i in range(n)], "images": [[a[i], b[i]] for i in range(n)],
        "prompt": [with_image_parts(make_prompt(f"Which grey levels in pair {i}?"), 2) for i in range(n)],
        "answer": ["A"] * n, "task": ["pairs"] * n, "choices": [["x", "y"]] * n, "answer_type": ["choice"] * n,
        "tolerance": [0.0] * n,
    })


def test_two_image_prompts_train_with_their_views_and_evaluate_end_to_end(tiny_model_dir, tmp_path, processor):
    """Kind 7 and the multi-image build: prompts of two distinguishable images (grey levels; the second 4 px
    tall) through TRL's shuffle, gradient accumulation and num_iterations. Every view of every image stays
    with its sample; the shared view encoding gives pass 2's loss; then the trained model is evaluated."""
    dataset = two_image_dataset(8)
    args = roma_args(tmp_path, processor, gradient_accumulation_steps=2, num_iterations=2, max_steps=3)
    model, _ = load_model_and_processor(tiny_model_dir)
    trainer = LossInputs(model=model, reward_funcs=[id_parity_reward], args=args, train_dataset=dataset,
                         processing_class=processor)
    trainer.train()
    assert len(trainer.seen) == 6 and trainer.generation_steps == [0, 2]
    assert all(np.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)
    ip = processor.image_processor
    clean = [ip(images=dataset[i]["images"], return_tensors="pt") for i in range(8)]
    orders = []
    for step, inputs in trainer.seen:
        assert inputs["num_images"] == [2] * len(inputs["num_images"])
        per_sample = torch.split(inputs["pixel_values"], [clean[0]["pixel_values"].shape[0]] * len(inputs["num_images"]))
        order = []
        for i, views in enumerate(inputs["roma_view_pixel_values"]):
            index = next(j for j in range(8) if torch.equal(per_sample[i], clean[j]["pixel_values"]))
            current, trainer.state.global_step = trainer.state.global_step, step
            try:
                expected = trainer._make_views([dataset[index]], clean[index]["image_grid_thw"], [2])
            finally:
                trainer.state.global_step = current
            assert torch.equal(views, expected["roma_view_pixel_values"][0])  # (K, rows_a + rows_b, D)
            assert inputs["roma_view_params"][i] == expected["roma_view_params"][0]
            assert all(len(params) == 2 for params in inputs["roma_view_params"][i])  # one dict per image
            assert bool(inputs["roma_success"][i]) == (index % 2 == 0)
            order.append(index)
        orders.append(order)
    assert any(order[j] != order[j + 1] for order in orders for j in range(0, len(order), 2))
    # the shared encoding and the per-sequence encoding give the same pass-2 loss on a two-image batch
    inputs = {**trainer.seen[-1][1], "roma_success": torch.ones_like(trainer.seen[-1][1]["roma_success"])}
    losses = []
    for share in (True, False):
        trainer.args.share_view_encoding = share
        with torch.no_grad():
            losses.append(trainer._roma_loss(inputs, torch.zeros_like(inputs["completion_mask"], dtype=torch.float32), "eval"))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    # evaluate the trained policy on the same two-image rows
    summary = evaluate((trainer.model, processor), [("pairs", dataset.select(range(2)))], settings=("clean", "seen"),
                       max_new_tokens=4, batch_size=5, progress=False, report=False)
    assert summary["skipped"]["pairs"] == [] and summary["counts"]["records"] == 2 * 5


def test_sft_rows_take_the_same_path():
    """SFT shows the model what RL and evaluation show it: upright RGB; the synthetic RGB images unchanged."""
    from roma.sft import to_sft_rows

    rows = generate(2, seed=3)
    sft = to_sft_rows(rows)
    assert [np.asarray(r["image"]).tolist() for r in sft] == [np.asarray(r["image"]).tolist() for r in rows]
    users = datasets.Dataset.from_dict(
        {"image": [{"bytes": oriented_jpeg(), "path": None}, encoded(grey16_ramp(4, 1))],
         "prompt": [make_prompt("Which?")] * 2, "solution": ["<think>x</think>\\boxed{A}"] * 2}
    ).cast_column("image", datasets.Image())
    converted = to_sft_rows(users)
    assert converted[0]["image"].size == (64, 128) and converted[0]["image"].mode == "RGB"
    assert np.asarray(converted[1]["image"])[0, :, 0].tolist() == [0, 85, 170, 255]


def test_roma_eval_lists_skipped_rows_on_the_console_and_pads_on_request(tiny_model_dir, tmp_path, capsys):
    """Kind 4 through ``roma eval``: the run finishes (exit 0) and names the 20000×20 row on the console;
    ``--image-fit pad`` evaluates it."""
    from roma.eval.cli import main as eval_main

    rows = [{"image": encoded(Image.new("RGB", size, (20, 90, 200))), "question": "How many?", "answer": "2"}
            for size in ((64, 64), (20000, 20), (64, 48))]
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "realworldqa"))
    argv = ["--model", str(tiny_model_dir), "--data", str(tmp_path / "realworldqa"), "--settings", "clean",
            "--max-new-tokens", "2", "--no-progress"]
    assert eval_main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert "realworldqa: skipped 1 item(s): realworldqa-1 (the image processor refuses a 20000×20 image" in (
        capsys.readouterr().out
    )
    assert eval_main([*argv, "--out", str(tmp_path / "padded"), "--image-fit", "pad"]) == 0
    summary = json.loads((tmp_path / "padded" / "summary.json").read_text())
    assert summary["skipped"]["realworldqa"] == [] and summary["counts"]["records"] == 3


@pytest.mark.parametrize("view_sampling", ["step", "example"])
def test_view_types_shared_or_independent_across_the_images_of_a_prompt(tmp_path, processor, view_sampling):
    """``shared``: view k degrades both images by one type, each with its own parameters, and image 0 exactly
    as if it were alone; ``independent``: image 1 draws its own K distinct types."""
    ip = processor.image_processor
    a, b = (Image.fromarray(np.random.default_rng(s).integers(0, 256, (32, 32, 3), dtype=np.uint8)) for s in (1, 2))
    clean = ip(images=[a, b], return_tensors="pt")["image_grid_thw"]
    out = {}
    for mode in ("shared", "independent"):
        args = roma_args(tmp_path, processor, view_image_types=mode, view_sampling=view_sampling)
        out[mode] = views_module.degraded_views(args, [a, b], "p", 3, views_module.step_view_plan(args, 3)[0])
        views_module.process_views(ip, out[mode], clean, "p")  # each image keeps its own grid
    alone = views_module.degraded_views(args, [a], "p", 3, views_module.step_view_plan(args, 3)[0])
    for (name, params, pixels), (name_a, params_a, pixels_a) in zip(out["shared"], alone):
        assert "+" not in name and name == name_a and params[0] == params_a
        assert np.array_equal(pixels[0], pixels_a) and not np.array_equal(pixels[0][:, :, 0], pixels[1][:, :, 0])
    second = [name.split("+")[-1] for name, _, _ in out["independent"]]
    assert len(set(second)) == args.roma_views  # K distinct types for image 1 too
    assert [name.split("+")[0] for name, _, _ in out["independent"]] == [name for name, _, _ in alone]
    order = np.random.default_rng(derive_seed(derive_seed(0, 3, "p"), "image", 1, "types")).permutation(len(SEEN))
    assert second == [SEEN[i] for i in order[: args.roma_views]]  # drawn from the view seed and the position
