"""roma's common example schema: what the synthetic suite and every benchmark loader produce.

One example (a row of a ``datasets.Dataset``):

=============  =====================================================================================
column         meaning
=============  =====================================================================================
``id``         str, unique within its dataset; seeds every degradation of this example
``task``       str, the family / benchmark sub-task (used for per-task breakdowns)
``image``      PIL image (RGB); or ``images``, a list of them (one per image placeholder of the prompt, in
               order: TRL's column, used by sources whose rows hold image lists, e.g. MMRL30k)
``prompt``     conversational prompt, ``[{"role": "user", "content": [{"type": "image"},
               {"type": "text", "text": ...}]}]`` — asks for reasoning in ``<think>…</think>``
               and the final answer in ``\\boxed{}`` (see :func:`make_prompt`)
``answer``     str, the gold answer (a choice letter for multiple choice)
``choices``    list[str], the option texts in letter order (empty for free-form answers)
``answer_type`` str, one of :data:`ANSWER_TYPES`: ``choice`` (a letter), ``number``, ``text``
``tolerance``  float, relative numeric tolerance for ``number`` answers (0.0 = exact; ChartQA: 0.05)
=============  =====================================================================================

TRL's GRPOTrainer passes every extra column to reward functions as keyword lists, so ``choices``,
``answer_type`` and ``tolerance`` reach :func:`roma.rewards.accuracy_reward` unchanged.
"""

from __future__ import annotations

import string
from typing import Any

COLUMNS: tuple[str, ...] = ("id", "task", "image", "prompt", "answer", "choices", "answer_type", "tolerance")
ANSWER_TYPES: tuple[str, ...] = ("choice", "number", "text")
LETTERS: str = string.ascii_uppercase


def features(extra: dict[str, Any] | None = None) -> Any:
    """The ``datasets.Features`` of roma's schema (the :data:`COLUMNS`), then the ``extra`` columns (name →
    ``datasets`` feature) in their order: the one definition the synthetic suite and the benchmark loaders
    build their datasets with."""
    import datasets

    text = datasets.Value("string")
    columns = {
        "id": text,
        "task": text,
        "image": datasets.Image(),
        "prompt": datasets.List({"role": text, "content": datasets.List({"type": text, "text": text})}),
        "answer": text,
        "choices": datasets.List(text),
        "answer_type": text,
        "tolerance": datasets.Value("float64"),
    }
    return datasets.Features({**columns, **(extra or {})})


INSTRUCTION = (
    "Think step by step inside <think> </think> tags, then give the final answer in \\boxed{}."
)
CHOICE_INSTRUCTION = INSTRUCTION + " Answer with the option's letter."
"""The instruction of a multiple-choice example."""


def unique_ids(raw_ids: list[str]) -> list[str]:
    """Keep ids as given; a repeated id gets ``#2``, ``#3``, ... so every degradation seed and record is distinct."""
    seen: dict[str, int] = {}
    out = []
    for raw in raw_ids:
        seen[raw] = seen.get(raw, 0) + 1
        out.append(raw if seen[raw] == 1 else f"{raw}#{seen[raw]}")
    return out


def format_choices(choices: list[str]) -> str:
    """``["3", "5"]`` -> ``"A. 3\\nB. 5"``."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} choices are supported, got {len(choices)}")
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def prompt_text(question: str, choices: list[str] | None = None) -> str:
    """The user text of a prompt: question, lettered options (if any), then the answer instruction."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    parts = [question.strip()]
    if choices:
        parts.append("Options:\n" + format_choices(list(choices)))
        parts.append(CHOICE_INSTRUCTION)
    else:
        parts.append(INSTRUCTION)
    return "\n".join(parts)


def make_text_prompt(body: str, *, choice: bool = False) -> list[dict[str, Any]]:
    """A prompt from text already laid out as its benchmark writes it (question, options, hints), followed
    by roma's instruction (:data:`CHOICE_INSTRUCTION` when ``choice``): one user turn, image then text."""
    if not isinstance(body, str) or not body.strip():
        raise ValueError(f"body must be a non-empty string, got {body!r}")
    text = body.strip() + "\n" + (CHOICE_INSTRUCTION if choice else INSTRUCTION)
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def make_prompt(question: str, choices: list[str] | None = None) -> list[dict[str, Any]]:
    """The conversational prompt of one example: one user turn holding the image and the text."""
    return [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": prompt_text(question, choices)}],
        }
    ]


def with_image_parts(prompt: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``prompt`` with its first user turn holding ``n`` image placeholders (before its text), as TRL fills them
    from a row's ``images`` list in order; the other turns unchanged."""
    out, done = [], False
    for message in prompt:
        if message["role"] == "user" and not done and isinstance(message["content"], list):
            others = [part for part in message["content"] if part.get("type") != "image"]
            message = {**message, "content": [{"type": "image"} for _ in range(n)] + others}
            done = True
        out.append(message)
    return out


def validate_example(example: dict[str, Any], *, source: str = "example") -> None:
    """Raise ``ValueError`` naming ``source`` and the field when an example breaks the schema."""
    missing = [c for c in COLUMNS if c not in example and not (c == "image" and "images" in example)]
    if missing:
        raise ValueError(f"{source}: missing field(s) {missing}; the schema needs {list(COLUMNS)}")
    if example["answer_type"] not in ANSWER_TYPES:
        raise ValueError(
            f"{source}: answer_type {example['answer_type']!r} is not one of {list(ANSWER_TYPES)}"
        )
    if example["answer_type"] == "choice":
        n = len(example["choices"])
        if n < 2 or example["answer"] not in LETTERS[:n]:
            raise ValueError(
                f"{source}: a choice answer must be one of the letters {list(LETTERS[:n])} "
                f"of its {n} choices, got {example['answer']!r}"
            )
    if not isinstance(example["tolerance"], (int, float)) or example["tolerance"] < 0:
        raise ValueError(f"{source}: tolerance must be a float >= 0, got {example['tolerance']!r}")
