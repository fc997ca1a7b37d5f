"""The benchmarks' real files, in every form a user holds them, through the path of ``roma eval --data``.

The fixtures live in ``../shared/bench-fixtures/`` beside the checkout: text rows copied from each
benchmark's own repository, in the hub's file layouts (see each folder's ``PROVENANCE.md``), and the full
text of four evaluation splits (``*_full.json``). Gold answers are checked against the benchmarks' own
rows, not against roma's output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from roma.data.benchmarks import (
    BENCHMARKS,
    check_training_split,
    parse_rows,
    parse_wemath_options,
    read_benchmark,
)
from roma.data.benchmarks.sources import _json_rows
from roma.data.schema import LETTERS, validate_example
from roma.eval.cli import main as eval_main
from roma.eval.runner import load_eval_data

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench-fixtures"


@pytest.fixture(scope="module", autouse=True)
def _fixtures_present():
    assert FIXTURES.is_dir(), f"the benchmark fixtures are expected at {FIXTURES} (shared/ beside the checkout)"


def data(arg: str, split: str | None = None):
    """Load like ``roma eval --data ARG [--split SPLIT]`` (``ARG`` relative to the fixtures)."""
    name, _, path = arg.partition("=")
    return load_eval_data(f"{name}={FIXTURES / path}" if path else str(FIXTURES / name), limit=None, split=split)


def text_of(example) -> str:
    return example["prompt"][0]["content"][1]["text"]


def full_rows(name: str, file: str) -> list[dict]:
    return _json_rows(FIXTURES / name / file, BENCHMARKS[name])


# ------------------------------------------------------------------------------------------- MathVista

MATHVISTA_PIDS = ["1", "2", "5", "6", "8", "17", "108", "225", "420", "781", "833"]


def mathvista_gold(row: dict) -> str:
    """The gold as roma states it, from the benchmark's own testmini.json row."""
    if row["question_type"] == "multi_choice":
        return LETTERS[row["choices"].index(row["answer"])]
    return row["answer"]


@pytest.mark.parametrize("arg", ["mathvista=mathvista/MathVista", "mathvista=mathvista/MathVista-data-only",
                                 "mathvista/mathvista-testmini.parquet", "mathvista=mathvista/mathvista_saved"])
def test_mathvista_every_form_reads_testmini_only(arg):
    item = data(arg)
    assert item.name == "mathvista" and item.source["split"] == "testmini" and item.skipped == []
    assert item.dataset["id"] == [f"mathvista-{p}" for p in MATHVISTA_PIDS]  # never the test pids 1001, 1002
    real = json.loads((FIXTURES / "mathvista" / "mathvista_testmini_full.json").read_text())
    assert item.dataset["answer"] == [mathvista_gold(real[p]) for p in MATHVISTA_PIDS]
    by_id = {e["id"]: e for e in item.dataset}
    assert by_id["mathvista-781"]["choices"] == ["9", "12", "18", "18"] and by_id["mathvista-781"]["answer"] == "C"
    assert by_id["mathvista-225"]["answer_type"] == "text"  # a list answer
    assert by_id["mathvista-108"]["tolerance"] == pytest.approx(0.005 / 51.04)  # precision 2
    assert by_id["mathvista-5"]["image"].mode == "RGB" and by_id["mathvista-225"]["image"].mode == "RGB"
    # the precision hint of MathVista's query (lmms-eval mathvista_testmini_cot)
    assert "floating-point number with two decimal places" in text_of(by_id["mathvista-108"])
    assert "Question: what is the total volume of the measuring cup? (Unit: g)" in text_of(by_id["mathvista-2"])


def test_mathvista_test_split_has_no_answers_and_is_refused():
    with pytest.raises(ValueError, match=r"2 of 2 rows \(100%\) are unusable.*mathvista-1001 \(answer: field "
                                         r"'answer' is empty \(MathVista's test split has no released answers\)"):
        data("mathvista=mathvista/MathVista", split="test")
    with pytest.raises(ValueError, match=r"no split 'dev' in .*; available splits: \['test', 'testmini'\]"):
        data("mathvista=mathvista/MathVista-data-only", split="dev")


def test_hub_id_reads_the_local_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "datasets--AI4Math--MathVista"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / ("0" * 40)).symlink_to(FIXTURES / "mathvista" / "MathVista", target_is_directory=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("mathvista", "AI4Math/MathVista"):
        item = load_eval_data(name, limit=None)
        assert item.source["split"] == "testmini" and len(item.dataset) == 11
    with pytest.raises(ValueError, match=r"^mathvista: '\./no-such-copy' is neither an existing local path nor a hub id"):
        load_eval_data("mathvista=./no-such-copy", limit=None)
    with pytest.raises(ValueError, match=r"^chartqa: 'someone/ChartQA-copy' is not in the local Hugging Face cache"):
        load_eval_data("chartqa=someone/ChartQA-copy", limit=None)  # an unknown copy: that repository, not lmms-lab's
    with pytest.raises(ValueError, match=r"^chartqa: 'lmms-lab/ChartQA' is not in the local Hugging Face cache "
                                         r"\(LocalEntryNotFoundError: .*\); download it once .* or pass a local "
                                         r"copy: --data chartqa=PATH$"):
        load_eval_data("chartqa", limit=None)


def test_roma_eval_without_a_cached_copy_is_one_clean_line(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert eval_main(["--model", str(tmp_path), "--data", "mathvista", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roma eval: mathvista: 'AI4Math/MathVista' is not in the local Hugging Face cache")
    assert err.count("\n") == 1 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- WeMath

WEMATH_IDS = ["2steps_1@2steps_1", "2steps_1@2steps_2", "2steps_1@2steps_multi", "3steps_1@3steps_1",
              "3steps_1@3steps_2", "3steps_1@3steps_3", "3steps_1@3steps_multi", "2steps_94@2steps_1",
              "2steps_102@2steps_1", "3steps_156@3steps_3", "2steps_59@2steps_1"]


@pytest.mark.parametrize("arg, n", [("wemath=wemath/We-Math", 11), ("wemath/wemath-with-fullwidth-row.parquet", 11),
                                    ("wemath/wemath-ok.parquet", 10)])
def test_wemath_snapshot_and_files(arg, n):
    item = data(arg)  # the snapshot also holds testmini.json and knowledge_structure_nodes.json: side files
    assert item.source["split"] == "testmini" and item.skipped == []
    assert item.dataset["id"] == [f"wemath-{i}" for i in WEMATH_IDS[:n]]
    real = {(r["ID"], r["key"], r["question"].strip()): r["answer"]
            for r in full_rows("wemath", "wemath_testmini_full.json")}
    assert len(item.dataset) == n
    for example, (problem, key) in zip(item.dataset, (i.split("@") for i in WEMATH_IDS)):
        question = text_of(example).split("\n")[0]
        assert real[(problem, key, question)] == example["answer"]
    by_id = {e["id"]: e for e in item.dataset}
    assert by_id["wemath-2steps_94@2steps_1"]["choices"] == [
        "Yes, A needs to be rotated 90 degrees clockwise around point O.",
        "Yes, A needs to be rotated 45 degrees counterclockwise around point O.", "No.", "No correct answer"]
    if n == 11:  # the full-width row "A. ①;B．②;C. ③; ..." no longer aborts the benchmark
        row = by_id["wemath-2steps_59@2steps_1"]
        assert row["choices"] == ["①", "②", "③", "Cannot be determined", "No correct answer"] and row["answer"] == "A"


def test_wemath_option_strings_of_the_real_file():
    """The eight option strings the old parser failed on (one abort, seven wrong splits)."""
    cases = {
        "A. ①;B．②;C. ③; D. Cannot be determined; E. No correct answer":
            ["①", "②", "③", "Cannot be determined", "No correct answer"],
        "A. 45° B. 60° ;C. 120°; D. No correct answer": ["45°", "60°", "120°", "No correct answer"],
        "A. 4 B. 3 C. 2 ;D. 1; E. No correct answer": ["4", "3", "2", "1", "No correct answer"],
        "A. There is an obtuse angle ∠AB;E.; B. There is an obtuse angle ∠AB;C.; C. There is no obtuse angle.; "
        "D. It cannot be determined.; E. No correct answer":
            ["There is an obtuse angle ∠ABE.", "There is an obtuse angle ∠ABC.", "There is no obtuse angle.",
             "It cannot be determined.", "No correct answer"],
        "A. First head northeast to B, then north to ;C.  ;B. First head northwest to B, then west to ;C.  ;"
        "C. First head southeast to B, then west to ;C. ;D. No correct answer":
            ["First head northeast to B, then north to C.", "First head northwest to B, then west to C.",
             "First head southeast to B, then west to C.", "No correct answer"],
    }
    for option, expected in cases.items():
        assert parse_wemath_options(option)[1] == expected, option
    # a ";" inside an option's text, and full-width commas, stay as written
    assert parse_wemath_options("A. ①; ③;B. ②; ③;C. ②; ④;D. ①; ④; E. No correct answer")[1] == [
        "①; ③", "②; ③", "②; ④", "①; ④", "No correct answer"]
    assert parse_wemath_options("A. (11，3);B. (8，4);E. No correct answer")[1] == ["(11，3)", "(8，4)", "No correct answer"]
    assert parse_wemath_options("A. to the right;  ; B. to the left;  ; C. No.  ; D. No correct answer")[1] == [
        "to the right", "to the left", "No.", "No correct answer"]
    letters, texts = parse_wemath_options("A. Yes ;O.;B. No ;O.;C. No.; F. No correct answer")
    assert letters == ["A", "B", "C", "F"] and texts == ["Yes O.", "No O.", "No.", "No correct answer"]
    assert parse_wemath_options("no options here") is None


# --------------------------------------------------------------------------------------------- ChartQA

CHARTQA_GOLD = ["14", "0.57", "No", "0.03", "2014", "1.216666667", "green line", "Democrat (scores 60 to 100)",
                "47", "80.2", "WhatsApp", "1625942"]


@pytest.mark.parametrize("arg", ["chartqa=chartqa/ChartQA", "chartqa=chartqa/ChartQA-M4",
                                 "chartqa=chartqa/ChartQA-ahmed-masry"])
def test_chartqa_three_copies_same_test_set(arg):
    item = data(arg)
    # M4's folder also holds train (2 rows) and val (2 rows): never merged into test
    assert item.source["split"] == "test" and len(item.dataset) == 12
    assert item.dataset["answer"] == CHARTQA_GOLD  # the authors' plain-string label is read whole ("14", not "1")
    assert item.dataset["task"] == ["human"] * 8 + ["augmented"] * 4
    assert item.dataset["answer_type"][:3] == ["number", "number", "text"]


def test_plain_parquet_folder_honours_the_split():
    val = data("chartqa=chartqa/ChartQA-M4", split="val")
    assert val.source["split"] == "val" and val.dataset["answer"] == ["No", "0.03"]
    assert data("chartqa=chartqa/ChartQA-M4", split="train").dataset["answer"] == ["14", "0.57"]


# ------------------------------------------------------------------------------------------ LogicVista


def test_logicvista_snapshot_and_empty_row():
    item = data("logicvista=logicvista/LogicVista")
    assert item.source["split"] == "test" and len(item.dataset) == 8 and item.skipped == []
    assert item.dataset["task"] == ["inductive"] * 4 + ["deductive", "deductive", "spatial", "spatial"]
    by_id = {e["id"]: e for e in item.dataset}
    assert by_id["logicvista-v1_50"]["choices"] == ["True", "False", "Insufficient Information"]
    assert by_id["logicvista-v1_200"]["choices"] == ["A", "B", "C", "D", "E"]
    assert (by_id["logicvista-v1_1"]["answer"], by_id["logicvista-v1_1"]["answer_type"]) == ("A, C", "text")
    assert (by_id["logicvista-v1_20"]["answer"], by_id["logicvista-v1_20"]["answer_type"]) == ("3", "number")
    assert text_of(by_id["logicvista-v1_0"]).startswith(
        "What choice (A, B, C, or D) should be in place of the question mark that fits the pattern?\n")
    # the real row v1_382 (empty question and answer) is skipped and listed, the benchmark still loads
    item = data("logicvista/logicvista-with-empty-row.parquet")
    assert len(item.dataset) == 8
    assert item.skipped == [{"id": "logicvista-v1_382", "reason": "question: field 'question' is empty"}]


# --------------------------------------------------------------------------- MMStar, RealWorldQA, VisualPuzzles


def test_mmstar_every_layout():
    item = data("mmstar=mmstar/MMStar")  # the snapshot's MMStar.tsv is not read
    assert item.source["split"] == "val" and item.dataset["id"] == [
        f"mmstar-{i}" for i in (0, 1, 9, 253, 594, 776, 987, 1186)]
    real = {r["index"]: r["answer"] for r in full_rows("mmstar", "mmstar_val_full.json")}
    assert item.dataset["answer"] == [real[i] for i in ("0", "1", "9", "253", "594", "776", "987", "1186")]
    assert all(t == "choice" for t in item.dataset["answer_type"])
    by_id = {e["id"]: e for e in item.dataset}
    assert by_id["mmstar-987"]["choices"] == ["Team A and Team B.", "Team A and Team C.", "Team B and Team C.",
                                              "Team A and Team D."]
    assert by_id["mmstar-253"]["choices"] == ["40.7", "74", "70.4", "70.0"]  # "Choices:\n(A) ..."
    assert by_id["mmstar-776"]["choices"] == ["54", "52", "56", "57"]  # "(A) ..." without a header
    # the question as written, then roma's instruction: no stray lines
    assert text_of(by_id["mmstar-253"]).split("\n")[-1].startswith("Think step by step")
    assert text_of(by_id["mmstar-253"]).count("\n") == 7


@pytest.mark.parametrize("arg", ["realworldqa=realworldqa/RealworldQA", "realworldqa/realworldqa-blanklines.parquet"])
def test_realworldqa_both_layouts(arg):
    item = data(arg)
    assert item.source["split"] == "test" and item.dataset["answer"] == ["C", "B", "C", "2", "A"]
    assert item.dataset["answer_type"] == ["choice", "choice", "choice", "number", "choice"]
    assert item.dataset["choices"][0] == ["Left", "Straight", "Right"]
    assert all("Please answer directly" not in text_of(e) for e in item.dataset)


def test_visualpuzzles_snapshot_and_renamed_split():
    item = data("visualpuzzles=visualpuzzles/VisualPuzzles")  # data.parquet names no split: it is the split
    assert item.source["split"] == "test" and item.dataset["id"] == [f"visualpuzzles-{i}" for i in (1, 2, 3, 4, 5, 9)]
    assert item.dataset["answer"] == ["D", "B", "C", "B", "C", "C"]
    assert item.dataset["answer_type"] == ["text", "text", "choice", "text", "choice", "text"]
    with pytest.warns(UserWarning, match="has no split 'test'; reading 'train', its older name"):
        item = data("visualpuzzles=visualpuzzles/visualpuzzles_saved_train")
    assert item.source["split"] == "train" and len(item.dataset) == 6


def test_mmrl30k_training_never_reads_k12_test():
    train = data("mmrl30k=mmrl30k/MMRL30k")
    assert train.source["split"] == "train" and train.dataset["answer"] == ["3", "34", "C", "\\frac{1}{2}"]
    assert train.dataset["choices"][2] == ["80°", "60°", "50°", "40°"]
    held_out = data("mmrl30k=mmrl30k/MMRL30k", split="k12_test")
    assert held_out.source["split"] == "k12_test" and len(held_out.dataset) == 2
    check_training_split(BENCHMARKS["mmrl30k"], "train")
    with pytest.raises(ValueError, match="mmrl30k: split 'k12_test' is held out for evaluation"):
        check_training_split(BENCHMARKS["mmrl30k"], "k12_test")
    with pytest.raises(ValueError, match="mathvista: split 'testmini' is held out for evaluation"):
        check_training_split(BENCHMARKS["mathvista"], "testmini")


# ------------------------------------------------------------------------------------ the full text files


@pytest.mark.parametrize("name, file, n, skipped, n_choice", [
    ("mathvista", "mathvista_testmini_full.json", 1000, [], 540),
    ("wemath", "wemath_testmini_full.json", 1740, [], 1740),
    ("logicvista", "logicvista_full.json", 448, ["logicvista-v1_382"], 331),
    ("mmstar", "mmstar_val_full.json", 1500, [], 1500),
])
def test_full_real_files_parse_without_aborting(name, file, n, skipped, n_choice):
    spec = BENCHMARKS[name]
    rows = full_rows(name, file)
    parsed, skips = parse_rows(rows, spec)
    assert len(rows) == n and [s.id for s in skips] == skipped
    assert len(parsed) == n - len(skipped)
    assert sum(fields["answer_type"] == "choice" for _, _, fields in parsed) == n_choice
    for _, example_id, fields in parsed:
        validate_example({"id": example_id, "image": None, **fields}, source=example_id)
        assert not fields["task"].startswith("[")  # LogicVista's skill lists are plain names
    if name == "logicvista":  # every question with inline "(A) x (B) y" options that have texts is a choice
        inline = [r for r in rows if "(A) " in r["question"] and "(A) (B)" not in r["question"]]
        ids = {f"logicvista-{r['id']}" for r in inline}
        assert len(ids) > 300 and all(f["answer_type"] == "choice" for _, i, f in parsed if i in ids)


def test_json_copy_with_images_beside_it(tmp_path):
    """The benchmark repository's own json (rows keyed by pid, relative image paths) loads too."""
    real = json.loads((FIXTURES / "mathvista" / "mathvista_testmini_full.json").read_text())
    (tmp_path / "images").mkdir()
    shutil.copy(next((FIXTURES / "mathvista" / "MathVista" / "data").glob("testmini-*")), tmp_path / "x.parquet")
    import datasets

    source = datasets.Dataset.from_parquet(str(tmp_path / "x.parquet"))
    for row in source.select(range(2)):
        (tmp_path / row["image"]).write_bytes(row["decoded_image"]["bytes"] if isinstance(row["decoded_image"], dict)
                                              else _png_bytes(row["decoded_image"]))
    (tmp_path / "testmini.json").write_text(json.dumps({p: real[p] for p in ("1", "2")}))
    loaded = read_benchmark(str(tmp_path / "testmini.json"), benchmark="mathvista")
    assert loaded.dataset["id"] == ["mathvista-1", "mathvista-2"] and loaded.dataset["answer"] == ["1.2", "1000"]


def _png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_wemath_full_file_groups_into_its_525_problems():
    """The four-dimensional metric's problems (ID with its one-step and multi-step rows) of the real testmini."""
    from roma.eval.official import wemath_scores

    rows = full_rows("wemath", "wemath_testmini_full.json")
    score, parts = wemath_scores([(row["key"].endswith("multi"), {"ID": row["ID"], "key": row["key"]}) for row in rows])
    assert (parts["n_problems"], parts["incomplete"]) == (525, 0)
    assert (score, parts["RM_strict"], parts["RM_loose"]) == (0.0, 525, 525)  # only the multi-step rows right
