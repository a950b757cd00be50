"""Prediction of semantic models through ``morphoscope.prediction.predict``: the files of
docs/outputs.md that ``evaluate`` reads. (Blocks of large images: tests/engine.)"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from morphoscope.io.images import read_label_image


def test_predict_2d_outputs_and_evaluate(small_set, tiny_checkpoint, tmp_path):
    from morphoscope.metrics.evaluate import evaluate
    from morphoscope.prediction.predict import predict

    img = sorted((small_set / "images").glob("*.tif"))[0]
    out = predict([img], tmp_path / "pred", model=tiny_checkpoint, progress=False, measure=True)
    name = img.stem
    for f in (f"{name}_labels.tif", f"{name}_overlay.png", f"{name}_nucleus.png", "predictions.json",
              "measurements.csv"):
        assert (out / f).is_file(), f
    labels = read_label_image(out / f"{name}_labels.tif")
    assert labels.shape == (160, 224) and labels.dtype == np.uint16
    js = json.loads((out / "predictions.json").read_text())
    assert js["info"]["task"] == "semantic" and js["categories"] == [{"id": 1, "name": "nucleus"}]
    assert {a["label"] for a in js["annotations"]} == set(np.unique(labels[labels > 0]).tolist())
    assert all(0 <= a["score"] <= 1 for a in js["annotations"])
    gt = tmp_path / "gt"
    (gt / "images").mkdir(parents=True)
    (gt / "labels").mkdir()
    shutil.copy(img, gt / "images" / img.name)
    shutil.copy(small_set / "labels" / f"{name}.png", gt / "labels" / f"{name}.png")
    res = evaluate(out, gt)
    assert res["images"] == 1 and "0.5" in res["matching"]
    with pytest.raises(Exception, match="overwrite"):
        predict([img], out, model=tiny_checkpoint, progress=False)
