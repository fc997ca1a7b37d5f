"""Build a tiny random-weight Qwen3-VL that runs offline on a CPU: tokenizer, processor, weights.

The folder written by :func:`build_tiny_qwen3vl` loads with the stock transformers API (after
``import roma``, which registers the image-only processor)::

    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)

It holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer files,
``processor_config.json``, ``chat_template.jinja`` and ``roma_build.json`` (the build arguments,
the corpus fingerprint, sizes and package versions).

Pieces, each mirroring the released Qwen3-VL where it matters for the code that uses it:

- **Tokenizer**: a byte-level BPE trained on ``corpus`` with the Qwen2 pre-tokenizer (its regex
  splits every digit into its own pre-token, so numbers are always spelled digit by digit, which
  helps arithmetic and makes answers like ``\\boxed{12}`` tokenize the same everywhere), NFC
  normalisation, wrapped as ``Qwen2Tokenizer``. Qwen's special tokens follow the BPE ids in
  Qwen's order; ``<think>`` / ``</think>`` are added as *non-special* tokens as in Qwen3, so
  ``decode(..., skip_special_tokens=True)`` (what TRL does with completions) keeps them. eos is
  ``<|im_end|>``, pad ``<|endoftext|>``, no bos, padding side left.
- **Image processor**: ``Qwen2VLImageProcessorPil`` (the torchvision-free one transformers picks for
  Qwen3-VL) with Qwen3-VL's patch 16, temporal patch 2, merge 2 and mean = std = 0.5. An image whose
  sides are multiples of 32 and whose area lies in ``[min_pixels, max_pixels]`` is not resized:
  128×128 → grid ``[1, 8, 8]`` → 16 ``<|image_pad|>`` tokens.
- **Model**: ``Qwen3VLForConditionalGeneration`` from a config, random weights drawn from a seeded
  generator; DeepStack, interleaved M-RoPE and learned vision position embeddings as in Qwen3-VL.
- **Generation config**: greedy, eos ``[<|im_end|>, <|endoftext|>]``, pad ``<|endoftext|>``, and
  ``suppress_tokens`` = the five vision special tokens, so ``generate`` never emits one (a stray
  ``<|image_pad|>`` in a completion breaks the teacher-forced forward pass of GRPO).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    Qwen2Tokenizer,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from roma.models.chat_template import CHAT_TEMPLATE
from roma.models.processor import Qwen3VLImageOnlyProcessor, register
from roma.provenance import provenance

__all__ = [
    "BUILD_INFO_FILE",
    "SPECIAL_TOKENS",
    "THINK_TOKENS",
    "VISION_SPECIAL_TOKENS",
    "TinyQwen3VLSpec",
    "build_tiny_qwen3vl",
    "load_model_and_processor",
    "make_image_processor",
    "make_model",
    "mrope_section",
    "train_tokenizer",
    "vision_token_ids",
]

BUILD_INFO_FILE = "roma_build.json"

# The five vision special tokens: none of them may ever be generated.
VISION_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen's special tokens in Qwen's id order (the tool-call and fill-in-the-middle tokens are left out).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    *VISION_SPECIAL_TOKENS,
)
# Ordinary added tokens (special=False, as in Qwen3): kept by decode(skip_special_tokens=True).
THINK_TOKENS: tuple[str, ...] = ("<think>", "</think>")
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
# Role lines of the chat template, added to the BPE corpus once per corpus text, as they occur in
# every training sequence: the role names become single tokens.
_ROLE_TEXTS: tuple[str, ...] = ("system\n", "user\n", "assistant\n")


@dataclass(frozen=True)
class TinyQwen3VLSpec:
    """Sizes of the tiny Qwen3-VL. The defaults are the 1.5 M-parameter model measured on 2 CPU cores."""

    vocab_size: int = field(
        default=1024,
        metadata={"help": "BPE vocabulary size including the 256 byte symbols; Qwen's special and <think> "
                  "tokens are added on top. A small corpus may yield fewer merges."},
    )
    image_size: int = field(
        default=128,
        metadata={"help": "Side of the square images the model is built for: sets the learned vision "
                  "position grid to (image_size / patch_size)^2. Must be a multiple of patch_size * merge_size."},
    )
    min_pixels: int = field(
        default=32 * 32,
        metadata={"help": "Images with fewer pixels are upscaled (processor 'shortest_edge')."},
    )
    max_pixels: int = field(
        default=256 * 256,
        metadata={"help": "Images with more pixels are downscaled (processor 'longest_edge'); bounds the "
                  "image token count at max_pixels / (patch_size * merge_size)^2."},
    )
    patch_size: int = field(default=16, metadata={"help": "Vision patch side in pixels (Qwen3-VL: 16)."})
    merge_size: int = field(
        default=2, metadata={"help": "merge_size x merge_size patches become one LLM token (Qwen3-VL: 2)."}
    )
    text_hidden_size: int = field(default=128, metadata={"help": "Hidden size of the language model."})
    text_layers: int = field(default=2, metadata={"help": "Decoder layers of the language model."})
    text_heads: int = field(default=4, metadata={"help": "Attention heads of the language model."})
    text_kv_heads: int = field(default=2, metadata={"help": "Key/value heads (grouped-query attention)."})
    text_head_dim: int = field(
        default=32,
        metadata={"help": "Head dimension; M-RoPE splits head_dim / 2 into (t, h, w) sections in Qwen3-VL's "
                  "24:20:20 proportion (see mrope_section)."},
    )
    text_intermediate_size: int = field(default=256, metadata={"help": "MLP width of the language model."})
    max_position_embeddings: int = field(default=4096, metadata={"help": "Longest sequence (tokens)."})
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base of the language model."})
    vision_hidden_size: int = field(default=128, metadata={"help": "Hidden size of the vision encoder."})
    vision_depth: int = field(default=2, metadata={"help": "Transformer blocks of the vision encoder."})
    vision_heads: int = field(default=4, metadata={"help": "Attention heads of the vision encoder."})
    vision_intermediate_size: int = field(default=256, metadata={"help": "MLP width of the vision encoder."})
    deepstack_layers: tuple[int, ...] = field(
        default=(0,),
        metadata={"help": "Vision blocks whose features are also injected into the first decoder layers "
                  "(Qwen3-VL DeepStack); indexes in [0, vision_depth)."},
    )
    tie_word_embeddings: bool = field(
        default=True,
        metadata={"help": "Share the input embedding and the LM head (as Qwen3-VL 2B / 4B do)."},
    )

    def __post_init__(self) -> None:
        positive = [f.name for f in fields(self) if f.type in ("int", "float") and getattr(self, f.name) <= 0]
        if positive:
            raise ValueError(f"{positive} must be > 0, got {[getattr(self, n) for n in positive]}")
        if self.vocab_size <= 256:
            raise ValueError(f"vocab_size must exceed the 256 byte symbols, got {self.vocab_size}")
        factor = self.patch_size * self.merge_size
        if self.image_size % factor:
            raise ValueError(
                f"image_size must be a multiple of patch_size * merge_size = {factor}, got {self.image_size}"
            )
        if not self.min_pixels <= self.image_size**2 <= self.max_pixels:
            raise ValueError(
                f"image_size**2 = {self.image_size**2} must lie in [min_pixels, max_pixels] = "
                f"[{self.min_pixels}, {self.max_pixels}], otherwise the processor resizes such images"
            )
        if self.text_heads % self.text_kv_heads:
            raise ValueError(
                f"text_heads ({self.text_heads}) must be a multiple of text_kv_heads ({self.text_kv_heads})"
            )
        if self.text_head_dim % 2:
            raise ValueError(f"text_head_dim must be even (rotary pairs), got {self.text_head_dim}")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError(
                f"vision_hidden_size ({self.vision_hidden_size}) must be a multiple of vision_heads "
                f"({self.vision_heads})"
            )
        bad = [i for i in self.deepstack_layers if not 0 <= i < self.vision_depth]
        if bad:
            raise ValueError(f"deepstack_layers {bad} are not in [0, vision_depth={self.vision_depth})")
        if len(self.deepstack_layers) > self.text_layers:
            raise ValueError(
                f"{len(self.deepstack_layers)} deepstack_layers need as many decoder layers, "
                f"got text_layers={self.text_layers}"
            )


def mrope_section(head_dim: int) -> list[int]:
    """Split the ``head_dim / 2`` rotary frequencies into (temporal, height, width) sections.

    Qwen3-VL uses ``[24, 20, 20]`` for head_dim 128; this keeps the 20/64 share for height and
    width (rounded down) and gives the rest to time: 32 -> ``[6, 5, 5]``, 16 -> ``[4, 2, 2]``.
    """
    half = head_dim // 2
    spatial = (half * 20) // 64
    return [half - 2 * spatial, spatial, spatial]


def train_tokenizer(corpus: Sequence[str], *, vocab_size: int) -> Qwen2Tokenizer:
    """Train a byte-level BPE on ``corpus`` and wrap it as a Qwen-style ``Qwen2Tokenizer``.

    BPE ids come first (``vocab_size`` at most, the 256 byte symbols included), then
    :data:`SPECIAL_TOKENS` and :data:`THINK_TOKENS` in that order. Training is deterministic.
    """
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The wrapped tokenizer cuts added tokens out before pre-tokenising, so "<think>There" reaches BPE as
    # "There"; train on the same pieces, or merges would be learnt for ">There" and never used.
    added = re.compile("|".join(re.escape(token) for token in (*SPECIAL_TOKENS, *THINK_TOKENS)))
    pieces = [piece for text in corpus for piece in added.split(text) if piece]
    role_texts = [text for text in _ROLE_TEXTS for _ in range(len(corpus))]
    bpe.train_from_iterator([*pieces, *role_texts], trainer=trainer)
    model_state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model_state["vocab"])
    merges = [tuple(pair) for pair in model_state["merges"]]
    # Qwen's added tokens take the ids right after the BPE vocabulary, in Qwen's order.
    for token in (*SPECIAL_TOKENS, *THINK_TOKENS):
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    tokenizer.add_special_tokens(
        {"extra_special_tokens": [t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)]}
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    expected = {token: vocab[token] for token in (*SPECIAL_TOKENS, *THINK_TOKENS)}
    actual = {token: tokenizer.convert_tokens_to_ids(token) for token in expected}
    if actual != expected:  # guards the id layout against tokenizer-library changes
        raise RuntimeError(f"added-token ids {actual} differ from the intended layout {expected}")
    return tokenizer


def make_image_processor(spec: TinyQwen3VLSpec) -> Qwen2VLImageProcessorPil:
    """Qwen3-VL's image processor settings at the tiny model's patch grid (no torchvision)."""
    return Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        temporal_patch_size=2,
        merge_size=spec.merge_size,
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def make_model(
    spec: TinyQwen3VLSpec, tokenizer: Qwen2Tokenizer, *, seed: int, vocab_size: int | None = None
) -> Qwen3VLForConditionalGeneration:
    """A random-weight Qwen3-VL whose token ids match ``tokenizer``; weights drawn from ``seed``.

    ``vocab_size``: rows of the embedding and the LM head (default ``len(tokenizer)``; released Qwen3-VL
    checkpoints pad Qwen3's 151,669 tokens to 151,936). ``ValueError`` if smaller than the tokenizer.

    The weights come from torch's default generator seeded inside ``torch.random.fork_rng``, so the
    caller's global RNG state is left untouched.
    """
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    vocab_size = len(tokenizer) if vocab_size is None else vocab_size
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size ({vocab_size}) must be >= the tokenizer's {len(tokenizer)} tokens")
    grid_side = spec.image_size // spec.patch_size
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": spec.text_hidden_size,
            "intermediate_size": spec.text_intermediate_size,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads,
            "head_dim": spec.text_head_dim,
            "max_position_embeddings": spec.max_position_embeddings,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": spec.rope_theta,
                "mrope_section": mrope_section(spec.text_head_dim),
                "mrope_interleaved": True,
            },
            "pad_token_id": ids[PAD_TOKEN],
            "eos_token_id": [ids[EOS_TOKEN], ids[PAD_TOKEN]],
            "dtype": "float32",
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_heads": spec.vision_heads,
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.merge_size,
            "temporal_patch_size": 2,
            "out_hidden_size": spec.text_hidden_size,
            "num_position_embeddings": grid_side * grid_side,
            "deepstack_visual_indexes": list(spec.deepstack_layers),
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec.tie_word_embeddings,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids[EOS_TOKEN], ids[PAD_TOKEN]],
        pad_token_id=ids[PAD_TOKEN],
        do_sample=False,
        max_new_tokens=256,
        suppress_tokens=[ids[t] for t in VISION_SPECIAL_TOKENS],
    )
    return model.eval()


def build_tiny_qwen3vl(
    out_dir: str | Path,
    *,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    spec: TinyQwen3VLSpec | None = None,
    overwrite: bool = False,
) -> Path:
    """Train the tokenizer, build the processor and a random model, and save all of it to ``out_dir``.

    Args:
        out_dir: folder to write; must be absent or empty unless ``overwrite``.
        seed: seeds the default corpus and the weights.
        corpus: texts the BPE is trained on; ``None`` uses
            ``roma.data.synthetic.tokenizer_corpus(seed=seed)`` (prompts and worked solutions).
        spec: model sizes; ``None`` means ``TinyQwen3VLSpec()``.
        overwrite: allow writing into a non-empty folder (existing files of the same names are replaced).

    Returns:
        ``out_dir`` as a ``Path``.
    """
    spec = TinyQwen3VLSpec() if spec is None else spec
    if not isinstance(spec, TinyQwen3VLSpec):
        raise TypeError(f"spec must be a TinyQwen3VLSpec, got {type(spec).__name__}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True (CLI: --overwrite) to replace")
    start = time.perf_counter()

    if corpus is None:
        from roma.data.synthetic import tokenizer_corpus

        texts, corpus_source = list(tokenizer_corpus(seed=seed)), "roma.data.synthetic.tokenizer_corpus"
    else:
        texts, corpus_source = list(corpus), "argument"
    bad = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"corpus must hold strings; items (index, type) {bad[:5]} are not")
    if not any(texts):
        raise ValueError("corpus is empty; the tokenizer needs text to learn merges from")

    tokenizer = train_tokenizer(texts, vocab_size=spec.vocab_size)
    processor = Qwen3VLImageOnlyProcessor(make_image_processor(spec), tokenizer, chat_template=CHAT_TEMPLATE)
    model = make_model(spec, tokenizer, seed=seed)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    info = {
        "builder": "roma.models.build_tiny_qwen3vl",
        "seed": seed,
        "spec": asdict(spec),
        "corpus": {
            "source": corpus_source,
            "texts": len(texts),
            "sha256": hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest(),
        },
        "tokenizer": {
            "bpe_vocab_size": len(tokenizer) - len(SPECIAL_TOKENS) - len(THINK_TOKENS),
            "total_vocab_size": len(tokenizer),
        },
        "parameters": _parameter_counts(model),
        "build_seconds": round(time.perf_counter() - start, 3),
        **provenance(),
    }
    (out_dir / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out_dir


def load_model_and_processor(
    path: str | Path, *, dtype: torch.dtype = torch.float32, device_map: str | dict[str, Any] | None = None
) -> tuple[Qwen3VLForConditionalGeneration, Qwen3VLProcessor]:
    """Load a Qwen3-VL folder (built here or released) as ``(model, processor)``, model in eval mode.

    The processor pads on the **left** (its tokenizer too, whatever the folder says; released Qwen
    tokenizers pad right): a batch then ends where generation starts, and TRL's ``get_rope_index`` reads
    a batch mixing image sizes correctly. ``device_map`` is transformers' (``"cuda"``, ``"auto"``;
    ``None`` keeps the model on the CPU).

    Raises ``TypeError`` if ``AutoProcessor`` does not give a Qwen3-VL processor (for instance a bare
    tokenizer), which would otherwise fail much later inside a trainer.
    """
    register()
    processor = AutoProcessor.from_pretrained(path, padding_side="left")
    if not isinstance(processor, Qwen3VLProcessor):
        raise TypeError(
            f"AutoProcessor.from_pretrained({str(path)!r}) gave a {type(processor).__name__}, not a Qwen3-VL "
            "processor; is it a Qwen3-VL folder with a processor_config.json?"
        )
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=device_map)
    return model.eval(), processor


def vision_token_ids(processor: Any) -> list[int]:
    """Ids of the five vision special tokens of a processor's (or a bare tokenizer's) vocabulary.

    Pass them as ``suppress_tokens`` to ``generate`` (and in TRL's ``generation_kwargs``, which
    replace the model's generation config) so a completion never holds a vision token.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in VISION_SPECIAL_TOKENS}
    missing = [t for t, i in ids.items() if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"the tokenizer has no {missing} token(s); expected all of {list(VISION_SPECIAL_TOKENS)}")
    return [int(ids[t]) for t in VISION_SPECIAL_TOKENS]


def _parameter_counts(model: Qwen3VLForConditionalGeneration) -> dict[str, int]:
    """Unique parameters (a tied LM head counted once), in total and per tower."""
    visual = sum(p.numel() for p in model.model.visual.parameters())
    language = sum(p.numel() for p in model.model.language_model.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "vision": visual, "language": language, "lm_head_untied": total - visual - language}

