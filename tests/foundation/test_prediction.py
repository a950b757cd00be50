"""Prediction files and formats, the crop-wise mask pasting against torchvision's, and crop-wise
COCO RLE against pycocotools'."""

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision.models.detection.roi_heads import paste_masks_in_image

from foundation_testdata import tiny_instance_config
from morphoscope.engine.objects import Objects, crop_rle
from morphoscope.errors import InputError, OutputExistsError
from morphoscope.tasks.instance.task import paste_masks_in_boxes


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, samples_dir):
    from morphoscope.tasks import load_model
    from morphoscope.training.run import train

    run = train(tiny_instance_config(samples_dir, epochs=1, iters=1), out=tmp_path_factory.mktemp("run"),
                progress=False)
    bundle = load_model(run)
    bundle.model.roi_heads.score_thresh = 0.0  # an untrained model: make sure there are objects
    return bundle


def test_paste_in_boxes_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 1, 28, 28, generator=g)
    xy = torch.rand(12, 2, generator=g) * 90 - 10
    wh = torch.rand(12, 2, generator=g) * 40 + 1
    boxes = torch.cat([xy, xy + wh], 1)  # some boxes stick out of the image
    ref = paste_masks_in_image(masks, boxes, (80, 100))[:, 0] > 0.5
    crops, origins = paste_masks_in_boxes(masks, boxes, (80, 100), 0.5)
    pred = Objects((80, 100), crops, origins, np.ones(12, np.float32), np.ones(12, np.int64))
    for i in range(12):
        assert np.array_equal(pred.mask(i), ref[i].numpy()), i


def test_to_labels_higher_score_keeps_overlap():
    a = np.zeros((10, 10), bool); a[2:6, 2:6] = True
    b = np.zeros((10, 10), bool); b[4:8, 4:8] = True
    c = np.zeros((10, 10), bool); c[0, 9] = True
    pred = Objects((10, 10), [a, b, c], np.zeros((3, 2), np.int64), np.array([0.9, 0.8, 0.3], np.float32),
                   np.array([1, 2, 1]))
    labels, idx = pred.above(0.5).to_labels()
    assert idx.tolist() == [0, 1]
    assert labels[5, 5] == 1 and labels[7, 7] == 2 and labels[0, 9] == 0
    assert (labels == 2).sum() == 16 - 4
    labels, idx = pred.above(0.0).to_labels()
    assert idx.tolist() == [0, 1, 2] and labels[0, 9] == 3
    tight = pred.tight()  # crops cut to the masks, same masks
    for i in range(3):
        assert np.array_equal(tight.mask(i), pred.mask(i))


def test_crop_rle_is_byte_identical_to_pycocotools():
    """COCO RLE built from a crop equals pycocotools' encoding of the full-size mask, for crops
    anywhere (touching every border, full height, empty) and on real predicted nuclei shapes."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        H, W = rng.integers(1, 30, 2)
        h, w = rng.integers(1, H + 1), rng.integers(1, W + 1)
        y0, x0 = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
        crop = rng.random((h, w)) < rng.random()
        full = np.zeros((H, W), np.uint8)
        full[y0:y0 + h, x0:x0 + w] = crop
        assert crop_rle(crop, (y0, x0), (H, W))["counts"] == mask_utils.encode(np.asfortranarray(full))["counts"].decode()


def test_predict_writes_every_output_consistently(tmp_path, tiny_model, samples_dir):
    from morphoscope.prediction.predict import predict

    images = sorted((samples_dir / "images").glob("*.tif"))[:2]
    out = predict(images, tmp_path / "p", model=tiny_model, score_threshold=0.0, progress=False)
    data = json.loads((out / "predictions.json").read_text())
    assert [im["file_name"] for im in data["images"]] == [p.name for p in images]
    assert data["categories"] == [{"id": 1, "name": "nucleus"}]
    coco_gt = COCO()
    coco_gt.dataset = {"images": data["images"], "categories": data["categories"], "annotations": []}
    coco_gt.createIndex()
    if data["annotations"]:
        coco_gt.loadRes(data["annotations"])  # a valid COCO results list
    for im in data["images"]:
        name = im["file_name"].rsplit(".", 1)[0]
        labels = tifffile.imread(out / f"{name}_labels.tif")
        assert labels.dtype == np.uint16 and labels.shape == (520, 696)
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
        assert sorted(a["label"] for a in anns) == list(range(1, labels.max() + 1))
        for a in anns:  # the JSON mask of label k is object k's whole mask: its label pixels and
            # any pixels a higher-scoring overlapping object took in the label image
            m = mask_utils.decode({"size": a["segmentation"]["size"],
                                   "counts": a["segmentation"]["counts"].encode()}) > 0
            assert np.all(m[labels == a["label"]])
            assert np.all((labels[m] == a["label"]) | (labels[m] < a["label"]) & (labels[m] > 0))
        scores = [a["score"] for a in sorted(anns, key=lambda a: a["label"])]
        assert scores == sorted(scores, reverse=True)
        cls = np.asarray(Image.open(out / f"{name}_nucleus.png"))
        assert set(np.unique(cls)) <= {0, 255} and np.array_equal(cls > 0, labels > 0)
        ov = np.asarray(Image.open(out / f"{name}_overlay.png"))
        assert ov.shape == (520, 696, 3) and ov.dtype == np.uint8


def test_predict_refuses_to_overwrite_and_names_bad_inputs(tmp_path, tiny_model, samples_dir):
    from morphoscope.prediction.predict import predict

    img = sorted((samples_dir / "images").glob("*.tif"))[0]
    predict([img], tmp_path / "p", model=tiny_model, progress=False)
    before = (tmp_path / "p" / "predictions.json").read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        predict([img], tmp_path / "p", model=tiny_model, progress=False)
    assert (tmp_path / "p" / "predictions.json").read_bytes() == before
    predict([img], tmp_path / "p", model=tiny_model, progress=False, overwrite=True)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="bad.png"):
        predict([bad], tmp_path / "q", model=tiny_model, progress=False)
    assert not (tmp_path / "q" / "bad_labels.tif").exists()
    with pytest.raises(InputError, match="score threshold"):
        predict([img], tmp_path / "r", model=tiny_model, score_threshold=1.5, progress=False)


def test_cli_predict_and_unknown_model(tmp_path, samples_dir):
    from typer.testing import CliRunner

    from morphoscope.cli import app

    r = CliRunner().invoke(app, ["predict", str(samples_dir / "images"), "--out", str(tmp_path),
                                 "--model", "no-such-model"])
    assert r.exit_code != 0 and "unknown model 'no-such-model'" in r.output and "Traceback" not in r.output
