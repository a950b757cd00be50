"""The shipped default model and the demo, on the bundled samples (no ../shared needed)."""

import json

import numpy as np
import pytest
import tifffile
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from morphoscope.tasks import list_models, load_model


def test_shipped_model_card():
    cards = {c["name"]: c for c in list_models()}
    card = cards["nuclei"]  # the generalist (docs/models.md): any modality and scale
    assert card["task"] == "semantic" and card["classes"] == ["nucleus"]
    assert card["metrics"]["bbbc039/f1@0.5"] >= 0.91 and card["metrics"]["dsb2018/f1@0.5"] >= 0.80
    old = cards["nuclei-maskrcnn"]  # the earlier BBBC039-only model stays available by name
    assert old["task"] == "instance" and old["metrics"]["f1@0.5"] >= 0.90 and old["metrics"]["images"] == 50


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from morphoscope.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    result = run_demo(out, echo=lambda *a: None)
    return out, result


def test_demo_outputs_and_accuracy(demo_run, samples_dir):
    out, result = demo_run
    for name in ("IXMtest_G13_s9", "IXMtest_B12_s2", "IXMtest_K12_s7"):
        assert (out / "predictions" / f"{name}_labels.tif").is_file()
        assert (out / "predictions" / f"{name}_overlay.png").is_file()
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "predictions" / "measurements.csv").is_file()
    # the shipped model really segments nuclei: 424 annotated nuclei in the three samples
    m = result["matching"]["0.5"]
    assert m["tp"] + m["fn"] == 424
    assert m["f1"] > 0.89, m  # 0.912 when shipped (docs/models.md)


def test_demo_coco_ap_equals_pycocotools_run_directly(demo_run, samples_dir):
    """The demo's COCO mask AP, recomputed here with pycocotools from the files alone."""
    from morphoscope.formats import load_instance_dataset
    from morphoscope.formats.coco import masks_to_coco_annotations

    out, result = demo_run
    pred = json.loads((out / "predictions" / "predictions.json").read_text())
    ds = load_instance_dataset(samples_dir).by_name()
    images, anns = [], []
    for im in pred["images"]:
        masks, classes = ds[im["file_name"].rsplit(".", 1)[0]].load_instances()
        images.append(im)
        anns += masks_to_coco_annotations(masks, classes, image_id=im["id"], start_id=len(anns) + 1)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": pred["categories"]}
    gt.createIndex()
    dt = gt.loadRes([{k: v for k, v in a.items() if k != "bbox"} for a in pred["annotations"]])
    ev = COCOeval(gt, dt, "segm")
    ev.params.maxDets = [1, 10, 1000]
    ev.evaluate()
    ev.accumulate()
    p = ev.eval["precision"][:, :, 0, 0, -1]
    assert result["coco"]["max_detections"] == 1000
    assert result["coco"]["segm"]["AP"] == pytest.approx(float(np.mean(p[p > -1])), abs=1e-9)


def test_shipped_weights_load_in_float32():
    bundle = load_model()
    assert all(p.dtype.is_floating_point and p.dtype == __import__("torch").float32
               for p in bundle.model.parameters())
