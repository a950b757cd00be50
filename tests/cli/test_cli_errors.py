"""The command line's safety net (morphoscope.cli.report_error): errors of the operating system,
Ctrl-C and bugs end as one line too; the real entry point prints no traceback; inputs worth a
warning rather than an error are predicted, measured or reported with a warning naming them."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from cli_testdata import (
    assert_one_line_error,
    assert_success,
    run_cli,
    run_entry_point,
    tiny_config,
    warning_lines,
    write_config,
)


# ---- the real entry point, in a subprocess ----------------------------------------------------
def test_entry_point_read_only_output_is_one_line(read_only_folder, samples_dir):
    out = read_only_folder / "predictions"
    image = samples_dir / "images" / "IXMtest_B12_s2.tif"
    run = run_entry_point("predict", image, "--out", out, "--device", "cpu")
    assert_one_line_error(run, str(out), "check the permissions")
    assert not out.exists()


def test_entry_point_output_file_for_convert_and_train(tmp_path, samples_dir):
    a_file = tmp_path / "results"
    a_file.write_text("notes\n")
    run = run_entry_point("convert", samples_dir, a_file, "--to", "labels")
    assert_one_line_error(run, str(a_file), "not a folder")
    config = write_config(tmp_path / "tiny.yaml", tiny_config("instance", tmp_path, samples_dir, validate=False))
    run = run_entry_point("train", config, "--out", a_file / "run")
    assert_one_line_error(run, str(a_file / "run"), "Not a directory")
    assert a_file.read_text() == "notes\n"


def test_entry_point_bug_is_one_line_and_debug_shows_the_traceback(tmp_path, samples_dir):
    """An exception nobody expected: one line that says how to see the traceback, exit 1."""
    script = ("import sys, morphoscope.formats.convert as c\n"
              "def broken(*a, **k):\n    raise RuntimeError('index out of step')\n"
              "c.convert_dataset = broken\n"
              "from morphoscope.cli import main\nsys.argv[0] = 'morphoscope'\nmain()\n")
    args = [sys.executable, "-c", script, "convert", str(samples_dir), str(tmp_path / "ds"), "--to", "coco"]
    plain = subprocess.run(args, capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "MORPHOSCOPE_DEBUG"})
    line = assert_one_line_error(plain, "RuntimeError", "index out of step", status=1)
    assert "MORPHOSCOPE_DEBUG=1" in line
    debug = subprocess.run(args, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MORPHOSCOPE_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "index out of step" in debug.stderr


# ---- in-process: the kinds of failure ----------------------------------------------------------
def test_ctrl_c_says_interrupted_and_exits_130(monkeypatch, tmp_path, samples_dir):
    import morphoscope.formats.convert as convert

    def pressed_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "convert_dataset", pressed_ctrl_c)
    result = run_cli("convert", samples_dir, tmp_path / "ds", "--to", "coco")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in result.output


def test_full_disk_names_the_result_not_its_temporary_file(monkeypatch, tmp_path, samples_dir):
    """The disk fills while a result is written: one line naming the result, with what to do;
    no temporary file and no partial result are left."""
    import morphoscope.io.atomic as atomic

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    out = tmp_path / "objects.csv"
    result = run_cli("measure", samples_dir / "labels" / "IXMtest_B12_s2.png", "--out", out, "--no-summary")
    line = assert_one_line_error(result, str(out), "No space left on device", "free some space")
    assert ".part" not in line
    assert list(tmp_path.iterdir()) == []


def test_unexpected_error_in_process_and_with_debug(monkeypatch, tmp_path, samples_dir):
    import morphoscope.formats.convert as convert

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(convert, "convert_dataset", broken)
    args = ("convert", samples_dir, tmp_path / "ds", "--to", "coco")
    line = assert_one_line_error(run_cli(*args), "unexpected ZeroDivisionError", status=1)
    assert "set MORPHOSCOPE_DEBUG=1 to see the traceback" in line
    debug = run_cli(*args, env={"MORPHOSCOPE_DEBUG": "1"})
    assert debug.exit_code == 1 and "Traceback" in debug.stderr and "ZeroDivisionError" in debug.stderr


def test_many_skipped_inputs_are_each_listed(tmp_path):
    """The summary line names the first five skipped files; the others get a line each."""
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(7):
        (labels / f"cell_{i}.png").write_bytes(b"")
    Image.fromarray(np.eye(16, dtype=np.uint8)).save(labels / "good.png")
    result = run_cli("measure", labels, "--out", tmp_path / "m.csv", "--no-summary")
    line = assert_one_line_error(result, "7 of 8", "and 2 more", "m.csv")
    skipped = [ln for ln in result.stderr.splitlines() if ln.startswith("skipped ")]
    assert sorted(s.split(":")[0] for s in skipped) == [f"skipped cell_{i}.png" for i in range(7)]
    assert "cell_6.png" not in line


# ---- not errors: a warning that names the file ------------------------------------------------
@pytest.mark.parametrize("bad_value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_pixels_are_replaced_with_a_warning(bad_value, tmp_path, samples_dir):
    """A float image with a few NaN or infinite pixels is predicted, with one warning naming
    it; its overlay is the image's, not a black square (NaN once spoilt the display range)."""
    pixels = tifffile.imread(samples_dir / "images" / "IXMtest_B12_s2.tif")[:256, :256].astype(np.float32)
    clean, spoilt = tmp_path / "in" / "clean.tif", tmp_path / "in" / "spoilt.tif"
    clean.parent.mkdir()
    tifffile.imwrite(clean, pixels)
    pixels[100:110, 100:110] = bad_value
    tifffile.imwrite(spoilt, pixels)
    result = run_cli("predict", clean, spoilt, "--out", tmp_path / "out", "--device", "cpu")
    assert_success(result)
    warnings = warning_lines(result.stderr)
    assert len(warnings) == 1 and "spoilt" in warnings[0] and "NaN or infinite" in warnings[0]
    a = np.asarray(Image.open(tmp_path / "out" / "clean_overlay.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "out" / "spoilt_overlay.png"), np.int16)
    image_pixels = (np.ptp(a, axis=-1) == 0) & (np.ptp(b, axis=-1) == 0)  # grey: no object outline
    image_pixels[100:110, 100:110] = False  # the replaced pixels
    assert np.abs(a - b)[image_pixels].max() <= 3  # the same display range


def test_report_goes_on_without_a_damaged_overlay(prediction_folder, copy_of, tmp_path):
    pred = copy_of(prediction_folder)
    overlay = sorted(pred.glob("*_overlay.png"))[0]
    overlay.write_bytes(overlay.read_bytes()[:100])
    result = run_cli("report", pred, "--out", tmp_path / "report.html")
    assert_success(result)
    warnings = warning_lines(result.stderr)
    assert len(warnings) == 1 and overlay.name in warnings[0]
    html = (tmp_path / "report.html").read_text()
    assert f"{overlay.name.removesuffix('_overlay.png')}: overlay cannot be read" in html


def test_unicode_names_are_predicted_and_measured(tmp_path, samples_dir):
    """ядра.tif and 細胞_DAPI.tif: outputs carry the names; Cellpose-style label files
    (NAME_cp_masks.png) pair with their images."""
    pixels = tifffile.imread(samples_dir / "images" / "IXMtest_B12_s2.tif")[:256, :256]
    images = tmp_path / "images"
    images.mkdir()
    for name in ("ядра.tif", "細胞_DAPI.tif"):
        tifffile.imwrite(images / name, pixels)
    out = tmp_path / "предсказания"
    assert_success(run_cli("predict", images, "--out", out, "--device", "cpu"))
    labels = tmp_path / "masks"
    labels.mkdir()
    for stem in ("ядра", "細胞_DAPI"):
        assert (out / f"{stem}_labels.tif").is_file() and (out / f"{stem}_overlay.png").is_file()
        shutil.copy(out / f"{stem}_labels.tif", labels / f"{stem}_cp_masks.tif")
    result = run_cli("measure", labels, "--image", images, "--out", tmp_path / "объекты.csv", "--no-summary")
    assert_success(result)
    import pandas as pd

    table = pd.read_csv(tmp_path / "объекты.csv")
    assert set(table["image"]) == {"ядра", "細胞_DAPI"}
    assert table["intensity_mean"].notna().all() and len(table) > 0
