"""Completions and answer extraction: the graded part of a completion, its last box, and the
normalisation of answer text (wrappers, tokens). See :mod:`roma.rewards`.
"""

from __future__ import annotations

import re
import unicodedata

MAX_PREDICTION_CHARS = 20_000
"""A prediction longer than this is wrong without being parsed (no answer is that long)."""

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"

# ---------------------------------------------------------------------------------------------------------
# Completions and answer extraction


def completion_text(completion: object) -> str | None:
    """The text of one completion as TRL passes it, or ``None`` when there is none.

    Accepts a string, or conversational messages ``[{"role": "assistant", "content": ...}]`` (the last
    assistant message is used; without roles, the last message), where ``content`` is a string or a list of
    parts (strings or ``{"type": "text", "text": ...}``; other parts such as images carry no text).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        message = completion
    elif isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        if not messages:
            return None
        assistant = [m for m in messages if m.get("role") == "assistant"]
        message = (assistant or messages)[-1]
    else:
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif (
                isinstance(part, dict)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            ):
                texts.append(part["text"])
        return "".join(texts) if texts else None
    return None


def answer_part(text: str) -> str:
    """The graded part of a completion, stripped: what follows the last ``</think>``.

    Without ``</think>``, the text before an unclosed ``<think>`` (reasoning that never ended does not
    count), or the whole text when there is no think tag at all.
    """
    if not isinstance(text, str):
        raise TypeError(f"answer_part expects a str, got {type(text).__name__}")
    if _THINK_CLOSE in text:
        return text.rsplit(_THINK_CLOSE, 1)[1].strip()
    if _THINK_OPEN in text:
        return text.split(_THINK_OPEN, 1)[0].strip()
    return text.strip()


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing a group whose content starts at ``start``; -1 if it never closes.
    Escaped braces (``\\{``, ``\\}``) and other ``\\x`` pairs do not count."""
    depth = 1
    for token in _BRACE_TOKEN_RE.finditer(text, start):
        if token.group() == "{":
            depth += 1
        elif token.group() == "}":
            depth -= 1
            if depth == 0:
                return token.start()
    return -1


def _last_box_span(text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the content of the last top-level ``\\boxed{}``/``\\fbox{}`` (boxes nested in
    it are part of it; ``text[end]`` is its closing brace); ``None`` when there is no box or the last one
    never closes."""
    last, pos = None, 0
    while (match := _BOX_RE.search(text, pos)) is not None:
        end = _closing_brace(text, match.end())
        if end < 0:
            return None
        last, pos = (match.end(), end), end + 1
    return last


def _last_box(text: str) -> str | None:
    """Content of the last top-level box (see :func:`_last_box_span`), or ``None``."""
    span = _last_box_span(text)
    return None if span is None else text[span[0] : span[1]]


def extract_answer(text: object) -> str | None:
    """The content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) in the answer part of ``text``.

    Nested braces are kept (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); the answer part is what follows
    the last ``</think>`` (see :func:`answer_part`). ``None`` when ``text`` is not a string, has no box
    there, its last box never closes, or the box is blank.
    """
    if not isinstance(text, str):
        return None
    content = _last_box(answer_part(text))
    if content is None or not content.strip():
        return None
    return content.strip()


# ---------------------------------------------------------------------------------------------------------
# Normalisation

_UNICODE_MINUS = str.maketrans({"\u2212": "-", "\ufe63": "-", "\uff0d": "-", "\u00a0": " "})
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_TEXT_CMD_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|textnormal|mathrm|mathbf|mathit|mathsf|mbox|operatorname)\s*"
    r"\{([^{}]*)\}"
)
_DELIMITER_RE = re.compile(r"\\[()\[\]]|\$")


def _clean(text: str) -> str:
    return text.translate(_UNICODE_MINUS)


def _strip_wrappers(text: str) -> str:
    """Unwrap an answer: last ``<answer>…</answer>``, last box, ``\\text{…}``-like commands, math
    delimiters and a ``\\$`` currency sign. ``"$\\boxed{\\text{(C)}}.$"`` -> ``"(C)."``."""
    text = _clean(text).strip()
    tags = _ANSWER_TAG_RE.findall(text)
    if tags:
        text = tags[-1].strip()
    if _BOX_RE.search(text):
        boxed = _last_box(text)
        if boxed is not None:
            text = boxed
    for _ in range(8):  # nested \text{\textbf{…}}
        unwrapped = _TEXT_CMD_RE.sub(r"\1", text)
        if unwrapped == text:
            break
        text = unwrapped
    text = text.replace("\\$", "")
    return _DELIMITER_RE.sub(" ", text).strip()


_ARTICLES = ("a", "an", "the")
_EMPHASIS_RE = re.compile(r"\*{2,}|_{2,}|^\*+|\*+$")  # markdown **bold**, __bold__, a leading/trailing *
# a hyphen between two words of two or more letters joins words ("New-York"); any other "-" is a minus
_JOINING_HYPHEN_RE = re.compile(r"(?<=[^\W\d_]{2})[-\u2010\u2011](?=[^\W\d_]{2})")
_OPERATOR_SPELLINGS = (("<=", "≤"), (">=", "≥"), ("!=", "≠"))
_PERCENT_WORD_RE = re.compile(r"\bper\s?cent\b")
_TEXT_TOKEN_RE = re.compile(
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"  # 1,000.5  12  .5
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<operator>[-<>=+*/^%≤≥≠±×÷∓])"
)


def _canonical_digits(number: str) -> str:
    """``"1,000.50"`` -> ``"1000.5"``, ``"007"`` -> ``"7"``, ``".5"`` -> ``"0.5"``: one spelling per value."""
    whole, _, decimals = number.replace(",", "").partition(".")
    whole, decimals = whole.lstrip("0") or "0", decimals.rstrip("0")
    return f"{whole}.{decimals}" if decimals else whole


def _text_tokens(text: str) -> tuple[str, ...]:
    """The words, numbers and operators of a text answer, case-, whitespace- and punctuation-insensitive,
    without a leading article: ``" The New-York. "`` -> ``("new", "york")`` (a lone ``"a"`` stays).

    Numbers are one token each in a canonical form (``"1,000"`` and ``"1000.0"`` are the same token), so
    two texts are equal only if every number matches. Comparison and arithmetic operators are tokens and
    never dropped (``x<y`` ≠ ``x>y``; ``<=`` is ``≤``); a hyphen joining two words is a space, any other
    ``-`` is a minus. Markdown emphasis (``**``) is dropped, other punctuation separates tokens.
    """
    text = unicodedata.normalize("NFKC", _strip_wrappers(text)).casefold()
    text = _JOINING_HYPHEN_RE.sub(" ", _EMPHASIS_RE.sub(" ", text.strip()))
    for spelling, symbol in _OPERATOR_SPELLINGS:
        text = text.replace(spelling, symbol)
    text = _PERCENT_WORD_RE.sub("%", text)
    tokens = [
        _canonical_digits(match["number"]) if match["number"] else match.group()
        for match in _TEXT_TOKEN_RE.finditer(text)
    ]
    if len(tokens) > 1 and tokens[0] in _ARTICLES:
        tokens = tokens[1:]
    return tuple(tokens)
