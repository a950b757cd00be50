"""The engine's scale plumbing on real BBBC039 nuclei (the bundled CC0 validation samples), with
an oracle model whose objects are the connected components of its input: any difference between
the objects and the annotation comes from rescaling, not from a network.

* a given diameter rescales each plane to the model's object diameter and the labels come back on
  the input grid, each object within 1 px of its annotated diameter;
* the automatic scale (a first pass, its objects' median diameter, a second pass at the model's
  scale) finds the scale of enlarged and shrunk images;
* per-plane diameters, 'off', and the refusal of a diameter for a model that records none.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.segmentation import find_boundaries
from skimage.transform import rescale

from morphoscope.engine.bundle import ModelBundle
from morphoscope.engine.objects import Objects
from morphoscope.engine.predictor import PlaneInput, Predictor
from morphoscope.engine.task import BlockOutput, Inference, Task
from morphoscope.errors import InputError
from morphoscope.io.images import read_label_image

MODEL_DIAMETER = 28.0


class OracleInference(Inference):
    """Objects = connected components of the window above 0.5 (the input is a 0/1 mask)."""

    threshold_kind = None
    threshold = None
    block_size = 512
    block_margin = 64

    def prepare(self, window, stats):
        return np.asarray(window, np.float32)[None]

    def run(self, batch):
        return [BlockOutput(objects=Objects.from_labels(ndimage.label(x[0] > 0.5)[0])) for x in batch]


class OracleTask(Task):
    name = "oracle"

    def inference(self, bundle, **options):
        return OracleInference(bundle)


def oracle(diameter=MODEL_DIAMETER) -> ModelBundle:
    return ModelBundle(name="oracle", task=OracleTask(), model=torch.nn.Identity(), class_names=["nucleus"],
                       cfg=None, normalize={}, extra={"diameter": diameter} if diameter else {})


@pytest.fixture(scope="module")
def separated(samples_dir):
    """A bundled BBBC039 label image with gaps of 4 px or more between touching nuclei (so that
    they stay apart at half size), and its mask."""
    lab = read_label_image(sorted((samples_dir / "labels").glob("*.png"))[0]).astype(np.int32)
    border = ndimage.binary_dilation(find_boundaries(lab, mode="inner"), iterations=1)
    lab = np.where(border, 0, lab)
    lab, _ = ndimage.label(lab > 0)
    return lab, (lab > 0).astype(np.float32)


def diameters(labels):
    a = np.bincount(labels.ravel())[1:]
    return 2 * np.sqrt(a[a > 0] / np.pi)


def matched_diameter_errors(gt, pred, *, min_diameter=4.0):
    """|diameter difference| of the objects matched at IoU 0.5 (each annotated object paired with
    the prediction it overlaps most), and the share of annotated objects of at least
    ``min_diameter`` px that are matched (smaller ones cannot survive half size)."""
    dg, dp = np.bincount(gt.ravel()), np.bincount(pred.ravel(), minlength=2)
    err, big, found = [], 0, 0
    for g in range(1, int(gt.max()) + 1):
        d = 2 * np.sqrt(dg[g] / np.pi)
        big += d >= min_diameter
        p = pred[gt == g]
        p = p[p > 0]
        if not len(p):
            continue
        q = np.bincount(p).argmax()
        inter = np.sum((gt == g) & (pred == q))
        if inter / (dg[g] + dp[q] - inter) >= 0.5:
            err.append(abs(d - 2 * np.sqrt(dp[q] / np.pi)))
            found += d >= min_diameter
    return np.array(err), found / max(1, big)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_given_diameter_round_trip(separated, factor):
    lab, mask = separated
    # objects of diameter d in the input are rescaled by MODEL_DIAMETER / given diameter = factor
    given = MODEL_DIAMETER / factor
    res = Predictor(oracle(), diameter=given).predict(mask)
    assert res.shape == mask.shape
    assert res.settings["scale"] == pytest.approx(factor)
    assert res.settings["scale_from"] == "diameter"
    pred, _ = res.objects.to_labels()
    assert pred.shape == lab.shape  # labels on the input grid
    err, share = matched_diameter_errors(lab, pred.astype(np.int32))
    assert share == 1.0
    assert np.median(err) <= 0.5
    assert np.quantile(err, 0.95) <= 1.0  # object sizes within 1 px
    assert abs(np.median(diameters(pred)) - np.median(diameters(lab))) <= 1.0


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_automatic_scale_finds_the_objects_size(separated, factor):
    lab, mask = separated
    big = rescale(mask, factor, order=1, anti_aliasing=factor < 1)
    true_d = np.median(diameters(lab)) * factor
    model_d = float(np.median(diameters(lab)))  # the oracle "was trained" at the sample's size
    res = Predictor(oracle(model_d)).predict(big)
    assert res.settings["scale_from"] == "estimate"
    assert res.settings["diameter"] == pytest.approx(true_d, rel=0.15)
    assert res.settings["scale"] == pytest.approx(1 / factor, rel=0.15)  # second pass at the model's size
    assert res.objects.shape == big.shape[:2]


def test_automatic_scale_keeps_the_first_pass_when_close(separated):
    lab, mask = separated
    res = Predictor(oracle(float(np.median(diameters(lab))))).predict(mask)
    assert res.settings["scale"] == 1.0
    assert res.settings["diameter"] == pytest.approx(np.median(diameters(lab)), rel=0.05)


def test_per_plane_diameter_off_and_refusals(separated):
    lab, mask = separated
    p = Predictor(oracle())
    items = [PlaneInput("a", mask, diameter=MODEL_DIAMETER / 2), PlaneInput("b", mask, diameter=MODEL_DIAMETER)]
    scales = [res.settings["scale"] for _, res in p.run(items)]
    assert scales == [pytest.approx(2.0), pytest.approx(1.0)]
    assert Predictor(oracle(), diameter="off").predict(mask).settings["scale"] == 1.0
    with pytest.raises(InputError, match="does not record the object diameter"):
        Predictor(oracle(None), diameter=20)
    with pytest.raises(InputError, match="diameter must be"):
        Predictor(oracle(), diameter="big")
    with pytest.raises(InputError, match="positive"):
        Predictor(oracle(), diameter=-3)


def test_predictions_json_records_each_images_scale(separated, tmp_path):
    """A user can see in predictions.json what scale each image was predicted at."""
    import json

    import tifffile

    from morphoscope.prediction.predict import predict

    lab, mask = separated
    tifffile.imwrite(tmp_path / "given.tif", mask)
    out = predict([tmp_path / "given.tif"], tmp_path / "out", model=oracle(), diameter=MODEL_DIAMETER / 2)
    entry = json.loads((out / "predictions.json").read_text())["images"][0]
    assert entry["morphoscope"] == {"scale": 2.0, "scale_from": "diameter", "diameter": MODEL_DIAMETER / 2}
    out = predict([tmp_path / "given.tif"], tmp_path / "off", model=oracle(), diameter="off")
    assert "morphoscope" not in json.loads((out / "predictions.json").read_text())["images"][0]
