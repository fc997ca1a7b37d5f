"""TRL reward functions built on the judge: ``fn(completions, **columns) -> list[float]``. See
:mod:`roma.rewards`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from roma.rewards.extraction import _THINK_CLOSE, _THINK_OPEN, completion_text, extract_answer
from roma.rewards.judge import graded_answer, is_correct

# ---------------------------------------------------------------------------------------------------------
# TRL reward functions


def _per_sample(name: str, values: object, n: int, *, scalar_ok: bool) -> list[Any]:
    """TRL passes every dataset column as a list with one item per completion."""
    if values is None:
        return [None] * n
    if isinstance(values, (list, tuple)):
        if len(values) != n:
            raise ValueError(
                f"{name} has {len(values)} entries for {n} completions; expected one per completion"
            )
        return list(values)
    if scalar_ok:
        return [values] * n
    raise TypeError(f"{name} must be a list with one entry per completion, got {type(values).__name__}")


def accuracy_reward(completions: Sequence[Any], answer: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 when a completion's answer (:func:`graded_answer`: its last box) is correct (:func:`is_correct`),
    else 0.0.

    TRL reward-function form: ``completions`` are strings or conversational messages; ``answer`` and the
    optional per-sample columns ``choices``, ``answer_type``, ``tolerance`` are lists with one item per
    completion (``answer_type``/``tolerance`` may also be a single value for all). A missing
    ``tolerance`` is 0.0 and a missing ``answer_type`` is inferred. Other keyword arguments (``prompts``,
    ``completion_ids``, ``trainer_state``, image columns…) are ignored.
    """
    n = len(completions)
    answers = _per_sample("answer", answer, n, scalar_ok=False)
    choices = _per_sample("choices", kwargs.get("choices"), n, scalar_ok=False)
    answer_types = _per_sample("answer_type", kwargs.get("answer_type"), n, scalar_ok=True)
    tolerances = _per_sample("tolerance", kwargs.get("tolerance"), n, scalar_ok=True)
    rewards = []
    for completion, gold, options, kind, tol in zip(completions, answers, choices, answer_types, tolerances):
        prediction = graded_answer(
            completion_text(completion), gold, answer_type=kind, choices=options or None
        )
        correct = is_correct(
            prediction, gold, answer_type=kind, choices=options or None, tolerance=0.0 if tol is None else tol
        )
        rewards.append(1.0 if correct else 0.0)
    return rewards


_FORMAT_RE = re.compile(r"\s*<think>(?P<reasoning>.*?)</think>(?P<answer>.*)", re.DOTALL)


def _well_formatted(text: str | None) -> bool:
    if text is None:
        return False
    match = _FORMAT_RE.fullmatch(text)
    if match is None or _THINK_OPEN in match["reasoning"] or _THINK_OPEN in match["answer"]:
        return False
    if _THINK_CLOSE in match["answer"]:
        return False
    return extract_answer(text) is not None


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when a completion is ``<think>…</think>`` followed by an answer holding a ``\\boxed{…}``.

    Precisely: optional leading whitespace, then ``<think>``, the reasoning (possibly empty), ``</think>``,
    then an answer part whose last box closes and is not blank; exactly one ``<think>`` and one
    ``</think>`` in the whole completion. Text around the box is allowed. Keyword arguments are ignored.
    """
    return [1.0 if _well_formatted(completion_text(c)) else 0.0 for c in completions]


REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {"accuracy": accuracy_reward, "format": format_reward}
"""Reward functions by the name configs use."""
