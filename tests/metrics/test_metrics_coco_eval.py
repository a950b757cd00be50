"""coco_evaluate against pycocotools run directly, on real BBBC039 annotations.

pycocotools' per-image matching is pure Python (about D x G steps per image), so the expensive
evaluations are computed once per module."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from metrics_testdata import label_gt, label_results
from morphoscope.metrics.coco_eval import coco_evaluate

CATEGORIES = [{"id": 1, "name": "nucleus"}]


@pytest.fixture(scope="module")
def coco_pair(gt_labels, predictions):
    images, anns, results = [], [], []
    for image_id, (g, (p, scores)) in enumerate(zip(gt_labels, predictions), start=1):
        h, w = g.shape
        images.append({"id": image_id, "file_name": f"{image_id}.tif", "width": w, "height": h})
        anns += label_gt(g, image_id=image_id, start_id=len(anns) + 1)
        results += label_results(p, scores, image_id=image_id)
    return {"images": images, "annotations": anns, "categories": CATEGORIES}, results


@pytest.fixture(scope="module")
def ours(coco_pair):
    gt, results = coco_pair
    return {n: coco_evaluate(gt, results, max_detections=n) for n in (100, 1000)}


def direct(gt, results, iou_type, max_dets):
    """pycocotools as its README runs it, with maxDets [1, 10, max_dets]."""
    results = copy.deepcopy(results)
    if iou_type == "segm":  # mask area, not box area, for small/medium/large (see coco_eval)
        for r in results:
            r.pop("bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), iou_type)
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _none(v):
    return None if v == -1 else pytest.approx(v, abs=1e-12)


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_equals_pycocotools_at_100(coco_pair, ours, iou_type):
    gt, results = coco_pair
    got = ours[100][iou_type]
    s = direct(gt, results, iou_type, 100).stats
    expected = dict(AP=s[0], AP50=s[1], AP75=s[2], APs=s[3], APm=s[4], APl=s[5], AR=s[8])
    assert {k: got[k] for k in expected} == {k: _none(v) for k, v in expected.items()}
    assert got["per_class"] == {"nucleus": pytest.approx(s[0])}
    assert 0.3 < got["AP"] < 0.95  # a real, imperfect prediction


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_equals_pycocotools_at_1000(coco_pair, ours, iou_type):
    gt, results = coco_pair
    got = ours[1000][iou_type]
    ev = direct(gt, results, iou_type, 1000)
    s = ev.stats
    # summarize() looks AP up at 100 detections, absent from maxDets: the trap coco_eval avoids.
    assert s[0] == -1
    prec = ev.eval["precision"][:, :, :, 0, -1]
    assert got["AP"] == pytest.approx(prec[prec > -1].mean())
    assert [got[k] for k in ("AP50", "AP75", "APs", "APm", "APl", "AR")] == [
        _none(v) for v in (s[1], s[2], s[3], s[4], s[5], s[8])]


def test_max_detections_matters(coco_pair, ours):
    _, results = coco_pair
    assert sum(r["image_id"] == 1 for r in results) > 100
    assert ours[100]["max_detections"] == 100 and ours[1000]["max_detections"] == 1000
    for iou_type in ("segm", "bbox"):
        assert ours[1000][iou_type]["AP"] > ours[100][iou_type]["AP"] + 0.05
        assert ours[1000][iou_type]["AR"] > ours[100][iou_type]["AR"] + 0.05


def test_empty_results_score_zero(coco_pair):
    gt, _ = coco_pair
    out = coco_evaluate(gt, [])
    for iou_type in ("segm", "bbox"):
        assert out[iou_type]["AP"] == 0.0 and out[iou_type]["AR"] == 0.0
        assert out[iou_type]["per_class"] == {"nucleus": 0.0}


def test_no_gt_objects_is_none(coco_pair):
    gt, _ = coco_pair
    empty = {"images": gt["images"][2:], "annotations": [],
             "categories": CATEGORIES + [{"id": 2, "name": "mitosis"}]}
    out = coco_evaluate(empty, [])["segm"]
    assert out["AP"] is None and out["per_class"] == {"nucleus": None, "mitosis": None}


def _images_2_3(coco_pair):
    gt, results = coco_pair
    return (dict(gt, images=gt["images"][1:],
                 annotations=[a for a in gt["annotations"] if a["image_id"] != 1]),
            [r for r in results if r["image_id"] != 1])


def test_empty_image_changes_nothing(coco_pair):
    # Image 3 has no GT; without its one (fake) prediction, dropping it changes no number.
    gt, results = _images_2_3(coco_pair)
    assert not [a for a in gt["annotations"] if a["image_id"] == 3]
    assert len([r for r in results if r["image_id"] == 3]) == 1
    results = [r for r in results if r["image_id"] != 3]
    assert coco_evaluate(gt, results) == coco_evaluate(dict(gt, images=gt["images"][:1]), results)


def test_inputs_left_untouched(coco_pair, capsys):
    gt, results = _images_2_3(coco_pair)
    before = copy.deepcopy((gt, results))
    coco_evaluate(gt, results)
    assert (gt, results) == before
    assert capsys.readouterr().out == ""  # pycocotools' log is captured...
    coco_evaluate(gt, results, iou_types=("bbox",), verbose=True)
    assert "Accumulating evaluation results" in capsys.readouterr().out  # ...unless verbose


def test_bad_arguments(coco_pair):
    gt, results = coco_pair
    with pytest.raises(ValueError, match="image ids"):
        coco_evaluate(gt, [dict(results[0], image_id=99)])
    with pytest.raises(ValueError, match="max_detections"):
        coco_evaluate(gt, results, max_detections=0)
