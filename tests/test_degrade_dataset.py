"""``roma degrade-dataset`` on the real-format fixtures: same rows, replayable images, the three formats."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from roma.cli import COMMANDS
from roma.degrade.dataset import degrade_dataset, detect_format, main, read_manifest, replay

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench-fixtures"


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_save_to_disk_copy_keeps_rows_and_replays(tmp_path):
    import datasets

    src = FIXTURES / "mathvista" / "mathvista_saved"
    result = degrade_dataset(src, tmp_path, types=["rotate"], levels=[1], seed=4, limit=2)
    assert result == {"format": "hf", "copies": {"rotate-L1": 4}, "images": 4, "skipped": 0}
    original = datasets.load_from_disk(str(src))
    copy = datasets.load_from_disk(str(tmp_path / "rotate-L1"))
    assert list(copy) == list(original) and copy["testmini"].features == original["testmini"].features
    manifest = list(read_manifest(tmp_path))
    assert len(manifest) == 4 and {e["location"] for e in manifest} == {"testmini", "test"}
    for entry in manifest:
        before = original[entry["location"]].cast_column("decoded_image", datasets.Image(decode=False))[entry["row"]]
        after = copy[entry["location"]].cast_column("decoded_image", datasets.Image(decode=False))[entry["row"]]
        assert {k: v for k, v in after.items() if k != "decoded_image"} == {
            k: v for k, v in before.items() if k != "decoded_image"}  # fmt: skip
        assert entry["column"] == "decoded_image" and entry["type"] == "rotate" and abs(entry["params"]["angle"]) == 5.0
        pixels = _pixels(after["decoded_image"]["bytes"])
        assert pixels.shape == (entry["height"], entry["width"], 3)
        assert np.array_equal(pixels, replay(entry, before["decoded_image"]["bytes"]))
        assert not np.array_equal(pixels, _pixels(before["decoded_image"]["bytes"]))


def test_parquet_snapshot_copy_mirrors_the_folder(tmp_path):
    src = FIXTURES / "realworldqa" / "RealworldQA"
    result = degrade_dataset(src, tmp_path / "out", types=["binarize"], levels=[3], seed=0)
    assert result == {"format": "parquet", "copies": {"binarize-L3": 5}, "images": 5, "skipped": 0}
    for path in sorted(src.rglob("*")):
        assert (tmp_path / "out" / "binarize-L3" / path.relative_to(src)).exists(), path
    original = pq.read_table(src / "data" / "test-00000-of-00002.parquet")
    copy = pq.read_table(tmp_path / "out" / "binarize-L3" / "data" / "test-00000-of-00002.parquet")
    assert copy.schema == original.schema and copy.num_rows == original.num_rows
    assert copy.drop_columns(["image"]).equals(original.drop_columns(["image"]))
    entries = [e for e in read_manifest(tmp_path / "out") if e["copy"] == "binarize-L3"]
    assert [e["row"] for e in entries] == list(range(original.num_rows))
    for entry, before, after in zip(entries, original.column("image").to_pylist(), copy.column("image").to_pylist()):
        assert after["path"] == before["path"]
        pixels = _pixels(after["bytes"])
        assert set(np.unique(pixels).tolist()) <= {0, 255}
        assert np.array_equal(pixels, replay(entry, before["bytes"]))
    # seeded: the same command writes the same manifest (here its first two rows)
    degrade_dataset(src, tmp_path / "again", types=["binarize"], levels=[3], seed=0, limit=2)
    assert list(read_manifest(tmp_path / "again")) == entries[:2]


def _tsv(path, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "question", "answer", "image", "category"])
        writer.writerows(rows)


def test_vlmevalkit_tsv_copy(tmp_path):
    table = pq.read_table(FIXTURES / "mmstar" / "MMStar" / "mmstar.parquet").slice(0, 2).to_pylist()
    rows = [[str(r["index"]), r["question"], r["answer"], base64.b64encode(r["image"]["bytes"]).decode(), r["category"]]
            for r in table]  # fmt: skip
    rows += [["900", "Same picture as row 0?\twith a tab", "A", rows[0][0], "x"], ["901", "broken", "B", "bm90IGFuIGltYWdl", "y"]]
    src = tmp_path / "MMStar.tsv"
    _tsv(src, rows)
    assert detect_format(src) == "tsv"
    assert main([str(src), "--out", str(tmp_path / "out"), "--types", "moire", "--levels", "2"]) == 0
    with (tmp_path / "out" / "moire-L2" / "MMStar_moire_L2.tsv").open(encoding="utf-8", newline="") as handle:
        copied = list(csv.reader(handle, delimiter="\t"))
    assert copied[0] == ["index", "question", "answer", "image", "category"]
    assert [r[:3] + r[4:] for r in copied[1:]] == [r[:3] + r[4:] for r in rows]
    assert copied[3][3] == rows[0][0] and copied[4][3] == "bm90IGFuIGltYWdl"  # a reference, a broken image: kept
    entries = list(read_manifest(tmp_path / "out"))
    assert [e["row"] for e in entries] == [0, 1, 3] and entries[2]["skipped"].startswith("cannot degrade")
    for entry in entries[:2]:
        before = base64.b64decode(rows[entry["row"]][3])
        assert np.array_equal(_pixels(base64.b64decode(copied[entry["row"] + 1][3])), replay(entry, before))
    config = json.loads((tmp_path / "out" / "degrade-dataset.json").read_text())
    assert config["types"] == ["moire"] and config["levels"] == [2] and config["format"] == "tsv"


def test_errors_and_registration(tmp_path, capsys):
    assert "degrade-dataset" in COMMANDS
    with pytest.raises(ValueError, match=r"is not a dataset roma can copy"):
        detect_format(tmp_path)
    src = FIXTURES / "realworldqa" / "realworldqa-blanklines.parquet"
    degrade_dataset(src, tmp_path / "o", types=["contrast"], levels=[1], limit=1)
    with pytest.raises(ValueError, match=r"already holds degraded copies"):
        degrade_dataset(src, tmp_path / "o", types=["contrast"], levels=[1])
    with pytest.raises(ValueError, match=r"unknown degradation type 'rain'"):
        degrade_dataset(src, tmp_path / "p", types=["rain"])
    assert main([str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "q")]) == 2
    assert "is not a dataset roma can copy" in capsys.readouterr().err
