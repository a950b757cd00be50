"""Batches that survive: a bad image in predict, measure or evaluate is reported by name and
skipped, the others are finished and written, and the command exits non-zero with a summary
(--strict stops at the first); a prediction run killed with SIGKILL leaves no partial file under
a final name, and --resume finishes it with the outputs of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from cli_testdata import ONE_THREAD, assert_one_line_error, assert_success, run_cli

CPU = ("--device", "cpu")


def truncate(path: Path, keep: int = 300) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def two_image_ground_truth(root: Path, samples: Path) -> Path:
    """images/ + labels/ of the two bundled images the prediction folder holds."""
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for p in sorted((samples / "images").glob("*.tif"))[:2]:
        shutil.copy(p, root / "images" / p.name)
        shutil.copy(samples / "labels" / f"{p.stem}.png", root / "labels" / f"{p.stem}.png")
    return root


# ---- skip and report --------------------------------------------------------------------------
def test_predict_skips_a_corrupt_image_and_writes_the_others(tmp_path, sample_images):
    broken = tmp_path / "broken.tif"  # a copy cut short, as by a failed transfer
    broken.write_bytes(sample_images[0].read_bytes()[:20_000])
    good = sample_images[:2]
    out = tmp_path / "out"
    line = assert_one_line_error(run_cli("predict", good[0], broken, good[1], "--out", out, *CPU),
                                 "1 of 3", "broken.tif", f"the other 2 were written to {out}")
    data = json.loads((out / "predictions.json").read_text())
    assert [im["file_name"] for im in data["images"]] == [p.name for p in good]
    assert data["annotations"] and {a["image_id"] for a in data["annotations"]} == {1, 2}
    for p in good:
        assert tifffile.imread(out / f"{p.stem}_labels.tif").max() > 0
    assert not list(out.glob("broken*")) and "cannot read" in line
    # --strict stops at the first bad image: the run is not finished
    strict = tmp_path / "strict"
    assert_one_line_error(run_cli("predict", broken, *good, "--out", strict, "--strict", *CPU), "broken.tif")
    assert not (strict / "predictions.json").exists()


def test_measure_skips_a_corrupt_label_image(prediction_folder, copy_of, tmp_path):
    pred = copy_of(prediction_folder)
    bad = truncate(sorted(pred.glob("*_labels.tif"))[0])
    good_stem = sorted(pred.glob("*_labels.tif"))[1].name.removesuffix("_labels.tif")
    out = tmp_path / "objects.csv"
    assert_one_line_error(run_cli("measure", pred, "--out", out), "1 of 2", bad.name,
                          f"the other 1 were measured into {out}")
    table = pd.read_csv(out)
    assert set(table["image"]) == {good_stem} and len(table) > 10
    by_image = pd.read_csv(tmp_path / "objects_summary_by_image.csv")
    assert list(by_image["image"]) == [good_stem] and by_image["count"].iloc[0] == len(table)
    # the same with label files given one by one, and two processes
    files = sorted(pred.glob("*_labels.tif"))
    assert_one_line_error(run_cli("measure", *files, "--out", tmp_path / "files.csv", "-j", "2"), bad.name)
    assert set(pd.read_csv(tmp_path / "files.csv")["image"]) == {good_stem}
    strict = tmp_path / "strict.csv"
    assert_one_line_error(run_cli("measure", pred, "--out", strict, "--strict"), bad.name)
    assert not strict.exists()


def test_evaluate_skips_an_image_without_readable_prediction(prediction_folder, copy_of, tmp_path,
                                                             samples_dir):
    pred = copy_of(prediction_folder)
    bad = truncate(sorted(pred.glob("*_labels.tif"))[0])
    bad_stem = bad.name.removesuffix("_labels.tif")
    gt = two_image_ground_truth(tmp_path / "gt", samples_dir)
    metrics, rows = tmp_path / "metrics.json", tmp_path / "rows.csv"
    result = run_cli("evaluate", "--pred", pred, "--gt", gt, "--json", metrics, "--per-image", rows)
    assert_one_line_error(result, "1 of 2", bad.name, "the other 1 were scored", str(metrics))
    assert "could not be scored and are left out: " + bad_stem in result.stdout  # in the table too
    scored = json.loads(metrics.read_text())
    assert scored["images"] == 1
    assert scored["skipped"] == [{"image": bad_stem, "file": bad.name, "error": scored["skipped"][0]["error"]}]
    assert "cannot read" in scored["skipped"][0]["error"]
    assert scored["matching"]["0.5"]["tp"] > 10
    assert len(pd.read_csv(rows)) == 1 and bad_stem not in set(pd.read_csv(rows)["image"])
    strict = tmp_path / "strict.json"
    assert_one_line_error(run_cli("evaluate", "--pred", pred, "--gt", gt, "--json", strict, "--strict"),
                          bad.name)
    assert not strict.exists()
    # a GT image the prediction run skipped (no prediction at all) is skipped the same way
    (pred / bad.name).unlink()
    assert_one_line_error(run_cli("evaluate", "--pred", pred, "--gt", gt), bad_stem, "no prediction")


# ---- kill -9 and --resume ---------------------------------------------------------------------
def _final_files(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` except temporaries (``.NAME.xxxxxxxx.part``)."""
    return {str(p.relative_to(folder)): p for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(".part")}


def _same_content(a: Path, b: Path) -> bool:
    if a.suffix == ".tif":
        return np.array_equal(tifffile.imread(a), tifffile.imread(b))
    if a.suffix == ".png":
        return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    if a.suffix == ".json":
        return json.loads(a.read_text()) == json.loads(b.read_text())
    return a.read_bytes() == b.read_bytes()


def test_killed_prediction_keeps_finished_images_and_resume_finishes(tmp_path, sample_images):
    images = tmp_path / "images"
    images.mkdir()
    for p in sample_images:  # the 3 bundled images and copies under other names
        shutil.copy(p, images / p.name)
        shutil.copy(p, images / f"again_{p.name}")
    reference = tmp_path / "reference"
    assert_success(run_cli("predict", images, "--out", reference, *CPU))

    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "morphoscope", "predict", str(images), "--out", str(out), *CPU],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ONE_THREAD})
    try:
        while run.poll() is None and not list((out / ".morphoscope").glob("*.json")):
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
    finally:
        run.wait()
    assert run.returncode == -signal.SIGKILL, "the run ended before its first image record appeared"
    finished = sorted(p.stem for p in (out / ".morphoscope").glob("*.json"))
    assert 1 <= len(finished) < 6
    assert not (out / "predictions.json").exists()  # the run-wide files come at the end
    # nothing partial under a final name: every file there is whole and equals the reference's
    expected = _final_files(reference)
    for name, path in _final_files(out).items():
        assert _same_content(path, expected[name]), name
    for stem in finished:
        for name in expected:
            if name.startswith(f"{stem}_"):
                assert (out / name).is_file(), name

    # temporaries a killed writer leaves are removed by the next run
    orphans = [out / ".IXMtest_B12_s2_labels.tif.k1ll3d00.part", out / ".morphoscope" / ".x.json.k1ll3d00.part"]
    for p in orphans:
        p.write_bytes(b"half a file")
    assert_success(run_cli("predict", images, "--out", out, "--resume", *CPU))
    assert not [p for p in out.rglob("*.part")]
    resumed = _final_files(out)
    assert sorted(resumed) == sorted(expected)
    for name, path in expected.items():
        if name != "predictions.json":
            assert _same_content(resumed[name], path), name
    a = json.loads((reference / "predictions.json").read_text())
    b = json.loads((out / "predictions.json").read_text())
    assert a["images"] == b["images"] and a["annotations"] == b["annotations"]
    assert len(b["images"]) == 6 and len(b["annotations"]) > 100


def test_temporaries_of_a_killed_measure_are_removed_by_the_next(tmp_path, samples_dir):
    """A run killed while writing leaves .NAME.xxxxxxxx.part beside its table; the next run that
    writes the table removes it, and leaves other files alone."""
    out = tmp_path / "objects.csv"
    orphan = tmp_path / ".objects.csv.k1ll3d00.part"
    orphan.write_text("image,label\nhalf a ro")
    unrelated = tmp_path / ".notes.part"
    unrelated.write_text("mine")
    assert_success(run_cli("measure", samples_dir / "labels" / "IXMtest_B12_s2.png", "--out", out, "--no-summary"))
    assert not orphan.exists() and unrelated.read_text() == "mine"
    assert len(pd.read_csv(out)) > 50
