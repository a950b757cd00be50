"""The shipped default ``nuclei`` model (semantic FPN with boundary, distance and size heads,
trained on BBBC039 + DSB2018: docs/models.md) on real images bundled with the package (CC0): the
BBBC039 validation samples and one H&E-stained DSB2018 validation image, neither trained on.

* the size head's estimate is within 15 % of the annotated median diameter at three scales;
* nuclei are found in the H&E image (dark nuclei on a bright background, colour) and in inverted
  fluorescence;
* ``predict --diameter`` rescales to the model's object size and returns labels on the input grid;
* the out-of-distribution check ranks an electron-microscopy image (from ../shared) above the
  samples and warns through ``ImageResult.warnings`` above its threshold.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.transform import rescale

from morphoscope.engine.predictor import Predictor
from morphoscope.io.images import read_image, read_label_image
from morphoscope.metrics.matching import match
from morphoscope.samples import BBBC039, histology_sample


@pytest.fixture(scope="module")
def nuclei():
    from morphoscope.tasks import load_model

    bundle = load_model("nuclei", device="cpu")
    if bundle.task.name != "semantic" or not bundle.extra.get("diameter"):
        pytest.skip("the shipped nuclei model is not the generalist model")
    return bundle


@pytest.fixture(scope="module")
def bbbc039_samples():
    out = []
    for p in sorted((BBBC039 / "images").glob("*.tif"))[:2]:
        out.append((read_image(p), read_label_image(BBBC039 / "labels" / f"{p.stem}.png").astype(np.int32)))
    return out


def median_diameter(labels):
    a = np.bincount(labels.ravel())[1:]
    a = a[a > 0]
    return float(np.median(2 * np.sqrt(a / np.pi)))


def f1(gt, result):
    m = match(gt, result.objects.to_labels()[0], thresholds=(0.5,))["0.5"]
    return 2 * m.tp / max(1, 2 * m.tp + m.fp + m.fn)


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_size_estimate_within_15_percent(nuclei, bbbc039_samples, factor):
    predictor = Predictor(nuclei)  # the default: the automatic scale
    for image, labels in bbbc039_samples:
        x = image if factor == 1 else rescale(image.astype(np.float32), factor, order=1, preserve_range=True,
                                               anti_aliasing=factor < 1)
        res = predictor.predict(x)
        truth = median_diameter(labels) * factor
        assert res.settings["scale_from"] == "estimate"
        assert res.settings["diameter"] == pytest.approx(truth, rel=0.15)
        assert res.objects.shape == x.shape


def test_histology_sample_nuclei_are_found(nuclei):
    image_path, label_path = histology_sample()
    image = read_image(image_path)
    assert image.ndim == 3 and image.shape[-1] == 4  # RGBA PNG, as DSB2018 ships it
    gt = read_label_image(label_path).astype(np.int32)
    res = Predictor(nuclei).predict(image)  # automatic scale
    # measured with the shipped model: 45 objects for 61 nuclei, F1 0.72 (its histology F1 on the
    # DSB2018 val split is 0.62: docs/models.md); with the nuclei's diameter given, F1 0.80
    assert len(res.objects_at()) >= 0.6 * gt.max()
    assert f1(gt, res) >= 0.6
    assert not any("unlike" in w for w in res.warnings)
    res = Predictor(nuclei, diameter=median_diameter(gt)).predict(image)
    assert f1(gt, res) >= 0.7


def test_inverted_fluorescence(nuclei, bbbc039_samples):
    image, labels = bbbc039_samples[0]
    plain = f1(labels, Predictor(nuclei).predict(image))
    inverted = f1(labels, Predictor(nuclei).predict(image.max() - image))
    assert plain >= 0.85  # measured 0.876, inverted 0.861
    assert inverted >= plain - 0.05


def test_cli_predict_with_diameter(nuclei, bbbc039_samples, tmp_path):
    import tifffile
    from typer.testing import CliRunner

    from morphoscope.cli import app

    image, labels = bbbc039_samples[0]
    big = np.round(rescale(image.astype(np.float32), 2.0, order=1, preserve_range=True)).astype(image.dtype)
    tifffile.imwrite(tmp_path / "big.tif", big)
    d = 2 * median_diameter(labels)
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "big.tif"), "--out", str(tmp_path / "p"),
                                 "--diameter", f"{d:.1f}", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    out = tifffile.imread(tmp_path / "p" / "big_labels.tif")
    assert out.shape == big.shape  # labels on the input grid
    assert median_diameter(out.astype(np.int32)) == pytest.approx(d, rel=0.1)
    info = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert info["info"]["model"] == "nuclei"
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "big.tif"), "--out", str(tmp_path / "q"),
                                 "--diameter", "huge", "--device", "cpu"])
    assert r.exit_code != 0 and "diameter must be" in r.output


def test_out_of_distribution_warning(nuclei, bbbc039_samples, shared_data):
    """The check ranks an electron-microscopy image above a BBBC039 one and warns through
    ImageResult.warnings above its threshold. At the shipped threshold (the largest validation
    score) this EM image is *not* warned about: the check is weak on this model (docs/models.md),
    so the warning is shown here with the threshold placed between the two scores."""
    import copy

    assert nuclei.extra.get("ood"), "the shipped model carries its OOD statistics"
    em = read_image(sorted((shared_data / "platelet-em-z0" / "images").glob("*.png"))[0])
    p = Predictor(nuclei)
    res_in = p.predict(bbbc039_samples[0][0])
    score_in = p.inference.last_ood_score
    assert not any("unlike" in w for w in res_in.warnings)
    p.predict(em)
    score_em = p.inference.last_ood_score
    assert score_em > score_in
    bundle = copy.copy(nuclei)
    bundle.extra = {**nuclei.extra, "ood": {**nuclei.extra["ood"], "threshold": (score_in + score_em) / 2}}
    res = Predictor(bundle).predict(em)
    assert any("unlike the images the model was trained on" in w for w in res.warnings)
    assert not any("unlike" in w for w in Predictor(bundle).predict(bbbc039_samples[0][0]).warnings)
