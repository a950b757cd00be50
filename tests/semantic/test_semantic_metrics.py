"""Semantic pixel metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from morphoscope.metrics.semantic import confusion_matrix, scores_from_confusion, semantic_scores


def test_binary_hand_computed():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 0, 1]])
    cm = confusion_matrix(gt, pred, 2)
    assert cm.tolist() == [[3, 1], [1, 3]]
    s = scores_from_confusion(cm, ["nucleus"])
    # foreground: TP 3, FP 1, FN 1 -> IoU 3/5, Dice 6/8; background likewise
    assert s["iou"] == pytest.approx(0.6)
    assert s["dice"] == pytest.approx(0.75)
    assert s["miou"] == pytest.approx(0.6)
    assert s["pixel_accuracy"] == pytest.approx(6 / 8)
    assert s["per_class"]["nucleus"] == {"iou": pytest.approx(0.6), "dice": pytest.approx(0.75),
                                         "tp": 3, "fp": 1, "fn": 1}


def test_three_classes_absent_class_and_ignore():
    gt = np.array([0, 1, 1, 2, 2, 2, -1])
    pred = np.array([0, 1, 2, 2, 2, 0, 1])  # last pixel ignored
    s = semantic_scores([(gt, pred)], 4, ["a", "b", "c"])  # class c absent from both
    # background: TP1 FP1 FN0 -> 1/2; a: TP1 FP0 FN1 -> 1/2; b: TP2 FP1 FN1 -> 2/4
    assert s["per_class"]["background"]["iou"] == pytest.approx(0.5)
    assert s["per_class"]["a"]["iou"] == pytest.approx(0.5)
    assert s["per_class"]["b"]["iou"] == pytest.approx(0.5)
    assert s["per_class"]["c"]["iou"] is None
    assert s["per_class"]["b"]["dice"] == pytest.approx(4 / 6)
    assert s["iou"] == pytest.approx(0.5)  # mean over a, b (c has no value)
    assert s["miou"] == pytest.approx(0.5)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert s["pixels"] == 6


def test_pooled_over_images_and_perfect():
    a = np.array([[1, 0]])
    s = semantic_scores([(a, a), (np.zeros((1, 2), int), np.zeros((1, 2), int))], 2)
    assert s["iou"] == 1.0 and s["pixel_accuracy"] == 1.0
    with pytest.raises(ValueError):
        confusion_matrix(a, np.array([[2, 0]]), 2)
    with pytest.raises(ValueError):
        confusion_matrix(a, np.zeros((2, 2), int), 2)
