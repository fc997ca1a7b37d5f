"""RomaConfig validation and RomaTrainer behaviour on the tiny Qwen3-VL (CPU, 1–2 steps per run).

Reference points: TRL's unmodified ``GRPOTrainer`` (``mode="grpo"`` and ``λ = 0`` must match it bit for
bit), and the full, all-views-with-autograd call of :func:`roma.losses.invariance_penalty` (the
trainer's cheap select-then-recompute path must give the same loss and gradients).
"""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from roma import losses
from roma.data.schema import make_prompt
from roma.data.synthetic import generate
from roma.degrade import SEEN, UNSEEN, derive_seed, sample_views
from roma.models import load_model_and_processor, vision_token_ids
from roma.train import RomaConfig, RomaTrainer
from roma.train import views as views_module
from roma.train.trainer import capture_first_return

NUM_VIEWS = 3


# ------------------------------------------------------------------------------------------ helpers


def alternating_reward(completions, **kwargs):
    """1.0 for every other completion: half of each group of 2 succeeds, so advantages are ±1, whatever the
    (random) model writes."""
    return [float(i % 2 == 0) for i in range(len(completions))]


def zero_reward(completions, **kwargs):
    return [0.0] * len(completions)


def one_reward(completions, **kwargs):
    """Every completion succeeds and every advantage is 0: only the invariance penalty has a gradient."""
    return [1.0] * len(completions)


def index_parity_reward(completions, id, **kwargs):
    """1.0 for the examples with an even index (ids 'c<index>'): success identifies the example."""
    return [float(int(example_id[1:]) % 2 == 0) for example_id in id]


def colour_dataset(n: int, size: int = 64) -> Dataset:
    """Example i: a constant image of grey level 60 + 12·i (distinguishable after processing), id 'c<i>'."""
    rows = {
        "id": [f"c{i}" for i in range(n)],
        "image": [Image.fromarray(np.full((size, size, 3), 60 + 12 * i, np.uint8)) for i in range(n)],
        "prompt": [make_prompt(f"What grey level is image {i}?") for i in range(n)],
        "answer": [str(i) for i in range(n)],
    }
    return Dataset.from_dict(rows)


@pytest.fixture(scope="module")
def synthetic_rows():
    return generate(8, seed=3)


@pytest.fixture(scope="module")
def suppress_ids(tiny_model_dir):
    _, processor = load_model_and_processor(tiny_model_dir)
    return vision_token_ids(processor)


def config_kwargs(tmp_path, suppress_ids, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=1,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        gradient_checkpointing=False,
        learning_rate=1e-3,
        seed=0,
        disable_tqdm=True,
        generation_kwargs={"suppress_tokens": suppress_ids},
    )
    kwargs.update(overrides)
    return kwargs


def roma_config(tmp_path, suppress_ids, **overrides) -> RomaConfig:
    overrides.setdefault("success_reward", "alternating_reward")
    return RomaConfig(**config_kwargs(tmp_path, suppress_ids, **overrides))


def make_trainer(model_dir, args, dataset, reward=alternating_reward, cls=RomaTrainer, **kwargs):
    model, processor = load_model_and_processor(model_dir)
    return cls(model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=processor, **kwargs)


class GradRecorder(TrainerCallback):
    """Snapshot every parameter's gradient just before each optimizer step."""

    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def params_of(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def micro_batch(trainer, dataset):
    """A local micro-batch as the loss sees it: generation, scoring, views, TRL's shuffle and split."""
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop, read by the loss
    rows = [dataset[i] for i in (0, 0, 1, 1)]  # RepeatSampler order: each prompt num_generations times
    return trainer._prepare_inputs(rows)


# ------------------------------------------------------------------------------------------ RomaConfig


def test_config_defaults_resolve_per_mode(tmp_path, suppress_ids):
    roma = roma_config(tmp_path, suppress_ids)
    assert (roma.mode, roma.roma_views, roma.lambda_kl, roma.lambda_aux) == ("roma", 3, 0.05, 0.1)
    assert (roma.worst_case, roma.kl_estimator, roma.kl_direction, roma.view_sampling) == ("batch", "k3", "forward", "step")
    assert roma.roma_agg == "token"  # TRL's default loss_type 'dapo' is a token mean
    assert roma.roma_terms_on
    grpo = roma_config(tmp_path, suppress_ids, mode="grpo")
    assert (grpo.lambda_kl, grpo.lambda_aux, grpo.roma_terms_on) == (0.0, 0.0, False)
    assert roma_config(tmp_path, suppress_ids, loss_type="grpo").roma_agg == "sequence"
    assert roma_config(tmp_path, suppress_ids, loss_type="dr_grpo").roma_agg == "fixed"
    assert not roma_config(tmp_path, suppress_ids, lambda_kl=0.0, lambda_aux=0.0).roma_terms_on
    document = roma_config(tmp_path, suppress_ids, degradation_pool="document", degradation_level="2", roma_views=3)
    assert (document.view_pool, document.degradation_level) == (("scan_skew", "ink_bleed", "binarize", "moire"), 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"roma_views": 5}, r"roma_views \(K\) must be in \[1, 4\].*seen pool has 4 \(gaussian_noise"),
        ({"roma_views": 0}, r"roma_views \(K\) must be in \[1, 4\]"),
        ({"roma_views": 6, "degradation_pool": "unseen", "degradation_level": "2"}, r"must be in \[1, 5\]"),
        ({"mode": "roma_plus"}, r"mode must be one of \['roma', 'grpo', 'naive_aug'\], got 'roma_plus'"),
        ({"worst_case": "max"}, r"worst_case must be one of \['batch', 'sequence', 'token', 'mean'\], got 'max'"),
        ({"kl_estimator": "k4"}, r"kl_estimator must be one of \['k1', 'k2', 'k3'\], got 'k4'"),
        ({"degradation_level": "4"}, r"degradation_level must be one of \[1, 2, 3, 'train'\], got '4'"),
        ({"degradation_pool": "unseen"}, r"degradation_level='train' needs degradation_pool='seen'"),
        ({"degradation_pool": "document"}, r"needs degradation_pool='seen': the document types have no training"),
        ({"degradation_pool": "weather", "degradation_level": "2"},
         r"degradation_pool must be one of \['seen', 'unseen', 'imagenet-c', 'geometric', 'capture', 'document', 'all'\]"),
        ({"roma_views": 4, "degradation_pool": "geometric", "degradation_level": "1"}, r"must be in \[1, 3\]"),
        ({"lambda_kl": -0.1}, r"lambda_kl must be a finite number >= 0, got -0.1"),
        ({"lambda_aux": math.nan}, r"lambda_aux must be a finite number >= 0, got nan"),
        ({"mode": "naive_aug", "lambda_kl": 0.05}, r"lambda_kl=0.05 has no effect with mode='naive_aug'"),
        ({"mode": "grpo", "lambda_aux": 0.1}, r"lambda_aux=0.1 has no effect with mode='grpo'"),
        ({"roma_agg": "sum"}, r"roma_agg must be one of \['token', 'sequence', 'fixed'\] or None, got 'sum'"),
        ({"success_reward": ""}, r"success_reward must name a reward function, got ''"),
        ({"view_seed": -1}, r"view_seed must be an int >= 0, got -1"),
        ({"correct_threshold": math.inf}, r"correct_threshold must be a finite number, got inf"),
        ({"view_batch_size": 0}, r"view_batch_size must be an int >= 1 or None, got 0"),
        ({"share_view_encoding": "yes"}, r"share_view_encoding must be a bool, got 'yes'"),
    ],
)
def test_config_rejects_invalid_options(tmp_path, suppress_ids, overrides, message):
    with pytest.raises(ValueError, match=message):
        roma_config(tmp_path, suppress_ids, **overrides)


def test_a_level_is_an_int_or_train_and_its_text_form_is_accepted(tmp_path, suppress_ids):
    for level in (3, "3"):
        args = roma_config(tmp_path, suppress_ids, degradation_pool="unseen", degradation_level=level, roma_views=2)
        assert args.degradation_level == 3 and type(args.degradation_level) is int
    assert roma_config(tmp_path, suppress_ids).degradation_level == "train"
    for level in (True, 3.0, "03", 0):
        with pytest.raises(ValueError, match=r"degradation_level must be one of \[1, 2, 3, 'train'\], got "):
            roma_config(tmp_path, suppress_ids, degradation_level=level)


def test_trainer_needs_the_success_reward(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    args = roma_config(tmp_path, suppress_ids, success_reward="accuracy_reward")
    with pytest.raises(ValueError, match=r"success_reward='accuracy_reward' is not among the reward functions \['alternating_reward'\]"):
        make_trainer(tiny_model_dir, args, synthetic_rows)
    # Without the ROMA terms the success reward is optional (only the success rate is not logged).
    make_trainer(tiny_model_dir, roma_config(tmp_path, suppress_ids, mode="grpo", success_reward="accuracy_reward"), synthetic_rows)
    with pytest.raises(TypeError, match=r"RomaTrainer needs args=RomaConfig\(...\), got GRPOConfig"):
        make_trainer(tiny_model_dir, GRPOConfig(**config_kwargs(tmp_path, suppress_ids)), synthetic_rows)


def test_shared_view_encoding_needs_a_model_that_takes_encoder_outputs(
    tiny_model_dir, tmp_path, suppress_ids, synthetic_rows
):
    model, processor = load_model_and_processor(tiny_model_dir)

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, image_grid_thw=None, **kwargs):
        raise AssertionError("not called")

    model.__class__ = type("OldVLM", (type(model),), {"forward": forward})
    args = roma_config(tmp_path, suppress_ids)
    with pytest.raises(ValueError, match=r"OldVLM.forward does not take; set share_view_encoding=False"):
        RomaTrainer(model=model, reward_funcs=[alternating_reward], args=args, processing_class=processor,
                    train_dataset=synthetic_rows)
    args = roma_config(tmp_path, suppress_ids, share_view_encoding=False)
    RomaTrainer(model=model, reward_funcs=[alternating_reward], args=args, processing_class=processor,
                train_dataset=synthetic_rows)


# ------------------------------------------------------------------------------------------ GRPO equivalence


@pytest.mark.parametrize("overrides", [{"mode": "grpo"}, {"mode": "roma", "lambda_kl": 0.0, "lambda_aux": 0.0}])
def test_without_roma_terms_the_step_is_trl_grpo(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows, overrides):
    """Same seed, same batch: the logged loss and every parameter's gradient equal GRPOTrainer's exactly."""
    reference_recorder, recorder = GradRecorder(), GradRecorder()
    reference = make_trainer(
        tiny_model_dir, GRPOConfig(**config_kwargs(tmp_path, suppress_ids)), synthetic_rows, cls=GRPOTrainer,
        callbacks=[reference_recorder],
    )
    reference.train()
    trainer = make_trainer(
        tiny_model_dir, roma_config(tmp_path, suppress_ids, **overrides), synthetic_rows, callbacks=[recorder]
    )
    trainer.train()

    assert logged(trainer, "loss") == logged(reference, "loss")
    assert logged(trainer, "reward") == logged(reference, "reward")
    (expected,), (got,) = reference_recorder.grads, recorder.grads
    assert expected.keys() == got.keys() and len(got) == len(list(trainer.model.parameters()))
    for name, grad in expected.items():
        assert torch.equal(got[name], grad), name
    assert any(grad.abs().sum() > 0 for grad in got.values())  # the step did learn something


# ------------------------------------------------------------------------------------------ the ROMA loss


@pytest.fixture(scope="module")
def roma_batch(tiny_model_dir, tmp_path_factory, suppress_ids, synthetic_rows):
    """A trainer with λ > 0 and one of its micro-batches (with successes and non-zero advantages)."""
    args = roma_config(tmp_path_factory.mktemp("batch"), suppress_ids, lambda_kl=0.5, lambda_aux=0.3)
    trainer = make_trainer(tiny_model_dir, args, synthetic_rows)
    torch.manual_seed(1)
    inputs = micro_batch(trainer, synthetic_rows)
    return trainer, inputs


def full_view_logps(trainer, inputs, k):
    """ℓ^k of every sequence: TRL's teacher-forced pass over the whole micro-batch, images replaced by view k."""
    logps, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
        trainer,
        trainer.model,
        torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
        torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
        inputs["completion_ids"].shape[1],
        pixel_values=torch.cat([views[k] for views in inputs["roma_view_pixel_values"]]),
        image_grid_thw=inputs["image_grid_thw"],
        num_images=inputs["num_images"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
    )
    return logps  # (N, T)


def reference_loss(trainer, inputs):
    """L_GRPO + λ_kl · invariance_penalty(all K views with autograd) + λ_aux · L_aux(view j), from scratch."""
    args = trainer.args
    model = trainer.model
    with capture_first_return(trainer, "_get_per_token_logps_and_entropies") as clean_pass:
        grpo_loss = GRPOTrainer._compute_loss(trainer, model, inputs)
    clean_logps = clean_pass[0][0].detach()
    mask = inputs["completion_mask"].bool()
    success = inputs["roma_success"]
    all_views = torch.stack([full_view_logps(trainer, inputs, k) for k in range(args.roma_views)])  # (K, N, T)
    penalty_success = success if args.correctness_mask else torch.ones_like(success)
    inv_loss, _ = losses.invariance_penalty(
        all_views, clean_logps, mask, penalty_success, estimator=args.kl_estimator, direction=args.kl_direction,
        worst_case=args.worst_case, agg=args.roma_agg, max_tokens=args.max_completion_length,
    )
    aux = inputs["roma_aux_view"].tolist()
    aux_logps = torch.stack([all_views[k, i] for i, k in enumerate(aux)])  # (N, T)
    anchor = clean_logps if args.aux_ratio_anchor == "clean" else aux_logps.detach()
    aux_loss, _ = losses.auxiliary_pg_loss(
        aux_logps, anchor, inputs["advantages"], mask, success, eps_low=0.2, eps_high=0.2,
        correct_only=args.aux_correct_only, agg=args.roma_agg, max_tokens=args.max_completion_length,
    )
    return grpo_loss + args.lambda_kl * inv_loss + args.lambda_aux * aux_loss, inv_loss, aux_loss


def loss_and_grads(trainer, inputs, loss_fn):
    trainer.model.zero_grad()
    loss = loss_fn()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad()
    return loss.detach(), grads


@pytest.mark.parametrize(
    "overrides",
    [
        {"worst_case": "batch"},
        {"worst_case": "sequence"},
        {"worst_case": "token"},
        {"worst_case": "mean"},
        {"worst_case": "batch", "correctness_mask": False, "aux_correct_only": False, "aux_ratio_anchor": "view"},
        {"worst_case": "batch", "view_batch_size": 1},
    ],
)
@pytest.mark.parametrize("uniform", [False, True])
def test_roma_loss_and_gradients_match_the_full_formula(roma_batch, overrides, uniform, monkeypatch):
    trainer, inputs = roma_batch
    monkeypatch.setattr(RomaTrainer, "_uniform_view_passes", property(lambda self: uniform))
    saved = {name: getattr(trainer.args, name) for name in overrides}
    for name, value in overrides.items():
        setattr(trainer.args, name, value)
    try:
        assert 0 < int(inputs["roma_success"].sum()) < len(inputs["roma_success"])
        assert inputs["advantages"].abs().sum() > 0
        expected_loss, expected = loss_and_grads(trainer, inputs, lambda: reference_loss(trainer, inputs)[0])
        loss, got = loss_and_grads(trainer, inputs, lambda: trainer.compute_loss(trainer.model, inputs))
    finally:
        for name, value in saved.items():
            setattr(trainer.args, name, value)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-9)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        # Pass 2 runs on the successful rows only, the reference on the whole batch: the same sums in
        # another order, so compare each gradient as a whole, to float32 rounding.
        error = (got[name] - grad).norm() / grad.norm().clamp(min=1e-12)
        assert error < 1e-5, (name, float(error))


@pytest.mark.parametrize("worst_case", ["batch", "mean"])
def test_shared_view_encoding_encodes_each_image_once_and_changes_nothing_else(roma_batch, worst_case):
    """Every sequence successful: the G = 2 completions of a prompt share its view images, so the vision
    tower encodes half as many images; loss and gradients are those of one encoding per sequence."""
    trainer, inputs = roma_batch
    inputs = {**inputs, "roma_success": torch.ones_like(inputs["roma_success"])}
    ids = inputs["roma_view_group"].tolist()  # one group per prompt
    prompts, rows = len(set(ids)), len(ids)
    assert rows == 2 * prompts
    forwards = VisionForwards(trainer.model)
    saved = trainer.args.worst_case, trainer.args.share_view_encoding
    results = {}
    try:
        trainer.args.worst_case = worst_case
        for share in (False, True):
            trainer.args.share_view_encoding = share
            forwards.vision.clear()
            results[share] = loss_and_grads(trainer, inputs, lambda: trainer.compute_loss(trainer.model, inputs))
            results[share, "vision"] = list(forwards.vision)
    finally:
        trainer.args.worst_case, trainer.args.share_view_encoding = saved
    (loss, grads), (shared_loss, shared_grads) = results[False], results[True]
    torch.testing.assert_close(shared_loss, loss, rtol=1e-6, atol=1e-9)
    assert shared_grads.keys() == grads.keys()
    for name, grad in grads.items():
        error = (shared_grads[name] - grad).norm() / grad.norm().clamp(min=1e-12)
        assert error < 1e-5, (name, float(error))
    clean = [(True, rows)]
    if worst_case == "batch":
        # the (K - 1)·N pairs that are not auxiliary pairs, the N auxiliary pairs, then the worst view's pairs
        # unless the step's auxiliary view (one for the batch) is the worst view
        rest = results[False, "vision"][K + 1 :]
        assert rest in ([], [(True, rows)])
        assert results[False, "vision"][: K + 1] == clean + [(False, rows)] * (K - 1) + [(True, rows)]
        assert results[True, "vision"] == clean + [(False, (K - 1) * prompts), (True, prompts)] + [
            (True, prompts) for _ in rest
        ]
    else:  # every pair with autograd: K views of each prompt's image
        assert results[False, "vision"] == clean + [(True, rows)] * K
        assert results[True, "vision"] == clean + [(True, K * prompts)]


def test_views_keep_the_token_count_and_replay_from_their_seed(roma_batch):
    trainer, inputs = roma_batch
    grid = inputs["image_grid_thw"]  # (N, 3)
    feature_dim = inputs["pixel_values"].shape[-1]
    step_types = inputs["roma_view_types"][0]
    assert len(set(step_types)) == NUM_VIEWS and set(step_types) <= set(SEEN)
    for i, views in enumerate(inputs["roma_view_pixel_values"]):
        assert views.shape == (NUM_VIEWS, int(grid[i].prod()), feature_dim)  # same rows → same vision tokens
        assert inputs["roma_view_types"][i] == step_types  # view_sampling="step": shared types
    # Replay: views of the step's types are a pure function of (view_seed, step, example id, view index).
    again = trainer._make_views([trainer.train_dataset[0]], grid[:1])
    first = trainer._make_views([trainer.train_dataset[0]], grid[:1])
    assert torch.equal(again["roma_view_pixel_values"][0], first["roma_view_pixel_values"][0])
    assert again["roma_view_params"] == first["roma_view_params"]


def test_a_view_that_changes_the_image_size_is_an_error(roma_batch, monkeypatch):
    trainer, inputs = roma_batch

    def resized_views(images, example_id, step, types):
        return [("downscale", {"factor": 0.5}, np.zeros((96, 96, 3), np.uint8))] * NUM_VIEWS

    monkeypatch.setattr(views_module, "degraded_views", lambda args, *rest: resized_views(*rest))
    with pytest.raises(RuntimeError, match=r"have image_grid_thw \[\[1, 6, 6\].*the clean images \[\[1, 8, 8\]\]"):
        trainer._make_views([trainer.train_dataset[0]], inputs["image_grid_thw"][:1])


def test_example_view_sampling_draws_types_per_example(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    trainer = make_trainer(tiny_model_dir, roma_config(tmp_path, suppress_ids, view_sampling="example"), synthetic_rows)
    grid = torch.tensor([[1, 8, 8]] * 8)
    out = trainer._make_views([synthetic_rows[i] for i in range(8)], grid)
    types = out["roma_view_types"]
    assert all(len(set(t)) == NUM_VIEWS for t in types) and len(set(types)) > 1
    seed = derive_seed(0, 0, synthetic_rows[0]["id"])
    assert types[0] == tuple(v.name for v in sample_views(synthetic_rows[0]["image"], NUM_VIEWS, seed=seed))


# ------------------------------------------------------------------------------------------ training runs


def test_invariance_penalty_alone_moves_every_parameter(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    """All completions succeed (reward 1): every advantage, so L_GRPO's and L_aux's gradient, is 0.
    GRPO leaves the model unchanged; ROMA's penalty changes every trainable parameter."""
    grpo = make_trainer(
        tiny_model_dir, roma_config(tmp_path, suppress_ids, mode="grpo", success_reward="one_reward"), synthetic_rows,
        reward=one_reward,
    )
    before = params_of(grpo.model)
    grpo.train()
    assert all(torch.equal(p, before[n]) for n, p in params_of(grpo.model).items())

    roma = make_trainer(
        tiny_model_dir, roma_config(tmp_path, suppress_ids, success_reward="one_reward"), synthetic_rows, reward=one_reward
    )
    roma.train()
    unchanged = [n for n, p in params_of(roma.model).items() if torch.equal(p, before[n])]
    assert unchanged == []
    metrics = roma.state.log_history[0]
    expected = [
        "roma/success_rate", "roma/loss_grpo", "roma/loss_inv", "roma/loss_aux", "roma/aux_clip_ratio/low",
        "roma/aux_clip_ratio/high", "roma/aux_clip_ratio/region", "time/rollout", "time/views", "time/clean_pass",
        "time/pass2", "time/backward",
    ]
    # The step's three types each have a KL mean and a worst-case share.
    kl_keys = [k for k in metrics if k.startswith("roma/kl/")]
    worst_keys = [k for k in metrics if k.startswith("roma/worst/")]
    assert len(kl_keys) == len(worst_keys) == NUM_VIEWS
    assert {k.split("/")[-1] for k in kl_keys} <= set(SEEN)
    for key in expected + kl_keys + worst_keys:
        assert math.isfinite(metrics[key]), key
    assert metrics["roma/success_rate"] == 1.0
    assert metrics["roma/loss_inv"] > 0 and metrics["roma/loss_aux"] == 0.0
    assert sorted(metrics[k] for k in worst_keys) == [0.0, 0.0, 1.0]  # worst_case="batch": one-hot
    assert metrics["roma/loss_inv"] == pytest.approx(max(metrics[k] for k in kl_keys), rel=1e-6)


def test_no_success_means_no_penalty(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    """Reward always 0: no trajectory succeeded, so L_inv and L_aux are exactly 0 and nothing moves; the same
    run without the correctness mask is penalised."""
    args = roma_config(tmp_path, suppress_ids, success_reward="zero_reward", lambda_kl=1.0, lambda_aux=1.0)
    trainer = make_trainer(tiny_model_dir, args, synthetic_rows, reward=zero_reward)
    before = params_of(trainer.model)
    trainer.train()
    metrics = trainer.state.log_history[0]
    assert metrics["roma/success_rate"] == 0.0
    assert metrics["roma/loss_inv"] == 0.0 and metrics["roma/loss_aux"] == 0.0 and metrics["loss"] == 0.0
    assert all(torch.equal(p, before[n]) for n, p in params_of(trainer.model).items())

    args = roma_config(tmp_path, suppress_ids, success_reward="zero_reward", lambda_kl=1.0, correctness_mask=False)
    unmasked = make_trainer(tiny_model_dir, args, synthetic_rows, reward=zero_reward)
    unmasked.train()
    assert unmasked.state.log_history[0]["roma/loss_inv"] > 0


class VisionForwards:
    """Records the vision tower's forwards (autograd on?, images) and the language model's (autograd on?, rows)."""

    def __init__(self, model):
        self.vision, self.text = [], []
        model.model.visual.register_forward_hook(self.on_vision, with_kwargs=True)
        model.model.language_model.register_forward_hook(self.on_text, with_kwargs=True)

    def on_vision(self, module, args, kwargs, output):
        grid_thw = kwargs["grid_thw"] if "grid_thw" in kwargs else args[1]
        self.vision.append((torch.is_grad_enabled(), len(grid_thw)))  # one row per image

    def on_text(self, module, args, kwargs, output):
        self.text.append((torch.is_grad_enabled(), kwargs["inputs_embeds"].shape[0]))

    @property
    def no_grad(self):
        return sum(not grad for grad, _ in self.vision)

    @property
    def grad(self):
        return sum(grad for grad, _ in self.vision)


K = NUM_VIEWS


class PassRecorder(RomaTrainer):
    """Records what decides pass 2's autograd forwards: each micro-batch's success mask and auxiliary
    views (the selection itself is recorded from roma.losses.select_views)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def _roma_loss(self, inputs, clean_logps, mode):
        self.batches.append({"success": inputs["roma_success"].clone(), "aux": inputs["roma_aux_view"].clone()})
        return super()._roma_loss(inputs, clean_logps, mode)


@pytest.mark.parametrize(
    ("overrides", "vision", "text"),
    [
        # Pass 2's forwards after the generation and the clean pass, as (autograd on?, count as a multiple of S,
        # the successful sequences — one per prompt here, so no two share an image): the vision tower encodes
        # a call's distinct view images once, the language model runs forwards of S rows (view_batch_size unset).
        ({"mode": "grpo"}, [], []),
        ({"lambda_kl": 0.0, "lambda_aux": 0.0}, [], []),
        # the (K - 1)·S pairs that are not auxiliary pairs without autograd, the S auxiliary pairs with it; then
        # the selected pairs that are not auxiliary pairs (added below: how many depends on the draw)
        ({"worst_case": "batch"}, [(False, K - 1), (True, 1)], [(False, 1)] * (K - 1) + [(True, 1)]),
        # view_batch_size 12 ≥ (K - 1)·S: the pairs without autograd in one forward
        ({"worst_case": "batch", "view_batch_size": 12}, [(False, K - 1), (True, 1)], [(False, K - 1), (True, 1)]),
        ({"worst_case": "sequence"}, [(False, K - 1), (True, 1)], [(False, 1)] * (K - 1) + [(True, 1)]),
        # every pair with autograd; the auxiliary pairs among them
        ({"worst_case": "mean"}, [(True, K)], [(True, 1)] * K),
        ({"lambda_kl": 0.0}, [(True, 1)], [(True, 1)]),  # the auxiliary pairs only
        ({"roma_views": 1}, [(True, 1)], [(True, 1)]),  # one view: nothing to select, the same pairs
        # the vision tower once per pair, in each forward of S rows
        ({"worst_case": "batch", "share_view_encoding": False}, [(False, 1)] * (K - 1) + [(True, 1)],
         [(False, 1)] * (K - 1) + [(True, 1)]),
    ],
)
def test_degraded_forward_passes(
    tiny_model_dir, tmp_path, suppress_ids, synthetic_rows, monkeypatch, overrides, vision, text
):
    selections = []
    select_views = losses.select_views

    def recording_selection(*args, **kwargs):
        selections.append(select_views(*args, **kwargs))
        return selections[-1]

    monkeypatch.setattr(losses, "select_views", recording_selection)
    args = roma_config(tmp_path, suppress_ids, **overrides)
    trainer = make_trainer(tiny_model_dir, args, synthetic_rows, cls=PassRecorder)
    forwards = VisionForwards(trainer.model)
    trainer.train()
    # Generation (prefill and one forward per new token) and the clean pass see the 4 images and rows.
    successes = round(4 * trainer.state.log_history[0]["roma/success_rate"])
    assert 0 < successes < 4
    assert forwards.vision[:2] == [(False, 4), (True, 4)]
    generation = next(n for n, entry in enumerate(forwards.text) if entry != (False, 4))  # prefill + tokens
    assert generation > 1 and forwards.text[generation] == (True, 4)
    expected_vision = [(grad, times * successes) for grad, times in vision]
    expected_text = [(grad, times * successes) for grad, times in text]
    if overrides.get("worst_case") in ("batch", "sequence"):
        (batch,) = trainer.batches
        selection = selections[0]
        if overrides["worst_case"] == "batch":
            chosen = selection.selection_counts.argmax().expand_as(batch["aux"])
        else:
            chosen = selection.sequence_view
        # the successful sequences whose selected view is not their auxiliary view: one more autograd forward
        missing = int((batch["success"] & (chosen != batch["aux"])).sum())
        assert int(selection.selection_counts.sum()) == (1 if overrides["worst_case"] == "batch" else successes)
        expected_vision += [(True, missing)] if missing else []
        expected_text += [(True, missing)] if missing else []
    assert forwards.vision[2:] == expected_vision
    assert forwards.text[generation + 1 :] == expected_text


@pytest.mark.parametrize(
    ("worst_case", "passes"),
    [
        # every pair that is not an auxiliary pair without autograd; the auxiliary pairs; the selected pairs
        # again (whether or not they are auxiliary pairs: the count may not depend on the data)
        ("batch", [(False, 1)] * (K - 1) + [(True, 1), (True, 1)]),
        ("sequence", [(False, 1)] * (K - 1) + [(True, 1), (True, 1)]),
        ("mean", [(True, 1)] * K),
    ],
)
def test_sharded_parameters_get_data_independent_passes(
    tiny_model_dir, tmp_path, suppress_ids, synthetic_rows, monkeypatch, worst_case, passes
):
    """Under ZeRO-3 / FSDP each forward pass gathers parameters across processes: pass 2 then runs on every
    row, a fixed number of times, and the vision tower once per sequence (no shared encoding)."""
    monkeypatch.setattr(RomaTrainer, "_uniform_view_passes", property(lambda self: True))
    trainer = make_trainer(tiny_model_dir, roma_config(tmp_path, suppress_ids, worst_case=worst_case), synthetic_rows)
    forwards = VisionForwards(trainer.model)
    trainer.train()
    assert forwards.vision == [(False, 4), (True, 4)] + [(grad, times * 4) for grad, times in passes]


def test_no_view_pass_without_a_success(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    args = roma_config(tmp_path, suppress_ids, success_reward="zero_reward")
    trainer = make_trainer(tiny_model_dir, args, synthetic_rows, reward=zero_reward)
    forwards = VisionForwards(trainer.model)
    trainer.train()
    assert (forwards.no_grad, forwards.grad) == (1, 1)
    metrics = trainer.state.log_history[0]
    assert [metrics[k] for k in metrics if k.startswith("roma/worst/")] == [0.0] * NUM_VIEWS


class LossInputs(RomaTrainer):
    """Records every micro-batch that reaches the loss, with the step its batch was generated at."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generation_steps, self.seen = [], []

    def _generate_and_score_completions(self, inputs):
        self.generation_steps.append(self.state.global_step)
        return super()._generate_and_score_completions(inputs)

    def _compute_loss(self, model, inputs):
        self.seen.append((self.generation_steps[-1], inputs))
        return super()._compute_loss(model, inputs)


def views_at(trainer, step, example, image_grid_thw):
    """The ROMA entries ``_make_views`` gives ``example`` at ``step``."""
    current, trainer.state.global_step = trainer.state.global_step, step
    try:
        return trainer._make_views([example], image_grid_thw)
    finally:
        trainer.state.global_step = current


def test_views_stay_with_their_sample_through_accumulation_and_reuse(tiny_model_dir, tmp_path, suppress_ids):
    """gradient_accumulation_steps=2 and num_iterations=2: TRL shuffles and splits the generation batch.
    Each sample's image (a constant grey level naming its example) must still come with that example's
    views, success flag and auxiliary view."""
    dataset = colour_dataset(8)
    args = roma_config(
        tmp_path, suppress_ids, success_reward="index_parity_reward", gradient_accumulation_steps=2,
        num_iterations=2, max_steps=3, per_device_train_batch_size=4,
    )
    trainer = make_trainer(tiny_model_dir, args, dataset, reward=index_parity_reward, cls=LossInputs)
    trainer.train()
    assert len(trainer.seen) == 6 and trainer.generation_steps == [0, 2]
    processor = trainer.processing_class.image_processor
    clean_pixels = processor(images=[dataset[i]["image"] for i in range(8)], return_tensors="pt")["pixel_values"]
    rows = clean_pixels.shape[0] // 8
    grey = clean_pixels.view(8, rows, -1)[:, 0, 0]  # (8,) the normalised grey level of each example
    orders = []
    for step, inputs in trainer.seen:
        pixels = inputs["pixel_values"].view(len(inputs["roma_view_pixel_values"]), rows, -1)
        order = []
        for i, views in enumerate(inputs["roma_view_pixel_values"]):
            index = int(torch.argmin((grey - pixels[i, 0, 0]).abs()))
            assert torch.equal(pixels[i], clean_pixels.view(8, rows, -1)[index])  # identified exactly
            expected = views_at(trainer, step, dataset[index], inputs["image_grid_thw"][i : i + 1])
            assert torch.equal(views, expected["roma_view_pixel_values"][0])
            assert inputs["roma_view_types"][i] == expected["roma_view_types"][0]
            assert inputs["roma_view_params"][i] == expected["roma_view_params"][0]
            assert bool(inputs["roma_success"][i]) == (index % 2 == 0)
            order.append(index)
        orders.append(order)
    # TRL did shuffle: the sampler yields each prompt's completions side by side, the loss saw them apart.
    assert any(order[j] != order[j + 1] for order in orders for j in range(0, len(order), 2))


def test_naive_aug_rolls_out_on_a_degraded_image(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    dataset = synthetic_rows.select(range(2))
    args = roma_config(tmp_path, suppress_ids, mode="naive_aug", view_seed=5)
    trainer = make_trainer(tiny_model_dir, args, dataset, cls=LossInputs)
    forwards = VisionForwards(trainer.model)
    trainer.train()
    (_, inputs), = trainer.seen
    assert "roma_view_pixel_values" not in inputs and forwards.no_grad == 1 and forwards.grad == 1
    processor = trainer.processing_class.image_processor
    degraded, clean = [], []
    for i in range(2):
        seed = derive_seed(5, 0, dataset[i]["id"], "naive_aug")
        (view,) = sample_views(dataset[i]["image"], 1, seed=seed)
        degraded.append(processor(images=[view.image], return_tensors="pt")["pixel_values"])
        clean.append(processor(images=[dataset[i]["image"]], return_tensors="pt")["pixel_values"])
    rows = clean[0].shape[0]
    for i in range(4):  # 2 prompts x 2 completions, each with its prompt's degraded image
        sample = inputs["pixel_values"][i * rows : (i + 1) * rows]
        assert sum(torch.equal(sample, d) for d in degraded) == 1
        assert not any(torch.equal(sample, c) for c in clean)


def test_unseen_pool_at_a_fixed_level(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    args = roma_config(tmp_path, suppress_ids, degradation_pool="unseen", degradation_level="3", roma_views=2)
    trainer = make_trainer(tiny_model_dir, args, synthetic_rows)
    out = trainer._make_views([synthetic_rows[0]], torch.tensor([[1, 8, 8]]))
    assert set(out["roma_view_types"][0]) <= set(UNSEEN) and len(out["roma_view_pixel_values"][0]) == 2


# ------------------------------------------------------------------------------------------ LoRA, resume


def test_lora_step_changes_only_adapter_weights(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    args = roma_config(tmp_path, suppress_ids, correctness_mask=False, aux_correct_only=False)
    trainer = make_trainer(tiny_model_dir, args, synthetic_rows, peft_config=peft_config)
    before = params_of(trainer.model)
    trainer.train()
    after = params_of(trainer.model)
    changed = {n for n, p in after.items() if not torch.equal(p, before[n])}
    lora_b = {n for n in after if "lora_B" in n}  # B starts at 0, so only B has a gradient at step 1
    assert len(lora_b) == 4  # q_proj and v_proj of the 2 decoder layers (the vision blocks use a fused qkv)
    assert changed == lora_b
    assert trainer.state.log_history[0]["roma/loss_inv"] > 0


class StopAfter(TrainerCallback):
    """Simulates a killed run: raises once the given step has been saved."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resumed_run_logs_the_same_losses(tiny_model_dir, tmp_path, suppress_ids, synthetic_rows):
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, correctness_mask=False)
    full = make_trainer(tiny_model_dir, roma_config(tmp_path / "full", suppress_ids, **common), synthetic_rows)
    full.train()

    killed = make_trainer(
        tiny_model_dir, roma_config(tmp_path / "resumed", suppress_ids, **common), synthetic_rows,
        callbacks=[StopAfter(2)],
    )
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = make_trainer(tiny_model_dir, roma_config(tmp_path / "resumed", suppress_ids, **common), synthetic_rows)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "run" / "checkpoint-2"))

    for key in ("loss", "roma/loss_inv", "roma/loss_aux", "reward"):
        full_values = logged(full, key)
        assert len(full_values) == 4
        assert logged(resumed, key)[-2:] == full_values[2:], key


def test_pair_logps_places_recorded_pairs_with_their_gradient():
    from roma.train.pass2 import PairLogps

    filler = torch.full((3, 2), -1.0)  # (N, T)
    first = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)  # pairs (0, 0), (1, 2)
    second = torch.tensor([[5.0, 6.0]], requires_grad=True)  # pair (1, 2) again: replaces the first entry
    pairs = PairLogps().add([(0, 0), (1, 2)], first).add([(1, 2)], second)
    assert (0, 0) in pairs and (1, 2) in pairs and (1, 0) not in pairs
    out = pairs.place([(0, (0, 0)), (1, (1, 2)), (0, (1, 2))], 2, filler)  # (2, N, T)
    expected = torch.tensor([
        [[1.0, 2.0], [-1.0, -1.0], [5.0, 6.0]],
        [[-1.0, -1.0], [-1.0, -1.0], [5.0, 6.0]],
    ])
    torch.testing.assert_close(out, expected)
    weights = torch.arange(12.0).view(2, 3, 2)
    (out * weights).sum().backward()
    torch.testing.assert_close(first.grad, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))  # the replaced pair gets none
    torch.testing.assert_close(second.grad, torch.tensor([[4.0 + 10.0, 5.0 + 11.0]]))
    assert pairs.place([], 2, filler).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="got 1 rows of log-probs for 2 pairs"):
        PairLogps().add([(0, 0), (1, 0)], second)
