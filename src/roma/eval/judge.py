"""Answer judges: the rule judge (default) and an LLM judge over an OpenAI-compatible API.

Both are callables ``judge(completion, example) -> Verdict`` where ``example`` is a row of roma's
schema (``prompt, answer, choices, answer_type, tolerance``).

- :class:`RuleJudge` takes the answer the training reward grades, the last ``\\boxed{}`` after the
  ``<think>`` block (:func:`roma.rewards.graded_answer`), and compares it with
  :func:`roma.rewards.is_correct` (choice letters, numbers within the example's relative tolerance,
  expressions, normalised text).
- :class:`OpenAIJudge` asks a chat model (the paper used Qwen2.5-72B-Instruct) over one of two protocols:
  ``protocol="judge"`` (default; the paper's: "Qwen2.5-72B-Instruct [...] to extract final answers from
  model responses and assess their correctness against reference answers") — the LLM extracts the final
  answer *and* decides, replying with a JSON verdict; ``protocol="extract"`` (lmms-eval's MathVista: the
  LLM extracts only, code compares) — the LLM sees the question and the response but not the gold answer,
  replies ``{"extracted": ...}``, and :func:`roma.rewards.is_correct` compares that answer as the rule judge
  does. Paper-style tables use ``"judge"``; ``"extract"`` makes the decision reproducible and cannot be
  swayed by the gold answer. It speaks the
  ``/chat/completions`` endpoint with the standard library (``urllib``); transport failures (refused
  connection, timeout, HTTP 429 / 5xx) are retried with exponential backoff, and when the retries
  run out :class:`JudgeUnavailableError` stops the run: the records finished so far stay on disk and
  rerunning the same command resumes. A reply that holds no readable verdict scores the record as
  wrong and keeps the raw reply in ``Verdict.error`` (counted in the run summary).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roma.data.schema import LETTERS, format_choices


@dataclass(frozen=True)
class Verdict:
    """A judged completion."""

    extracted: str | None
    """The final answer read from the completion (``None``: none found)."""
    correct: bool
    """Whether it matches the gold answer."""
    judge: str
    """Which judge decided (``"rule"`` or ``"openai:<model>"``)."""
    error: str | None = None
    """Why the verdict could not be read (LLM judge only); the record then counts as wrong."""


class JudgeUnavailableError(RuntimeError):
    """The LLM judge could not be reached (after retries) or refused the request."""


def user_text(example: dict[str, Any]) -> str:
    """The text of the example's user turn (question, options and instruction)."""
    for turn in example["prompt"]:
        if turn.get("role") == "user":
            return "\n".join(part["text"] for part in turn["content"] if part.get("type") == "text" and part.get("text"))
    raise ValueError(f"example {example.get('id')!r} has no user turn in its prompt")


class RuleJudge:
    """Rule-based extraction and comparison (:mod:`roma.rewards`); never raises on model output."""

    name = "rule"

    def __call__(self, completion: str, example: dict[str, Any]) -> Verdict:
        from roma.rewards import graded_answer

        choices = list(example.get("choices") or []) or None
        extracted = graded_answer(completion, example["answer"], answer_type=example.get("answer_type"), choices=choices)
        return self.compare(extracted, example)

    def compare(self, extracted: str | None, example: dict[str, Any], *, judge: str | None = None) -> Verdict:
        """The verdict on an already extracted answer (``None``: none found → wrong), with the rule comparison."""
        from roma.rewards import is_correct

        choices = list(example.get("choices") or []) or None
        correct = extracted is not None and bool(
            is_correct(
                extracted,
                example["answer"],
                answer_type=example.get("answer_type"),
                choices=choices,
                tolerance=float(example.get("tolerance") or 0.0),
            )
        )
        return Verdict(extracted, correct, judge or self.name)


SYSTEM_PROMPT = (
    "You grade answers to visual reasoning questions. You are given the question, the gold answer and a "
    "model's response. First extract the model's final answer: the content of the last \\boxed{} that comes "
    "after its </think> reasoning block; if there is no \\boxed{}, the answer the response states last; "
    "if it gives none, null. Then decide whether that final answer is equivalent to the gold answer. "
    "For multiple choice, the right option letter or the exact text of the right option is correct; any "
    "other option is wrong. Numbers are equivalent when equal after removing units and formatting, or "
    "within the stated relative tolerance. Judge only the final answer, not the reasoning. "
    'Reply with one JSON object and nothing else: {"extracted": <string or null>, "correct": <true or false>}'
)

EXTRACT_SYSTEM_PROMPT = (
    "You read answers to visual reasoning questions. You are given the question and a model's response. "
    "Extract the model's final answer: the content of the last \\boxed{} that comes after its </think> "
    "reasoning block; if there is no \\boxed{}, the answer the response states last; if it gives none, null. "
    "For multiple choice, give the option letter. For a number, give the number alone, without units. Do not "
    "solve the question yourself and do not correct the answer. "
    'Reply with one JSON object and nothing else: {"extracted": <string or null>}'
)

PROTOCOLS: tuple[str, ...] = ("judge", "extract")

MAX_RESPONSE_CHARS = 8000
"""Longer completions are cut to their last this-many characters (the final answer is at the end)."""


def judge_messages(completion: str, example: dict[str, Any], *, protocol: str = "judge") -> list[dict[str, str]]:
    """The chat messages sent to the LLM judge for one completion (``protocol`` as :class:`OpenAIJudge`'s:
    ``"extract"`` leaves the gold answer out)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    lines = [f"Question:\n{user_text(example)}"]
    choices = list(example.get("choices") or [])
    if choices:
        lines.append(f"Options:\n{format_choices(choices)}")
    response = completion if len(completion) <= MAX_RESPONSE_CHARS else "..." + completion[-MAX_RESPONSE_CHARS:]
    if protocol == "extract":
        lines.append(f"Model response:\n<<<\n{response}\n>>>")
        return [{"role": "system", "content": EXTRACT_SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(lines)}]
    gold = example["answer"]
    if example.get("answer_type") == "choice" and choices:
        gold = f"{gold} ({choices[LETTERS.index(gold)]})"
    lines.append(f"Gold answer: {gold}")
    tolerance = float(example.get("tolerance") or 0.0)
    if example.get("answer_type") == "number" and tolerance > 0:
        lines.append(f"Relative tolerance for numbers: {tolerance:g}")
    lines.append(f"Model response:\n<<<\n{response}\n>>>")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(lines)}]


_TRUE = {"true", "yes", "correct", "1"}
_FALSE = {"false", "no", "incorrect", "wrong", "0"}


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return None


def _json_objects(text: str) -> list[Any]:
    """Every balanced ``{...}`` span of ``text`` that parses as JSON, in order."""
    found, depth, start, in_string, escaped = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"' and depth > 0:
            in_string, escaped = True, False
        elif ch == "{":
            depth, start = depth + 1, i if depth == 0 else start
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                try:
                    found.append(json.loads(text[start : i + 1]))
                except json.JSONDecodeError:
                    pass
    return found


def parse_extraction(content: str) -> tuple[str | None] | None:
    """``(extracted,)`` from an extraction reply (the last JSON object with an ``extracted`` key; JSON
    ``null`` → ``(None,)``), or ``None`` if the reply holds no such object."""
    for obj in reversed(_json_objects(content)):
        if isinstance(obj, dict) and "extracted" in obj:
            value = obj["extracted"]
            return (None if value is None or str(value).strip().lower() in ("", "null", "none") else str(value),)
    return None


def parse_verdict(content: str) -> tuple[str | None, bool] | None:
    """``(extracted, correct)`` from a judge reply, or ``None`` if it holds no readable verdict.

    Accepts the JSON object alone, inside a code fence or surrounded by prose (the last object with a
    ``correct`` key wins), with ``correct`` as a boolean, 0/1 or "yes"/"no"/"true"/"false"; falls back
    to a bare ``"correct": true`` pattern.
    """
    for obj in reversed(_json_objects(content)):
        if isinstance(obj, dict) and "correct" in obj:
            correct = _as_bool(obj["correct"])
            if correct is None:
                continue
            extracted = obj.get("extracted")
            return (None if extracted is None else str(extracted)), correct
    match = re.search(r'"?correct"?\s*:\s*"?(true|false|yes|no)"?', content, re.IGNORECASE)
    if match:
        return None, match.group(1).lower() in _TRUE
    return None


@dataclass
class OpenAIJudge:
    """LLM judge over an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, SGLang, OpenAI, ...)."""

    url: str
    """Base URL (``http://host:8000/v1``) or the full ``.../chat/completions`` URL."""
    model: str
    """Model name sent in the request (the paper: ``Qwen/Qwen2.5-72B-Instruct``)."""
    api_key: str | None = None
    """Bearer token, if the server needs one (read from an environment variable by the CLI)."""
    timeout: float = 120.0
    """Seconds to wait for one reply."""
    max_retries: int = 5
    """Retries of a failed request (connection error, timeout, HTTP 429 / 5xx) before giving up."""
    backoff: float = 2.0
    """Seconds before the first retry; doubled after every failure."""
    max_backoff: float = 60.0
    """Cap on a single wait between retries."""
    max_tokens: int = 256
    """Reply length limit sent to the server."""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    """How to wait between retries (injectable for tests)."""
    protocol: str = "judge"
    """``"judge"``: the LLM extracts and decides (the paper's); ``"extract"``: the LLM extracts, the rule
    judge's :func:`roma.rewards.is_correct` decides (lmms-eval's MathVista). See the module docstring."""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"judge url must start with http:// or https://, got {self.url!r}")
        if self.max_retries < 0 or self.backoff < 0:
            raise ValueError(f"max_retries and backoff must be >= 0, got {self.max_retries}, {self.backoff}")
        base = self.url.rstrip("/")
        self.endpoint = base if base.endswith("/chat/completions") else base + "/chat/completions"

    @property
    def name(self) -> str:
        return f"openai:{self.model}" if self.protocol == "judge" else f"openai-extract:{self.model}+rule"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The reply text to ``messages``; retries transport failures, then raises :class:`JudgeUnavailableError`."""
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": self.max_tokens}
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            try:
                reply = self._post(body)
            except urllib.error.HTTPError as error:
                detail = error.read().decode("utf-8", "replace")[:300]
                if error.code != 429 and error.code < 500:  # a request the server refuses will not improve
                    raise JudgeUnavailableError(
                        f"LLM judge at {self.endpoint} refused the request: HTTP {error.code} {detail!r} "
                        f"(check --judge-model {self.model!r} and the API key)"
                    ) from None
                last_error = f"HTTP {error.code} {detail!r}"
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as error:
                last_error = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
                continue
            try:
                return str(reply["choices"][0]["message"]["content"] or "")
            except (KeyError, IndexError, TypeError):
                last_error = f"reply without choices[0].message.content: {str(reply)[:300]}"
        raise JudgeUnavailableError(
            f"LLM judge at {self.endpoint} failed {self.max_retries + 1} time(s); last error: {last_error}. "
            "The records finished so far are kept; rerun the same command to resume."
        )

    def __call__(self, completion: str, example: dict[str, Any]) -> Verdict:
        content = self.complete(judge_messages(completion, example, protocol=self.protocol))
        if self.protocol == "extract":
            extraction = parse_extraction(content)
            if extraction is None:
                return Verdict(None, False, self.name, error=f"no extraction in judge reply: {content[:300]!r}")
            return RuleJudge().compare(extraction[0], example, judge=self.name)
        parsed = parse_verdict(content)
        if parsed is None:
            return Verdict(None, False, self.name, error=f"no verdict in judge reply: {content[:300]!r}")
        extracted, correct = parsed
        return Verdict(extracted, correct, self.name)
