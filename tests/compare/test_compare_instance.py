"""``compare`` on two real (tiny) Mask R-CNN models: the table's numbers are each model's own
``predict`` + ``evaluate`` output, the bootstrap sees the same counts, outputs are complete."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compare_testdata import crop_dataset, first_names, need_bbbc, train_tiny_instance

pytestmark = pytest.mark.filterwarnings("ignore:only \\d+ image")

SCORE = 0.2  # tiny models score low; 0.2 keeps objects on both sides


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    need_bbbc()
    tmp = tmp_path_factory.mktemp("cmp")
    train_dir = crop_dataset(tmp / "train", "training", first_names("training", 2), size=(256, 256))
    gt = crop_dataset(tmp / "gt", "validation", first_names("validation", 3))
    runs = [train_tiny_instance(train_dir, tmp / "scratch_a", seed=0, iters=1),
            train_tiny_instance(train_dir, tmp / "scratch_b", seed=1, iters=2)]
    from morphoscope.compare import compare

    result = compare(runs, gt, out=tmp / "out", score_threshold=SCORE, n_boot=300, plots=False)
    return tmp, runs, gt, result


def test_table_equals_each_models_own_evaluate(setup, tmp_path):
    from morphoscope.metrics.evaluate import evaluate
    from morphoscope.prediction.predict import predict

    tmp, runs, gt, result = setup
    assert list(result["models"]) == ["scratch_a", "scratch_b"]
    for name, run in zip(result["models"], runs):
        pred = predict(gt / "images", tmp_path / name, model=run, score_threshold=SCORE, progress=False)
        own = evaluate(pred, gt)
        table = result["models"][name]["table"]
        for key in ("0.5", "0.75"):
            for q in ("f1", "ap"):
                assert table[f"{q}@{key}"] == own["matching"][key][q]
        for q in ("precision", "recall", "fnr", "tp", "fp", "fn"):
            assert table[f"{q}@0.5"] == own["matching"]["0.5"][q]
        assert table["ap@0.5:0.95"] == pytest.approx(np.mean([v["ap"] for v in own["matching"].values()]))
        for q in ("AP", "AP50", "AP75", "AR"):
            assert table[f"coco_mask_{q}"] == own["coco"]["segm"][q]
            assert table[f"coco_box_{q}"] == own["coco"]["bbox"][q]
        assert table["objects_pred"] == own["objects"]["pred"]
        assert result["models"][name]["evaluation"]["matching"] == own["matching"]
        # the bootstrap's statistics on all images are the same numbers
        boot = result["bootstrap"]["models"][name]
        for key in ("f1@0.5", "precision@0.5", "recall@0.5", "fnr@0.5", "ap@0.5", "f1@0.75", "ap@0.5:0.95"):
            assert boot[key]["value"] == pytest.approx(table[key]), key
            assert boot[key]["low"] <= boot[key]["value"] + 1e-9 <= boot[key]["high"] + 2e-9
        assert boot["pixel_iou"]["value"] == pytest.approx(table["pixel_iou"])


def test_pixel_scores_equal_semantic_metrics(setup):
    """Pixel IoU/Dice are those of morphoscope.metrics.semantic on the same class maps."""
    from morphoscope.io.images import read_label_image
    from morphoscope.metrics.semantic import semantic_scores

    tmp, runs, gt, result = setup
    for name, m in result["models"].items():
        pairs = []
        for f in sorted((gt / "labels").glob("*.png")):
            g = read_label_image(f) > 0
            p = read_label_image(tmp / "out" / "predictions" / name / f"{f.stem}_labels.tif") > 0
            pairs.append((g.astype(int), p.astype(int)))
        ref = semantic_scores(pairs, 2, ["nucleus"])
        assert m["table"]["pixel_iou"] == pytest.approx(ref["iou"])
        assert m["table"]["pixel_dice"] == pytest.approx(ref["dice"])


def test_score_curve_at_the_threshold_matches_the_table(setup):
    from morphoscope.compare.segmentation import SCORE_GRID

    _, _, _, result = setup
    j = SCORE_GRID.index(SCORE)
    for m in result["models"].values():
        c = m["curves"]["score"]
        assert c["f1"]["value"][j] == pytest.approx(m["table"]["f1@0.5"])
        assert c["recall"]["value"][j] == pytest.approx(m["table"]["recall@0.5"])
        iou = m["curves"]["iou"]
        assert iou["x"][0] == 0.5 and iou["fnr"]["value"][0] == pytest.approx(m["table"]["fnr@0.5"])
        recall = np.array(c["recall"]["value"])
        assert (np.diff(recall) <= 1e-12).all()  # fewer objects kept, fewer found


def test_outputs_and_plots(setup):
    from morphoscope.compare.plots import write_plots

    tmp, _, _, result = setup
    out = tmp / "out"
    for f in ("comparison.md", "comparison.csv", "comparison.json", "differences.csv"):
        assert (out / f).is_file(), f
    md = (out / "comparison.md").read_text()
    assert "| F1 @ IoU 0.5 |" in md and "scratch_b − scratch_a" in md
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["models"]["scratch_a"]["table"] == pytest.approx(result["models"]["scratch_a"]["table"])
    diffs = saved["bootstrap"]["differences"]
    assert {d["metric"] for d in diffs} >= {"f1@0.5", "fnr@0.5", "pixel_iou"}
    for d in diffs:
        assert d["significant"] == (d["low"] > 0 or d["high"] < 0)
    written = write_plots(result, out)
    assert set(written) == {"vs_iou_threshold.png", "vs_score_threshold.png", "coco_ap_per_class.png",
                            "pixel_iou_per_class.png"}
    assert all((out / f).stat().st_size > 1000 for f in written)


def test_bad_arguments(setup, tmp_path):
    from morphoscope.compare import compare
    from morphoscope.errors import InputError, OutputExistsError

    tmp, runs, gt, _ = setup
    with pytest.raises(OutputExistsError):
        compare(runs, gt, out=tmp / "out", n_boot=100)
    with pytest.raises(InputError, match="at least 100"):
        compare(runs, gt, n_boot=10)
    with pytest.raises(InputError, match="names for"):
        compare(runs, gt, names=["only-one"])
    with pytest.raises(InputError, match="dataset not found"):
        compare(runs, tmp_path / "nowhere", n_boot=100)
