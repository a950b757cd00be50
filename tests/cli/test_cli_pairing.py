"""Label files pair with their images by name whatever tool wrote them: NAME.png, NAME_labels.tif,
NAME_masks.png and Cellpose's NAME_cp_masks.png all belong to NAME.tif -- in label folders of
datasets (convert, evaluate, train) and in measure."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from cli_testdata import assert_success, run_cli

ENDINGS = ["_cp_masks", "_masks", "_labels"]


def test_dataset_labels_with_tool_endings_pair_with_their_images(tmp_path, samples_dir):
    ds = tmp_path / "dataset"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    objects = 0
    for image, ending in zip(sorted((samples_dir / "images").glob("*.tif")), ENDINGS):
        shutil.copy(image, ds / "images" / image.name)
        label = samples_dir / "labels" / f"{image.stem}.png"
        shutil.copy(label, ds / "labels" / f"{image.stem}{ending}.png")
        objects += len(np.unique(np.asarray(Image.open(label)))) - 1
    assert_success(run_cli("convert", ds, tmp_path / "coco", "--to", "coco"))
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == objects


def test_measure_pairs_cellpose_masks_with_the_image_not_the_cp_name(tmp_path, samples_dir):
    """a_cp_masks.png belongs to a.tif; a_cp.tif is its image only when there is no a.tif."""
    pixels = tifffile.imread(samples_dir / "images" / "IXMtest_B12_s2.tif")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    shutil.copy(samples_dir / "labels" / "IXMtest_B12_s2.png", labels / "well_cp_masks.png")
    tifffile.imwrite(images / "well.tif", pixels)
    tifffile.imwrite(images / "well_cp.tif", pixels // 2)  # a decoy: half the intensity
    assert_success(run_cli("measure", labels, "--image", images, "--out", tmp_path / "a.csv", "--no-summary"))
    (images / "well.tif").unlink()
    assert_success(run_cli("measure", labels, "--image", images, "--out", tmp_path / "b.csv", "--no-summary"))
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert set(a["image"]) == {"well"} and len(a) > 50
    assert np.allclose(b["intensity_mean"], np.floor(a["intensity_mean"] / 2), atol=1)
    assert (a["intensity_mean"] > b["intensity_mean"] * 1.5).all()
