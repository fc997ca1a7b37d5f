"""Evaluation under the paper's clean / seen / unseen protocol (method.md §9), or any degradation pool.

- :func:`evaluate` — score a model on datasets under every condition, resumable (:mod:`roma.eval.runner`);
- :mod:`roma.eval.protocol` — conditions, the seeded degraded views, aggregation (macro-average per pool,
  average over benchmarks, gaps, standard errors);
- :mod:`roma.eval.generation` — batched greedy generation (transformers; vLLM when available);
- :mod:`roma.eval.judge` — the rule judge and the OpenAI-compatible LLM judge;
- :mod:`roma.eval.records` — the append-only ``records.jsonl``;
- :mod:`roma.eval.official` — each benchmark's official metric, beside roma's accuracy;
- :mod:`roma.eval.robustness` — relative robustness, mCE / relative mCE against a reference run, answer
  flips, worst-type accuracy, paired bootstrap intervals (:mod:`roma.eval.robustness_report` renders them);
- :mod:`roma.eval.report` — ``report.md``, plots and ``roma report`` (several runs side by side).

``roma eval`` is :mod:`roma.eval.cli`.
"""

from roma.eval.judge import JudgeUnavailableError, OpenAIJudge, RuleJudge, Verdict
from roma.eval.protocol import CLEAN, SETTINGS, Condition, aggregate, conditions, make_view
from roma.eval.report import compare, write_report
from roma.eval.runner import evaluate

__all__ = [
    "CLEAN",
    "SETTINGS",
    "Condition",
    "JudgeUnavailableError",
    "OpenAIJudge",
    "RuleJudge",
    "Verdict",
    "aggregate",
    "compare",
    "conditions",
    "evaluate",
    "make_view",
    "write_report",
]
