"""Files, folders, prediction folders, tables, summaries, metadata and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from morphology_testdata import bbbc_or_skip, run_cli, write_pred_dir
from PIL import Image

from morphoscope.errors import InputError
from morphoscope.morphology import (
    measure_files,
    measure_labels,
    measure_prediction_dir,
    read_pixel_size,
    read_table,
    summarize,
    write_table,
)


def two_objects(shape=(40, 50)):
    lab = np.zeros(shape, np.uint16)
    lab[5:15, 5:20] = 1
    lab[20:35, 25:40] = 2
    return lab


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("labels, message", [
    (np.ones((5, 5), np.float32), "must hold integers"),
    (np.ones((5, 5), bool), "boolean"),
    (-np.ones((5, 5), np.int32), "negative"),
    (np.ones((2, 5, 5), np.uint16), "must be 2D"),
])
def test_bad_label_arrays(labels, message):
    with pytest.raises(InputError, match=message):
        measure_labels(labels)


@pytest.mark.parametrize("size", [0, -0.5, float("nan"), float("inf"), "abc"])
def test_bad_pixel_size(size):
    with pytest.raises(InputError, match="pixel size must be a"):
        measure_labels(two_objects(), pixel_size=size)


def test_image_shape_mismatch():
    with pytest.raises(InputError, match=r"intensity image has shape \(40, 49\).*\(40, 50\)"):
        measure_labels(two_objects(), image=np.zeros((40, 49)))


@pytest.mark.parametrize("pixel_size, physical", [(None, False), (0.5, True)])
def test_empty_label_image_gives_empty_table(pixel_size, physical):
    lab = np.zeros((30, 30), np.uint16)
    t = measure_labels(lab, image=np.ones((30, 30)), pixel_size=pixel_size, scores={})
    full = measure_labels(two_objects((30, 30)), image=np.ones((30, 30)),
                          pixel_size=pixel_size, scores={1: 1.0, 2: 0.5})
    assert len(t) == 0
    assert list(t.columns) == list(full.columns)
    assert dict(t.dtypes) == dict(full.dtypes)
    assert ("area_um2" in t) == physical
    s = summarize(t)
    assert list(s["count"]) == [0]  # the image is still listed, with no objects


def test_files_errors_name_the_file(tmp_path, capsys):
    lab_dir, img_dir = tmp_path / "labels", tmp_path / "images"
    lab_dir.mkdir()
    img_dir.mkdir()
    Image.fromarray(two_objects()).save(lab_dir / "a.png")
    tifffile.imwrite(img_dir / "a.tif", np.zeros((40, 49), np.uint16))
    with pytest.raises(InputError, match="is 40x50 but its image a.tif is 40x49") as exc:
        measure_files(lab_dir, images=img_dir)
    assert exc.value.path.name == "a.png"
    tifffile.imwrite(lab_dir / "b.tif", np.ones((40, 50), np.float32) * 0.5)
    with pytest.raises(InputError, match="non-integer") as exc:
        measure_files(lab_dir / "b.tif")
    assert exc.value.path.name == "b.tif"
    other = tmp_path / "other"
    other.mkdir()
    tifffile.imwrite(other / "zzz.tif", np.zeros((40, 50), np.uint16))
    tifffile.imwrite(other / "yyy.tif", np.zeros((40, 50), np.uint16))
    with pytest.raises(InputError, match="no intensity image of the same name: a.png"):
        measure_files(lab_dir / "a.png", images=other)
    # the command line: one line naming the file, exit code 2, no traceback
    code, out, err = run_cli(["measure", lab_dir / "a.png", "--image", img_dir / "a.tif",
                              "--out", tmp_path / "m.csv"], capsys)
    assert code == 2 and "a.png" in err and "Traceback" not in err
    code, out, err = run_cli(["measure", lab_dir / "a.png", "--pixel-size", "-1",
                              "--out", tmp_path / "m.csv"], capsys)
    assert code == 2 and "pixel size must be a positive number" in err
    code, out, err = run_cli(["measure", lab_dir / "a.png", "--out", tmp_path / "m.xlsx"],
                             capsys)
    assert code == 2 and ".csv or .parquet" in err
    assert not (tmp_path / "m.csv").exists()


def test_empty_label_file_cli(tmp_path, capsys):
    Image.fromarray(np.zeros((20, 20), np.uint16)).save(tmp_path / "empty.png")
    code, out, err = run_cli(["measure", tmp_path / "empty.png", "--out", tmp_path / "m.csv"],
                             capsys)
    assert code == 0, err
    t = pd.read_csv(tmp_path / "m.csv")
    assert len(t) == 0 and "circularity" in t.columns and "area_px2" in t.columns
    s = pd.read_csv(tmp_path / "m_summary_by_image.csv")
    assert list(s["count"]) == [0]


# ------------------------------------------------------------------------------ files and tables


def test_measure_files_and_tables_roundtrip(tmp_path, capsys):
    lab_dir, img_dir = tmp_path / "ctrl", tmp_path / "images"
    lab_dir.mkdir()
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    for name in ("x1", "x2"):
        Image.fromarray(two_objects()).save(lab_dir / f"{name}_labels.png")
        tifffile.imwrite(img_dir / f"{name}.tif", rng.integers(0, 999, (40, 50), np.uint16))
    (lab_dir / "classes.json").write_text(json.dumps(
        {"names": ["nucleus", "granule"], "objects": {"x1": {"2": 2}}}))
    t = measure_files(lab_dir, images=img_dir, groups="folder", n_jobs=2)
    assert list(t.image) == ["x1", "x1", "x2", "x2"]
    assert list(t["class"]) == ["nucleus", "granule", "nucleus", "nucleus"]
    assert set(t.group) == {"ctrl"} and "intensity_mean" in t
    for suffix in (".csv", ".parquet"):
        path = write_table(t, tmp_path / f"m{suffix}")
        back = read_table(path)
        pd.testing.assert_frame_equal(back, t, check_dtype=False, check_exact=False, rtol=1e-15)
    code, out, err = run_cli(["measure", lab_dir, "--image", img_dir, "--out",
                              tmp_path / "cli.parquet", "--group-by-folder"], capsys)
    assert code == 0, err
    assert (tmp_path / "cli_summary_by_group.parquet").is_file()
    code, out, err = run_cli(["measure", lab_dir, "--out", tmp_path / "cli.parquet"], capsys)
    assert code == 2 and "--overwrite" in err


def test_summary_numbers():
    lab = np.zeros((100, 100), np.uint16)
    lab[10:20, 10:20] = 1  # 100 px
    lab[40:45, 40:60] = 2  # 100 px
    lab[70:73, 70:73] = 3  # 9 px
    t = measure_labels(lab, classes={1: "a", 2: "a", 3: "b"}, image_name="i", pixel_size=2.0)
    t2 = measure_labels(np.zeros((100, 100), np.uint16), image_name="j", pixel_size=2.0)
    both = pd.concat([t, t2], ignore_index=True)
    both.attrs["images"] = {**t.attrs["images"], **t2.attrs["images"]}
    s = summarize(both, by=("image", "class")).set_index(["image", "class"])
    a = s.loc[("i", "a")]
    assert a["count"] == 2
    assert a["area_um2_mean"] == 400 and a["area_um2_median"] == 400 and a["area_um2_sd"] == 0
    # image area 100 x 100 px of 2 um = 0.04 mm^2
    assert a["density_per_mm2"] == pytest.approx(2 / 0.04)
    assert s.loc[("j", "a"), "count"] == 0 and s.loc[("j", "b"), "count"] == 0
    per_class = summarize(both, by=("class",)).set_index("class")
    assert per_class.loc["a", "density_per_mm2"] == pytest.approx(2 / 0.08)  # both images
    assert np.isnan(per_class.loc["b", "area_um2_sd"])  # one object: no SD
    # non-finite values are left out of the statistics, and counted
    lab1 = np.zeros((10, 10), np.uint16)
    lab1[2, 2] = 1
    lab1[5:8, 5:8] = 2
    s1 = summarize(measure_labels(lab1))
    assert s1.loc[0, "circularity_n"] == 1 and s1.loc[0, "circularity_mean"] == 1.0


# ------------------------------------------------------------------------------ metadata


def test_pixel_size_from_tiff_metadata(tmp_path):
    lab = two_objects()
    tifffile.imwrite(tmp_path / "ij.tif", lab, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"unit": "um"})
    tifffile.imwrite(tmp_path / "ome.ome.tif", lab, ome=True,
                     metadata={"PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65,
                               "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    tifffile.imwrite(tmp_path / "cm.tif", lab, resolution=(10000 / 2.0, 10000 / 2.0),
                     resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "inch.tif", lab, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "plain.tif", lab)
    tifffile.imwrite(tmp_path / "rect.tif", lab, imagej=True, resolution=(1 / 0.3, 1 / 0.6),
                     metadata={"unit": "micron"})
    assert read_pixel_size(tmp_path / "ij.tif") == pytest.approx(0.325)
    assert read_pixel_size(tmp_path / "ome.ome.tif") == pytest.approx(0.65)
    assert read_pixel_size(tmp_path / "cm.tif") == pytest.approx(2.0)
    assert read_pixel_size(tmp_path / "inch.tif") is None
    assert read_pixel_size(tmp_path / "plain.tif") is None
    with pytest.raises(InputError, match="not square"):
        read_pixel_size(tmp_path / "rect.tif")
    t = measure_files(tmp_path / "ij.tif")
    assert "area_um2" in t and t.pixel_size_um.iloc[0] == pytest.approx(0.325)
    t = measure_files(tmp_path / "ij.tif", pixel_size=1.0)  # the option wins
    assert t.pixel_size_um.iloc[0] == 1.0
    with pytest.warns(UserWarning, match="record no pixel size"):
        t = measure_files([tmp_path / "ij.tif", tmp_path / "plain.tif"])
    assert "area_px2" in t


# ------------------------------------------------------------------------------ prediction folder


def test_prediction_dir(tmp_path, capsys):
    lab = two_objects()
    lab2 = np.zeros_like(lab)
    lab2[1:30, 1:5] = 1
    pred = write_pred_dir(tmp_path / "pred", [
        ("a", lab, {1: 0.9, 2: 0.3}, {1: 1, 2: 2}),
        ("b", lab2, {1: 0.7}, {1: 2}),
        ("c", np.zeros_like(lab), {}, {}),
    ], categories=((1, "platelet"), (2, "granule")))
    t = measure_prediction_dir(pred)
    assert list(t.image) == ["a", "a", "b"]
    assert list(t.score) == [0.9, 0.3, 0.7]
    assert list(t["class"]) == ["platelet", "granule", "granule"]
    assert set(t.attrs["images"]) == {"a", "b", "c"}
    ref = measure_labels(lab, scores={1: 0.9, 2: 0.3}, classes={1: 1, 2: 2},
                         class_names={1: "platelet", 2: "granule"}, image_name="a")
    pd.testing.assert_frame_equal(t[t.image == "a"].reset_index(drop=True), ref)
    code, out, err = run_cli(["measure", pred, "--out", tmp_path / "p.csv"], capsys)
    assert code == 0, err
    assert "3 objects in 3 image(s)" in out
    # an object in the label image that predictions.json does not describe
    lab3 = lab.copy()
    lab3[36:39, 2:5] = 3
    tifffile.imwrite(pred / "a_labels.tif", lab3)
    with pytest.raises(InputError, match=r"label\(s\) \[3\].*does not describe") as exc:
        measure_prediction_dir(pred)
    assert exc.value.path.name == "a_labels.tif"
    with pytest.raises(InputError, match="predictions.json"):
        measure_prediction_dir(tmp_path)


def test_bbbc039_folder_with_images():
    root = bbbc_or_skip()
    labels = sorted((root / "labels").glob("*.png"))[:3]
    t = measure_files(labels, images=root / "images", pixel_size=0.65)
    assert t.image.nunique() == 3 and len(t) > 100
    assert {"intensity_mean", "intensity_median", "intensity_integrated"} <= set(t.columns)
    area_px = t.area_um2 / 0.65**2
    np.testing.assert_allclose(t.intensity_integrated, t.intensity_mean * area_px, rtol=1e-12)
