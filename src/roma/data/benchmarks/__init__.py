"""Loaders for the paper's seven evaluation benchmarks and its training set, in roma's schema.

Each loader reads a benchmark in the forms its users hold it and normalises every row to the common
schema of :mod:`roma.data.schema` (``id, task, image, prompt, answer, choices, answer_type, tolerance``):

==================  =========================  ===========  ======================================
name                hub id                     split        answers
==================  =========================  ===========  ======================================
``mathvista``       ``AI4Math/MathVista``      testmini     choice letter / number (precision) / text
``wemath``          ``We-Math/We-Math``        testmini     choice letter (options in ``option``)
``chartqa``         ``lmms-lab/ChartQA``       test         number (5 % relaxed) / text
``logicvista``      ``lscpku/LogicVista``      test         letter(s), options inside the question
``mmstar``          ``Lin-Chen/MMStar``        val          choice letter (options inline)
``visualpuzzles``   ``neulab/VisualPuzzles``   test         choice letter (options list or image)
``realworldqa``     ``xai-org/RealworldQA``    test         choice letter (options inline) / number / text
``mmrl30k``         ``XenoZLH/MMRL30k``        train        choice letter / number / text
==================  =========================  ===========  ======================================

Forms that load (:func:`read_source`): a hub id or registry name, read **offline from the local Hugging
Face cache** (a clean ``ValueError`` when it is not there); a ``save_to_disk`` folder (``Dataset`` or
``DatasetDict``); a downloaded repository snapshot or its ``data/`` folder (parquet shards named
``<split>-NNNNN-of-NNNNN*.parquet``; json / markdown side files are ignored); a single parquet, jsonl or
json file (json: a list of rows, or an object of rows keyed by id as MathVista's and LogicVista's own
repositories publish them). Known alternative copies (:attr:`BenchmarkSpec.alt_hub_ids`, e.g. ChartQA
from HuggingFaceM4 or its authors) read through the same loader.

The split is always explicit: the caller's ``split`` or the registry's default, picked from the files'
names or the ``DatasetDict``; rows of another split are never merged in. A split that is absent is an
error listing the splits present (:attr:`BenchmarkSpec.split_aliases` names the few renamed splits that
are accepted with a warning).

Bad rows: a row whose image is missing or broken, or whose question / answer / options cannot be read,
is skipped and reported with its id and reason (:class:`LoadedBenchmark`); one bad row never aborts a
benchmark. Only when more than ``max_skipped_share`` (default :data:`MAX_SKIPPED_SHARE`) of the rows are
unusable is the benchmark refused, with a ``ValueError`` naming the share and the first bad rows.

Prompts follow lmms-eval's task prompts (``lmms_eval/tasks/<benchmark>/``, the ``*_reasoning`` /
``*_thinking`` / ``*_cot`` variants where they exist; see ``docs/evaluation.md``), with roma's answer
instruction (think, then ``\\boxed{}``) in place of the benchmark's direct-answer line.

Modules: :mod:`~roma.data.benchmarks.options` (option and letter parsing),
:mod:`~roma.data.benchmarks.specs` (per-benchmark normalisers, prompts and the registry),
:mod:`~roma.data.benchmarks.sources` (forms and splits) and :mod:`~roma.data.benchmarks.loading`
(normalising rows, the loaders); this package re-exports their public names.
"""

from __future__ import annotations

from roma.data.benchmarks.loading import (
    FEATURES,
    MAX_SKIPPED_SHARE,
    LoadedBenchmark,
    Skip,
    check_skipped_share,
    decode_image,
    load_benchmark,
    load_benchmark_with_skips,
    normalize_rows,
    parse_rows,
    read_benchmark,
    row_ids,
)
from roma.data.benchmarks.options import as_number, parse_options, parse_wemath_options
from roma.data.benchmarks.sources import Source, parse_data_arg, read_source, resolve_benchmark
from roma.data.benchmarks.specs import (
    BENCHMARKS,
    CHARTQA_TOLERANCE,
    CHARTQA_TYPES,
    MATHVISTA_HINTS,
    MMSTAR_DIRECT,
    REALWORLDQA_DIRECT,
    VISUALPUZZLES_IN_IMAGE,
    BenchmarkSpec,
    RowError,
    check_training_split,
    mathvista_query,
)

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "CHARTQA_TOLERANCE",
    "CHARTQA_TYPES",
    "FEATURES",
    "LoadedBenchmark",
    "MATHVISTA_HINTS",
    "MAX_SKIPPED_SHARE",
    "MMSTAR_DIRECT",
    "REALWORLDQA_DIRECT",
    "RowError",
    "Skip",
    "Source",
    "VISUALPUZZLES_IN_IMAGE",
    "as_number",
    "check_skipped_share",
    "check_training_split",
    "decode_image",
    "load_benchmark",
    "load_benchmark_with_skips",
    "mathvista_query",
    "normalize_rows",
    "parse_data_arg",
    "parse_options",
    "parse_rows",
    "parse_wemath_options",
    "read_benchmark",
    "read_source",
    "resolve_benchmark",
    "row_ids",
]
