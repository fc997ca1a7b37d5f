"""Answer extraction and scoring: roma's judge and its TRL reward functions. No torch.

One judge, :func:`is_correct`, decides whether a predicted answer matches the gold answer of an example;
the rewards (:func:`accuracy_reward`, :func:`format_reward`) and the evaluation both use it, so a model is
trained and measured by the same rule. The conventions, and where roma deliberately differs from other
graders, are written out in ``docs/rewards.md``. In short:

- **What is graded.** A completion's answer is the content of its last ``\\boxed{…}`` (or ``\\fbox{…}``)
  after the last ``</think>``. Text inside a think block never counts: the box of an unclosed
  ``<think>`` (truncated reasoning) is ignored. No box, or a last box whose braces never close: no answer.
  For a letter gold whose box names no option (``\\boxed{\\Delta E}``), an ``Answer: D`` after the box
  is the answer (:func:`graded_answer`).
- **choice** answers are letters. A prediction names a letter as ``B``, ``(B)``, ``B.``, ``B) 12``,
  ``option b``, ``The answer is B``, ``<answer>B</answer>`` or as the text of one of the ``choices``;
  never by a capital inside mathematics. Letter golds without option texts (options in the image) are
  letter sets: ``A, C`` = ``C and A``; ``C. 12`` names C.
- **number** answers are numbers or mathematical expressions: numbers (plain, or LaTeX that Math-Verify
  evaluates: ``½ = 0.5 = \\frac{1}{2}``) are compared by value: equal (a decimal of ≥ 6 significant
  digits also equals the ``1/3``, ``√2`` it rounds), or within the relative ``tolerance``
  (``|pred − gold| ≤ tol·|gold|``, ChartQA's relaxed accuracy; never for a year). Expressions and
  equations, bare or in LaTeX, and other mathematical objects (intervals, sets, tuples, matrices) are
  compared whole by Math-Verify. ``−`` is a minus, ``7,425,000`` has thousands separators, and ``50%``
  matches both ``0.5`` and ``50``.
- **text** answers are compared by their words, numbers and operators, case-, whitespace- and
  punctuation-insensitively (every number must match, ``x<y ≠ x>y``), and as numbers when both sides
  are plain numbers.

Nothing here raises on model output: a prediction that is ``None``, not a string, empty, longer than
:data:`MAX_PREDICTION_CHARS`, unbalanced or unparseable is simply wrong (reward 0.0). Invalid *gold* data
(an unknown ``answer_type``, a ``choice`` gold that is not a valid letter, a negative tolerance) raises
``ValueError``/``TypeError``.

Thread safety: Math-Verify times out with ``signal.alarm``, which only works in the main thread. roma
passes its timeouts only in the main thread and ``None`` elsewhere (as TRL does); in every thread a
structural guard (:func:`roma.rewards.mathverify._log10_bound`) refuses expressions whose value would
be astronomically large (``9^{9^{9^9}}``, ``1000000!``), which are what make sympy hang, and input
nested deeper than 12 brackets (Math-Verify's parser slows down by ~40 ms per level).

Modules: :mod:`~roma.rewards.extraction` (completions, the last box, answer normalisation),
:mod:`~roma.rewards.numeric` (numbers and tolerances), :mod:`~roma.rewards.mathverify` (Math-Verify,
guarded), :mod:`~roma.rewards.judge` (gold answers, option letters, :func:`is_correct`) and
:mod:`~roma.rewards.reward_functions` (the TRL reward functions); this package re-exports their API.
"""

from __future__ import annotations

from roma.rewards.extraction import MAX_PREDICTION_CHARS, answer_part, completion_text, extract_answer
from roma.rewards.judge import AnswerType, extract_choice, graded_answer, infer_answer_type, is_correct
from roma.rewards.reward_functions import REWARD_FUNCS, accuracy_reward, format_reward

__all__ = [
    "MAX_PREDICTION_CHARS",
    "AnswerType",
    "REWARD_FUNCS",
    "accuracy_reward",
    "answer_part",
    "completion_text",
    "extract_answer",
    "extract_choice",
    "format_reward",
    "graded_answer",
    "infer_answer_type",
    "is_correct",
]
