"""Object matching: hand-computed cases, optimal assignment, pooling and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from morphoscope.metrics.matching import THRESHOLDS, iou_matrix, match, matching_stats


def square(shape, y, x, size, value=1, out=None):
    out = np.zeros(shape, np.uint16) if out is None else out
    out[y:y + size, x:x + size] = value
    return out


def test_threshold_keys():
    assert list(matching_stats([], thresholds=THRESHOLDS)) == [
        "0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]


def test_offset_squares_known_iou():
    # 10x10 squares 2 px apart: intersection 80, union 120 -> IoU 2/3.
    gt = square((20, 20), 0, 0, 10)
    pred = square((20, 20), 0, 2, 10, value=7)
    assert iou_matrix(gt, pred) == pytest.approx(np.array([[2 / 3]]))
    stats = matching_stats([(gt, pred)])
    for key in ("0.5", "0.55", "0.6", "0.65"):
        assert (stats[key]["tp"], stats[key]["fp"], stats[key]["fn"]) == (1, 0, 0)
        assert stats[key]["mean_matched_iou"] == pytest.approx(2 / 3)
    for key in ("0.7", "0.95"):
        s = stats[key]
        assert (s["tp"], s["fp"], s["fn"]) == (0, 1, 1)
        assert s["precision"] == s["recall"] == s["f1"] == s["ap"] == 0.0
        assert s["fnr"] == 1.0
    m = match(gt, pred)
    assert m[0.5].gt_ids.tolist() == [1] and m[0.5].pred_ids.tolist() == [7]


def test_threshold_boundary_counts_at_equality():
    # Prediction inside a 10x8 GT object, 60 of its 80 px: IoU exactly 0.75.
    gt = np.zeros((10, 10), np.uint8)
    gt[:, :8] = 1
    pred = np.zeros_like(gt)
    pred[:, :6] = 1
    m = match(gt, pred)
    assert m[0.75].tp == 1 and m[0.8].tp == 0


def test_split_object():
    # One GT object predicted as two halves: each half has IoU exactly 0.5.
    gt = np.ones((10, 20), np.int32)
    pred = np.ones((10, 20), np.int32)
    pred[:, 10:] = 2
    m = match(gt, pred)
    assert (m[0.5].tp, m[0.5].fp, m[0.5].fn) == (1, 1, 0)
    assert (m[0.55].tp, m[0.55].fp, m[0.55].fn) == (0, 2, 1)
    s = matching_stats([m])["0.5"]
    assert s["precision"] == 0.5 and s["recall"] == 1.0 and s["f1"] == pytest.approx(2 / 3)
    assert s["ap"] == 0.5 and s["fnr"] == 0.0


def test_assignment_beats_greedy():
    # Along a row: g1=[0,10), g2=[10,20); p1=[4,14), p2=[0,4).
    # IoU(g1,p1)=6/14, IoU(g2,p1)=4/16, IoU(g1,p2)=4/10. Greedy by IoU takes g1-p1 and then
    # g2 has no partner left (1 pair); the optimum at IoU >= 0.2 is g1-p2 + g2-p1 (2 pairs).
    gt = np.zeros((3, 20), np.uint8)
    gt[:, :10], gt[:, 10:] = 1, 2
    pred = np.zeros_like(gt)
    pred[:, 4:14], pred[:, :4] = 1, 2
    assert iou_matrix(gt, pred) == pytest.approx(np.array([[6 / 14, 4 / 10], [4 / 16, 0]]))
    t = match(gt, pred, thresholds=(0.2,))[0.2]
    assert t.tp == 2 and t.fp == 0 and t.fn == 0
    assert sorted(zip(t.gt_ids.tolist(), t.pred_ids.tolist())) == [(1, 2), (2, 1)]
    # At 0.3 only g1 has partners; the better one (p1) is taken.
    t = match(gt, pred, thresholds=(0.3,))[0.3]
    assert (t.gt_ids.tolist(), t.pred_ids.tolist()) == ([1], [1])


@pytest.mark.parametrize("gt_n, pred_n", [(0, 0), (0, 2), (2, 0)])
def test_empty_images(gt_n, pred_n):
    gt = np.zeros((30, 30), np.uint16)
    pred = np.zeros((30, 30), np.uint16)
    for i in range(gt_n):
        square(gt.shape, 12 * i, 0, 10, i + 1, out=gt)
    for i in range(pred_n):
        square(pred.shape, 12 * i, 15, 10, i + 1, out=pred)
    assert iou_matrix(gt, pred).shape == (gt_n, pred_n)
    s = matching_stats([(gt, pred)])["0.5"]
    assert (s["tp"], s["fp"], s["fn"]) == (0, pred_n, gt_n)
    if gt_n == pred_n == 0:  # nothing to find, nothing found: perfect
        assert s["precision"] == s["recall"] == s["f1"] == s["ap"] == 1.0
        assert s["fnr"] == 0.0 and s["mean_matched_iou"] == 1.0
    else:
        assert s["precision"] == s["recall"] == s["f1"] == s["ap"] == 0.0
        assert s["fnr"] == (1.0 if gt_n else 0.0)


def test_pooled_over_images_not_averaged():
    a = square((20, 20), 0, 0, 10)  # perfect
    b_gt = square((20, 20), 0, 0, 5)
    square((20, 20), 10, 10, 5, 2, out=b_gt)  # two GT objects, both missed
    s = matching_stats([(a, a), (b_gt, np.zeros_like(b_gt))])["0.5"]
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 2)
    assert s["recall"] == pytest.approx(1 / 3)  # a mean of per-image recalls would give 1/2


def test_non_consecutive_and_huge_label_values():
    # Label values far above the pixel count take the sort path instead of a look-up table.
    gt = square((20, 20), 0, 0, 10, 5).astype(np.uint32)
    gt[10:18, 10:18] = 4_000_000_000
    pred = np.zeros_like(gt)
    pred[0:10, 0:10] = 3
    pred[10:18, 10:18] = 9
    m = match(gt, pred)
    assert sorted(zip(m[0.95].gt_ids.tolist(), m[0.95].pred_ids.tolist())) == [
        (5, 3), (4_000_000_000, 9)]


def test_class_aware():
    gt = square((20, 30), 0, 0, 10, 1)
    square(gt.shape, 0, 15, 10, 2, out=gt)
    pred = gt.copy()
    m = match(gt, pred, gt_classes={1: 1, 2: 2}, pred_classes={1: 1, 2: 1})
    assert m[0.5].tp == 1  # object 2 has the wrong class
    stats = matching_stats([m], class_names=["nucleus", "mitosis"])["0.5"]
    assert (stats["tp"], stats["fp"], stats["fn"]) == (1, 1, 1)
    per = stats["per_class"]
    assert (per["nucleus"]["tp"], per["nucleus"]["fp"], per["nucleus"]["fn"]) == (1, 1, 0)
    assert (per["mitosis"]["tp"], per["mitosis"]["fp"], per["mitosis"]["fn"]) == (0, 0, 1)
    with pytest.raises(ValueError, match="without a class"):
        match(gt, pred, gt_classes={1: 1}, pred_classes={1: 1, 2: 1})


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        match(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="integer"):
        match(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="thresholds"):
        match(np.zeros((4, 4), int), np.zeros((4, 4), int), thresholds=(0.0,))


def test_fast_for_many_objects():
    # 625 objects on 1000x1000, predicted 3 px off: no loop over object pairs.
    gt = np.zeros((1000, 1000), np.uint16)
    for k in range(625):
        i, j = divmod(k, 25)
        gt[i * 40 + 2:i * 40 + 38, j * 40 + 2:j * 40 + 38] = k + 1
    pred = np.roll(gt, 3, axis=1)
    start = time.perf_counter()
    stats = matching_stats([(gt, pred)])
    assert time.perf_counter() - start < 2.0  # ~0.05 s unloaded
    assert stats["0.8"]["tp"] == 625 and stats["0.85"]["tp"] == 0  # IoU = 33*36/(39*36)
