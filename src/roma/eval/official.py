"""Each benchmark's official metric, computed beside roma's accuracy.

roma scores every benchmark with one judge (:func:`roma.rewards.is_correct`), the rule its RL reward
uses. The benchmarks publish their own rules, and their headline numbers come from those; this module
re-implements them (read from the official scripts, not copied) so a report can show both:

==================  ==========================================================================================
benchmark           official rule (source)
==================  ==========================================================================================
``mathvista``       the extraction normalised by answer type: a choice letter (or ``(A)``) becomes its option
                    text, other text the most similar option (Levenshtein distance); ``integer``:
                    ``str(int(float(x)))``; ``float``: ``str(round(float(x), precision))``; ``list``:
                    ``str(x)``; then string equality with the gold (``lupantech/MathVista``
                    ``evaluation/calculate_score.py``: ``normalize_extracted_answer``, ``safe_equal``)
``chartqa``         relaxed accuracy: both sides as floats (``"12%"`` -> 0.12), within 5 % of a non-zero gold;
                    otherwise case-insensitive string equality; reported overall and for the human /
                    augmented test sets (lmms-eval ``tasks/chartqa/utils.py`` ``relaxed_correctness``, from
                    Qwen-VL's ``evaluate_vqa.py``; ChartQA paper §5.1)
``wemath``          per row: the first letter of the answer (``>`` ``<`` ``:`` ``.`` removed) equals the gold;
                    per problem (``ID``) its one-step rows against its multi-step row give Insufficient
                    Knowledge, Inadequate Generalisation, Complete Mastery and Rote Memorisation (strict and
                    loose); score = (N − 0.5·IG − RM − IK) / N over the N problems (525 in testmini)
                    (``We-Math/We-Math`` ``evaluation/four_dimensional_metrics.py``)
``mmstar``          the lower-cased prediction starts with the gold letter (also after ``(``, ``option ``,
                    ``the answer is ``); overall accuracy and per category / sub-category
                    (``MMStar-Benchmark/MMStar`` ``eval/vlmeval/evaluate/mmstar.py``)
``realworldqa``     letter golds: the answer's choice letter equals the gold; other golds: the lower-cased
                    answer without a final ``.`` equals the gold (lmms-eval ``tasks/realworldqa/utils.py``)
``visualpuzzles``   the answer's option letter (or the letter of the option text it names) equals the gold,
                    per category too (lmms-eval ``tasks/VisualPuzzles/utils.py``; its random letter for an
                    unreadable answer is scored wrong here, so the metric is deterministic)
``logicvista``      the sorted set of chosen letters equals the sorted gold letters (``"A, C"``), per
                    reasoning skill too (``Yijia-Xiao/LogicVista`` ``eval/extract_accuracy.py``,
                    ``analyze_accuracy.py``)
==================  ==========================================================================================

The prediction every rule reads is the answer roma extracted from the completion (the record's
``extracted``: the last ``\\boxed{}``, or the LLM judge's extraction); the official scripts extract with
an LLM (MathVista, LogicVista) or from a short direct answer, so only their *comparison* rules are
reproduced. Scores are computed per condition (clean, each degradation type and level) and pooled like
roma's (seen / unseen = mean over the pool's types).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from roma.data.schema import LETTERS

Meta = dict[str, Any]


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# --------------------------------------------------------------------------------------------------
# per-item rules: (prediction or None, gold answer, metadata) -> correct


def mathvista_correct(prediction: str | None, gold: str, meta: Meta) -> bool:
    """MathVista's ``normalize_extracted_answer`` + ``safe_equal`` (see the module docstring)."""
    extraction = "" if prediction is None else str(prediction).strip()
    if meta.get("question_type") == "multi_choice":
        choices = [str(c) for c in meta.get("choices") or []]
        if not choices:
            return False
        letters = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letters:
            extraction = letters[0].upper()
        if extraction in LETTERS[: len(choices)]:
            normalized = choices[LETTERS.index(extraction)]
        else:
            distances = [levenshtein(extraction, c) for c in choices]
            normalized = choices[distances.index(min(distances))]
        return normalized == str(meta.get("answer", gold))
    answer_type = meta.get("answer_type")
    try:
        if answer_type == "integer":
            normalized = str(int(float(extraction)))
        elif answer_type == "float":
            normalized = str(round(float(extraction), int(meta.get("precision") or 0)))
        else:
            normalized = extraction
    except (ValueError, OverflowError):
        return False
    return normalized == str(meta.get("answer", gold))


def relaxed_correct(prediction: str | None, gold: str, max_relative_change: float = 0.05) -> bool:
    """ChartQA's relaxed accuracy for one answer (see the module docstring)."""
    if prediction is None:
        return False

    def to_float(text: str) -> float | None:
        try:
            return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            return None

    pred_value, gold_value = to_float(prediction), to_float(gold)
    if pred_value is not None and gold_value:
        return abs(pred_value - gold_value) / abs(gold_value) <= max_relative_change
    return prediction.lower() == gold.lower()


def wemath_correct(prediction: str | None, gold: str, meta: Meta) -> bool:
    """We-Math's ``joker``: the first character after removing ``><:.`` is a letter A–H equal to the gold."""
    if prediction is None:
        return False
    text = re.sub(r"[><:.]", "", prediction.split("Answer")[-1].strip()).strip()
    return bool(text) and text[0] in "ABCDEFGH" and text[0] == gold


def mmstar_correct(prediction: str | None, gold: str, meta: Meta) -> bool:
    """MMStar's ``MMStar_eval`` prefix rule on the lower-cased prediction."""
    predict = ("" if prediction is None else str(prediction)).lower().strip().replace("\n", " ")
    answer = gold.lower().strip()
    for prefix in ("", "(", "option ", "the answer is "):
        if predict.startswith(prefix) and len(predict) > len(prefix) and predict[len(prefix)] == answer:
            return True
    return False


def _choice_letter(prediction: str | None, options: Sequence[str] = (), letters: str = "ABCDEFGH") -> str | None:
    """The option letter a short answer names: ``B``, ``(B)``, ``B.``, ``B) text``, or an option's text."""
    if prediction is None:
        return None
    text = prediction.strip().strip(",.!?;:'\"").strip()
    match = re.match(r"^\(?([A-Za-z])\)?(?:$|[\s.:)])", text)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper()
    for i, option in enumerate(options):
        if text.lower() == str(option).strip().lower():
            return LETTERS[i]
    return None


def realworldqa_correct(prediction: str | None, gold: str, meta: Meta) -> bool:
    """lmms-eval's ``realworldqa_process_results``: letter golds by letter, others by exact lower-case text."""
    gold = gold.strip()
    if gold.upper() in ("A", "B", "C", "D"):
        return _choice_letter(prediction, letters="ABCD") == gold.upper()
    return prediction is not None and prediction.lower().strip().rstrip(".") == gold.lower()


def visualpuzzles_correct(prediction: str | None, gold: str, meta: Meta) -> bool:
    """lmms-eval's ``VisualPuzzles_process_result`` (an unreadable answer is wrong, not a random letter)."""
    letter = _choice_letter(prediction, meta.get("choices") or (), letters="ABCD")
    return letter is not None and letter.lower() == gold.strip().lower()


def logicvista_correct(prediction: str | None, gold: str, meta: Meta) -> bool:
    """LogicVista's ``extract_accuracy.py``: sorted lower-cased chosen letters equal the sorted gold list."""
    if prediction is None or not prediction.strip():
        return False
    tokens = [t for t in re.split(r"[\s,;]+|(?:\band\b)", prediction.strip()) if t]
    letters = [re.sub(r"^\(?([A-Za-z])[).]?$", r"\1", t) for t in tokens]
    if not all(len(t) == 1 for t in letters):
        letter = _choice_letter(prediction, meta.get("choices") or (), letters=LETTERS)
        letters = [letter] if letter else [prediction.strip()]
    truth = sorted(t.lower() for t in gold.split(", "))
    return sorted(t.lower() for t in letters) == truth


# --------------------------------------------------------------------------------------------------
# scores of a set of items


Item = tuple[bool, Meta]
"""One scored record: (official correctness, the example's metadata)."""


def _accuracy(items: Sequence[Item], by: str | None = None) -> tuple[float, dict[str, Any]]:
    score = sum(c for c, _ in items) / len(items)
    parts: dict[str, Any] = {}
    if by is not None:
        groups: dict[str, list[bool]] = defaultdict(list)
        for correct, meta in items:
            for key in str(meta.get(by) or "").split(", "):
                groups[key].append(correct)
        parts = {key: sum(v) / len(v) for key, v in sorted(groups.items())}
    return score, parts


def wemath_scores(items: Sequence[Item]) -> tuple[float, dict[str, Any]]:
    """WeMath's four-dimensional metric over the problems whose every step row is present.

    Returns ``(strict score, parts)`` with ``score_loose``, the counts ``IK``, ``IG``, ``CM_strict``,
    ``CM_loose``, ``RM_strict``, ``RM_loose``, ``n_problems`` and ``incomplete`` (problems left out because
    a row is missing, e.g. skipped or cut by ``limit``).
    """
    problems: dict[str, dict[str, bool]] = defaultdict(dict)
    for correct, meta in items:
        problems[str(meta.get("ID"))][str(meta.get("key"))] = correct
    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    complete = incomplete = 0
    for rows in problems.values():
        steps = 3 if any(k.startswith("3steps") for k in rows) else 2
        keys = [f"{steps}steps_{i}" for i in range(1, steps + 1)]
        if any(k not in rows for k in keys) or f"{steps}steps_multi" not in rows:
            incomplete += 1
            continue
        complete += 1
        subs, multi = [rows[k] for k in keys], rows[f"{steps}steps_multi"]
        if multi:
            counts["CM_strict"] += all(subs)
            counts["CM_loose"] += any(subs)
            counts["RM_strict"] += not all(subs)
            counts["RM_loose"] += not any(subs)
        else:
            counts["IG"] += all(subs)
            counts["IK"] += not all(subs)
    if complete == 0:
        return float("nan"), {"n_problems": 0, "incomplete": incomplete}
    base = complete - 0.5 * counts["IG"] - counts["IK"]
    parts = {"score_loose": (base - counts["RM_loose"]) / complete, **counts, "n_problems": complete,
             "incomplete": incomplete}
    return (base - counts["RM_strict"]) / complete, parts


def chartqa_scores(items: Sequence[Item]) -> tuple[float, dict[str, Any]]:
    score, parts = _accuracy(items, by="task")
    return score, {f"relaxed_{k}": v for k, v in parts.items()}


def mmstar_scores(items: Sequence[Item]) -> tuple[float, dict[str, Any]]:
    score, categories = _accuracy(items, by="category")
    _, sub = _accuracy(items, by="l2_category")
    return score, {**categories, **{f"{k} (l2)": v for k, v in sub.items()}}


class Rule:
    """One benchmark's official metric: its per-record rule and its aggregate."""

    def __init__(self, metric: str, correct: Callable[[str | None, str, Meta], bool],
                 scores: Callable[[Sequence[Item]], tuple[float, dict[str, Any]]]) -> None:
        self.metric, self.correct, self.scores = metric, correct, scores


RULES: dict[str, Rule] = {
    "mathvista": Rule("accuracy (MathVista answer-type / precision rules)", mathvista_correct,
                      lambda items: _accuracy(items, by="answer_type")),
    "chartqa": Rule("relaxed accuracy (5 %)", lambda p, g, m: relaxed_correct(p, g), chartqa_scores),
    "wemath": Rule("score (strict), four-dimensional", wemath_correct, wemath_scores),
    "mmstar": Rule("accuracy (MMStar prefix rule)", mmstar_correct, mmstar_scores),
    "realworldqa": Rule("exact match", realworldqa_correct, lambda items: _accuracy(items)),
    "visualpuzzles": Rule("accuracy", visualpuzzles_correct, lambda items: _accuracy(items, by="task")),
    "logicvista": Rule("accuracy (letter sets)", logicvista_correct, lambda items: _accuracy(items, by="task")),
}
"""Benchmark name -> its official metric (benchmarks without one, like the synthetic suite, get none)."""


def summarize(records: Iterable[dict[str, Any]], meta: dict[str, dict[str, Meta]]) -> dict[str, Any]:
    """Official metrics of a run: ``{benchmark: {metric, clean, levels, disagree_clean}}``.

    Args:
        records: evaluation records (``benchmark, id, setting, type, level, answer, extracted, correct``).
        meta: per benchmark, per example id, the metadata the loader kept (:class:`~roma.data.benchmarks.
            LoadedBenchmark.meta`); records of ids without metadata are scored with their task only.

    ``clean`` and each ``levels[L][type]`` hold ``{"score", "n", "parts"}``; ``levels[L]["seen"]`` /
    ``["unseen"]`` are the means of that pool's type scores (as roma pools its accuracy). ``disagree_clean``
    counts clean records where roma's judge and the official rule disagree.
    """
    grouped: dict[str, dict[tuple[str, str, int], list[Item]]] = defaultdict(lambda: defaultdict(list))
    disagree: dict[str, int] = defaultdict(int)
    for record in records:
        rule = RULES.get(record["benchmark"])
        if rule is None:
            continue
        item_meta = meta.get(record["benchmark"], {}).get(record["id"], {"task": record.get("task")})
        correct = bool(rule.correct(record.get("extracted"), str(record["answer"]), item_meta))
        grouped[record["benchmark"]][(record["setting"], record["type"], int(record["level"]))].append(
            (correct, item_meta))
        if record["setting"] == "clean" and correct != bool(record["correct"]):
            disagree[record["benchmark"]] += 1
    out: dict[str, Any] = {}
    for name, conditions in grouped.items():
        rule = RULES[name]
        entry: dict[str, Any] = {"metric": rule.metric, "levels": {}, "disagree_clean": disagree[name]}
        pooled: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for (setting, kind, level), items in sorted(conditions.items()):
            score, parts = rule.scores(items)
            stat = {"score": score, "n": len(items), "parts": parts}
            if setting == "clean":
                entry["clean"] = stat
            else:
                entry["levels"].setdefault(str(level), {})[kind] = {**stat, "setting": setting}
                pooled[str(level)][setting].append(score)
        for level, settings in pooled.items():
            for setting, scores in settings.items():
                entry["levels"][level][setting] = sum(scores) / len(scores)
        out[name] = entry
    return out


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) or value != value else f"{100 * value:.1f}"


def report_lines(summary: dict[str, Any]) -> list[str]:
    """The report section: per benchmark, roma's accuracy and the official metric side by side."""
    official = summary.get("official") or {}
    if not official:
        return []
    level = str(summary.get("main_level", 3))
    lines = ["## Official metrics", "",
             "Each benchmark's own rule applied to the answers roma extracted (sources in docs/evaluation.md); "
             "roma's accuracy beside it. Disagree: clean items where the two rules differ.", ""]
    lines += ["| Benchmark | Official metric | roma clean | Official clean | Official seen | Official unseen "
              "| Disagree | Details (clean) |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in official.items():
        roma = summary.get("benchmarks", {}).get(name, {}).get("clean") or {}
        clean = entry.get("clean") or {}
        at_level = entry.get("levels", {}).get(level, {})
        details = ", ".join(f"{k} {_pct(v) if isinstance(v, float) else v}"
                            for k, v in (clean.get("parts") or {}).items())
        lines.append(f"| {name} | {entry['metric']} | {_pct(roma.get('acc'))} | {_pct(clean.get('score'))} | "
                     f"{_pct(at_level.get('seen'))} | {_pct(at_level.get('unseen'))} | {entry['disagree_clean']} | "
                     f"{details} |")
    return lines + [""]
