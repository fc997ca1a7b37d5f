"""Benchmark loaders, offline: each benchmark's exact column names and types, built here, saved with
``save_to_disk`` and read back through the same code path as a hub id."""

from __future__ import annotations

import io

import datasets
import pytest
from PIL import Image

from roma.data.benchmarks import (
    BENCHMARKS,
    CHARTQA_TOLERANCE,
    MATHVISTA_HINTS,
    load_benchmark,
    load_benchmark_with_skips,
    parse_options,
    resolve_benchmark,
)
from roma.data.schema import CHOICE_INSTRUCTION, COLUMNS, INSTRUCTION, prompt_text, validate_example


def png(colour=(200, 30, 30), size=(40, 32), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 128).save(buf, format="PNG")
    return buf.getvalue()


def img(**kw) -> dict:
    return {"bytes": png(**kw), "path": None}


def save(tmp_path, name, rows, features, split=None):
    ds = datasets.Dataset.from_list(rows, features=datasets.Features(features))
    path = tmp_path / name
    (datasets.DatasetDict({split: ds}) if split else ds).save_to_disk(str(path))
    return str(path)


def user_text(example) -> str:
    (turn,) = example["prompt"]
    assert turn["role"] == "user" and turn["content"][0]["type"] == "image"
    return turn["content"][1]["text"]


def check_schema(ds, name, image_column="image"):
    assert ds.column_names == [image_column if c == "image" else c for c in COLUMNS]
    for row in ds:
        validate_example(row, source=name)
        for image in row["images"] if image_column == "images" else [row["image"]]:
            assert image.mode == "RGB"


S = datasets.Value("string")
F = datasets.Value("float64")
I64 = datasets.Value("int64")


def test_mathvista(tmp_path):
    meta = {"category": S, "context": S, "grade": S, "img_height": I64, "img_width": I64, "language": S,
            "skills": datasets.List(S), "source": S, "split": S, "task": S}
    features = {"pid": S, "question": S, "image": S, "decoded_image": datasets.Image(), "choices": datasets.List(S),
                "unit": S, "precision": F, "answer": S, "question_type": S, "answer_type": S, "metadata": meta,
                "query": S}

    def row(pid, question, choices, unit, precision, answer, qtype, atype, task="figure question answering"):
        m = {"category": "math-targeted-vqa", "context": "plot", "grade": "college", "img_height": 32,
             "img_width": 40, "language": "english", "skills": ["arithmetic reasoning"], "source": "x",
             "split": "testmini", "task": task}
        return {"pid": pid, "question": question, "image": f"images/{pid}.jpg", "decoded_image": img(),
                "choices": choices, "unit": unit, "precision": precision, "answer": answer,
                "question_type": qtype, "answer_type": atype, "metadata": m, "query": "Hint: ... " + question}

    rows = [
        row("1", "Which bar is taller?", ["left", "right"], None, None, "right", "multi_choice", "text"),
        row("2", "What is the total volume of the measuring cup?", None, "g", None, "1000", "free_form", "integer"),
        row("3", "By what distance is the spring compressed?", None, None, 1.0, "1.2", "free_form", "float"),
        row("4", "List the x values.", None, None, None, "[1, 2]", "free_form", "list"),
    ]
    path = save(tmp_path, "mathvista_local", rows, features, split="testmini")
    ds = load_benchmark(path, benchmark="mathvista")
    check_schema(ds, "mathvista")
    assert ds["id"] == ["mathvista-1", "mathvista-2", "mathvista-3", "mathvista-4"]
    assert ds["task"] == ["figure question answering"] * 4
    assert ds["answer"] == ["B", "1000", "1.2", "[1, 2]"]
    assert ds["choices"] == [["left", "right"], [], [], []]
    assert ds["answer_type"] == ["choice", "number", "number", "text"]
    # precision 1 -> rounding to 0.1 -> half a unit (0.05) relative to 1.2
    assert ds["tolerance"][:2] == [0.0, 0.0] and ds["tolerance"][2] == pytest.approx(0.05 / 1.2)
    # lmms-eval mathvista_testmini_cot (step-by-step): Question, Choices, the hint of the answer type
    assert user_text(ds[0]) == ("Question: Which bar is taller?\nChoices:\n(A) left\n(B) right\n"
                                + MATHVISTA_HINTS["multi_choice"] + "\n" + CHOICE_INSTRUCTION)
    assert user_text(ds[1]) == ("Question: What is the total volume of the measuring cup? (Unit: g)\n"
                                + MATHVISTA_HINTS["integer"] + "\n" + INSTRUCTION)
    assert "floating-point number with one decimal place" in user_text(ds[2])


def test_wemath(tmp_path):
    features = {"ID": S, "split": S, "knowledge concept": S, "question number": I64, "key": S, "question": S,
                "option": S, "answer": S, "image_path": datasets.Image()}
    rows = [
        {"ID": "1", "split": "testmini", "knowledge concept": "Area", "question number": 1, "key": "2steps_1",
         "question": "What is the area?", "option": "A. 3; B. 4 cm²; C. 5; D. No correct answer", "answer": "B",
         "image_path": img()},
        {"ID": "1", "split": "testmini", "knowledge concept": "Area", "question number": 2, "key": "2steps_multi",
         "question": "And the perimeter?", "option": "A. 8; B. 9", "answer": "A", "image_path": img()},
    ]
    ds = load_benchmark(save(tmp_path, "wemath_copy", rows, features, split="testmini"), benchmark="wemath")
    check_schema(ds, "wemath")
    assert ds["id"] == ["wemath-1@2steps_1", "wemath-1@2steps_multi"]
    assert ds["task"] == ["2steps_1", "2steps_multi"]
    assert ds["choices"] == [["3", "4 cm²", "5", "No correct answer"], ["8", "9"]]
    assert ds["answer"] == ["B", "A"] and ds["answer_type"] == ["choice", "choice"]


def test_chartqa_both_hub_layouts(tmp_path):
    lmms = [{"type": "human_test", "question": "What is the value of Haiti?", "answer": "25",
             "image": img()},
            {"type": "augmented_test", "question": "Is the line rising?", "answer": "Yes", "image": img()}]
    path = save(tmp_path, "chartqa", lmms, {"type": S, "question": S, "answer": S, "image": datasets.Image()},
                split="test")
    ds = load_benchmark(path)  # the benchmark is recognised from the folder name
    check_schema(ds, "chartqa")
    assert ds["id"] == ["chartqa-0", "chartqa-1"] and ds["task"] == ["human", "augmented"]
    assert ds["answer_type"] == ["number", "text"]
    assert ds["tolerance"] == [CHARTQA_TOLERANCE, 0.0] and CHARTQA_TOLERANCE == 0.05

    m4 = [{"image": img(), "query": "How many bars?", "label": ["4"], "human_or_machine": 1}]
    features = {"image": datasets.Image(), "query": S, "label": datasets.List(S),
                "human_or_machine": datasets.ClassLabel(names=["human", "machine"])}
    ds = load_benchmark(save(tmp_path, "m4", m4, features, split="test"), benchmark="chartqa")
    assert ds["answer"] == ["4"] and ds["task"] == ["augmented"] and ds["tolerance"] == [0.05]  # machine = augmented


def test_logicvista_letters_inline_or_in_image(tmp_path):
    features = {"id": S, "question": S, "answer": S, "reasoning": S, "image": datasets.Image(), "skill": S,
                "broad_capability": S, "specific_capability": S, "imagesource": S, "sourcelink": S,
                "liscenced": S}
    base = {"reasoning": "...", "skill": "inductive", "broad_capability": "b", "specific_capability": "s",
            "imagesource": "x", "sourcelink": "y", "liscenced": "yes", "image": img()}
    rows = [
        {**base, "id": "0", "question": "Which figure comes next?\nA. circle\nB. square\nC. star", "answer": "C"},
        {**base, "id": "1", "question": "Which two figures match? Pick from A to D.", "answer": "C, A"},
        {**base, "id": "2", "question": "Which of the four options completes the pattern?", "answer": "B"},
    ]
    ds = load_benchmark(save(tmp_path, "lv", rows, features, split="test"), benchmark="logicvista")
    check_schema(ds, "logicvista")
    assert ds["answer_type"] == ["choice", "text", "text"]
    assert ds["answer"] == ["C", "A, C", "B"]
    assert ds["choices"][0] == ["circle", "square", "star"]
    assert user_text(ds[1]).startswith("Which two figures match? Pick from A to D.\nAnswer with the letters of all")
    assert "Answer with the option's letter." in user_text(ds[2])


def test_mmstar_inline_options(tmp_path):
    features = {"index": I64, "question": S, "image": datasets.Image(), "answer": S, "category": S,
                "l2_category": S, "meta_info": {"source": S, "split": S, "image_path": S}}
    rows = [{"index": 7, "answer": "D", "category": "coarse perception", "l2_category": "image scene",
             "meta_info": {"source": "MMBench", "split": "val", "image_path": "7.jpg"}, "image": img(),
             "question": "Which option describes the relation correctly?\nOptions: A: The suitcase is on the "
                         "book., B: The suitcase is beneath the cat., C: The cat, a dog., D: None of them."}]
    ds = load_benchmark(save(tmp_path, "mmstar_val", rows, features, split="val"), benchmark="mmstar")
    check_schema(ds, "mmstar")
    assert ds[0]["id"] == "mmstar-7" and ds[0]["task"] == "coarse perception"
    assert ds[0]["choices"] == ["The suitcase is on the book.", "The suitcase is beneath the cat.",
                                "The cat, a dog.", "None of them."]
    assert ds[0]["answer"] == "D" and ds[0]["answer_type"] == "choice"
    # lmms-eval mmstar: the question as written
    assert user_text(ds[0]).startswith("Which option describes the relation correctly?\nOptions: A: The suitcase")


def test_visualpuzzles_options_list_or_null(tmp_path):
    features = {"id": I64, "category": S, "image": datasets.Image(), "question": S,
                "options": datasets.List(S), "answer": S}
    rows = [{"id": 3, "category": "spatial", "image": img(), "question": "How many pieces of cheese?",
             "options": ["32", "35", "37", "40"], "answer": "C"},
            {"id": 4, "category": "deductive", "image": img(), "question": "Which figure can he not make?",
             "options": None, "answer": "B"}]
    # the hub renamed this split train -> test; a copy with the old name still loads (with a warning)
    path = save(tmp_path, "vp", rows, features, split="train")
    with pytest.warns(UserWarning, match="has no split 'test'; reading 'train', its older name"):
        ds = load_benchmark(path, benchmark="visualpuzzles")
    check_schema(ds, "visualpuzzles")
    assert ds["id"] == ["visualpuzzles-3", "visualpuzzles-4"]
    assert ds["answer_type"] == ["choice", "text"] and ds["answer"] == ["C", "B"]
    assert ds["choices"] == [["32", "35", "37", "40"], []]
    assert user_text(ds[1]).startswith("Question: Which figure can he not make?\nOptions: Choose from (A) (B) (C) "
                                       "(D) in the image.\n")
    with pytest.raises(ValueError, match=r"visualpuzzles: no split 'dev' in .*; available splits: \['train'\]"):
        load_benchmark(path, benchmark="visualpuzzles", split="dev")


def test_realworldqa_choice_and_number(tmp_path):
    features = {"image": datasets.Image(), "question": S, "answer": S}
    rows = [{"image": img(), "answer": "C",
             "question": "In which direction is the front wheel facing?\n\nA. Left\nB. Straight\nC. Right\n\n"
                         "Please answer directly with only the letter of the correct option and nothing else."},
            {"image": img(), "answer": "2",
             "question": "How many pedestrians are there?\nPlease answer directly with a single word or number."}]
    ds = load_benchmark(save(tmp_path, "rwqa", rows, features, split="test"), benchmark="realworldqa")
    check_schema(ds, "realworldqa")
    assert ds["answer_type"] == ["choice", "number"] and ds["choices"] == [["Left", "Straight", "Right"], []]
    assert user_text(ds[1]) == prompt_text("How many pedestrians are there?")


def test_mmrl30k_training_rows(tmp_path):
    features = {"images": datasets.List(datasets.Image()), "problem": S, "answer": S, "source": S}
    rows = [{"images": [img()], "problem": "<image>Find the area of the triangle.", "answer": "12",
             "source": "geometry3k"},
            {"images": [img()], "problem": "<image>Which is red?\nChoices: A. the cube B. the ball",
             "answer": "B", "source": "clevr"}]
    path = tmp_path / "mmrl30k.parquet"
    datasets.Dataset.from_list(rows, features=datasets.Features(features)).to_parquet(str(path))
    ds = load_benchmark(str(path))  # parquet file, benchmark from the file name
    check_schema(ds, "mmrl30k", image_column="images")  # an image list stays a list (TRL's column)
    assert ds["task"] == ["geometry3k", "clevr"] and ds["answer_type"] == ["number", "choice"]
    assert ds["choices"][1] == ["the cube", "the ball"]
    assert user_text(ds[0]) == prompt_text("Find the area of the triangle.")


def test_mmrl30k_rows_keep_every_image_with_a_placeholder_each(tmp_path):
    """Kind 7 of the image issue: ``images: [a, b]`` with ``<image><image>`` lost all but the first image."""
    features = {"images": datasets.List(datasets.Image()), "problem": S, "answer": S, "source": S}
    rows = [{"images": [img(colour=(10, 10, 10)), img(colour=(200, 200, 200))],
             "problem": "<image><image>Which image is darker?\nChoices: A. the first B. the second",
             "answer": "A", "source": "pairs"}]
    path = tmp_path / "mmrl30k.parquet"
    datasets.Dataset.from_list(rows, features=datasets.Features(features)).to_parquet(str(path))
    (row,) = load_benchmark(str(path))
    assert [image.getpixel((0, 0)) for image in row["images"]] == [(10, 10, 10), (200, 200, 200)]
    (turn,) = row["prompt"]
    assert [part["type"] for part in turn["content"]] == ["image", "image", "text"]
    assert "<image>" not in turn["content"][2]["text"]


def test_corrupt_or_missing_images_are_skipped_and_counted(tmp_path):
    features = {"image": datasets.Image(decode=False), "question": S, "answer": S}
    rows = [{"image": img(), "question": "q0", "answer": "1"},
            {"image": {"bytes": b"not an image at all", "path": None}, "question": "q1", "answer": "1"},
            {"image": None, "question": "q2", "answer": "1"},
            {"image": img(mode="L"), "question": "q3", "answer": "1"}]
    rows += [{"image": img(), "question": f"q{i}", "answer": "1"} for i in range(4, 10)]
    path = save(tmp_path, "rw", rows, features, split="test")
    ds, skipped = load_benchmark_with_skips(path, benchmark="realworldqa")
    assert skipped == [("realworldqa-1", "missing or corrupt image"), ("realworldqa-2", "missing or corrupt image")]
    assert ds["id"] == ["realworldqa-0"] + [f"realworldqa-{i}" for i in range(3, 10)]
    assert ds[1]["image"].mode == "RGB"  # a grey-scale source is converted
    with pytest.warns(UserWarning, match=r"skipped 2 of 10 row\(s\): realworldqa-1 \(missing or corrupt image\)"):
        load_benchmark(path, benchmark="realworldqa")
    # 2 of 4 rows unusable is more than the 20 % allowed: an error naming the share and the first bad rows
    with pytest.raises(ValueError, match=r"^realworldqa \(test split of .*\): 2 of 4 rows \(50%\) are unusable, "
                                         r"more than the 20% allowed; first: realworldqa-1 \(missing or corrupt"):
        load_benchmark(path, benchmark="realworldqa", limit=4)


def test_missing_field_names_the_benchmark_and_field(tmp_path):
    path = save(tmp_path, "x", [{"image": img(), "question": "q"}], {"image": datasets.Image(), "question": S},
                split="test")
    with pytest.raises(ValueError, match=r"^realworldqa: missing field 'answer'"):
        load_benchmark(path, benchmark="realworldqa")
    path = save(tmp_path, "y", [{"image": img(), "question": "q", "answer": None}],
                {"image": datasets.Image(), "question": S, "answer": S}, split="test")
    with pytest.raises(ValueError, match=r"1 of 1 rows \(100%\) are unusable.*first: realworldqa-0 \(answer: "
                                         r"field 'answer' is empty\)"):
        load_benchmark(path, benchmark="realworldqa")


def test_limit_and_duplicate_ids(tmp_path):
    features = {"id": I64, "category": S, "image": datasets.Image(), "question": S,
                "options": datasets.List(S), "answer": S}
    rows = [{"id": 1, "category": "c", "image": img(), "question": f"q{i}", "options": ["x", "y"], "answer": "A"}
            for i in range(4)]
    path = save(tmp_path, "vp", rows, features, split="test")
    assert load_benchmark(path, benchmark="visualpuzzles")["id"] == [
        "visualpuzzles-1", "visualpuzzles-1#2", "visualpuzzles-1#3", "visualpuzzles-1#4"]
    assert len(load_benchmark(path, benchmark="visualpuzzles", limit=2)) == 2
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_benchmark(path, benchmark="visualpuzzles", limit=0)


def test_registry_and_resolution(tmp_path):
    assert sorted(BENCHMARKS) == ["chartqa", "logicvista", "mathvista", "mmrl30k", "mmstar", "realworldqa",
                                  "visualpuzzles", "wemath"]
    assert resolve_benchmark("AI4Math/MathVista") == (BENCHMARKS["mathvista"], False)
    assert resolve_benchmark("MMStar") == (BENCHMARKS["mmstar"], False)
    assert BENCHMARKS["mathvista"].split == "testmini" and BENCHMARKS["mmstar"].split == "val"
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        resolve_benchmark("x", benchmark="nope")
    (tmp_path / "mystery").mkdir()
    with pytest.raises(ValueError, match="cannot tell which benchmark the local path"):
        resolve_benchmark(str(tmp_path / "mystery"))


def test_parse_options_layouts():
    assert parse_options("Q?\nOptions: A: x, B: y") == ("Q?", ["x", "y"])
    assert parse_options("A. 1; B. 2") == ("", ["1", "2"])
    assert parse_options("Q?\nA. left\nB. right\nPlease answer.") == ("Q?", ["left", "right"])
    assert parse_options("Point A. lies on B") is None  # markers must start a line without a header
    assert parse_options("Only A: one") is None
