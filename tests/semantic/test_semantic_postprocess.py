"""Instances from probability maps: watershed splits touching objects, components do not."""

from __future__ import annotations

import numpy as np

from morphoscope.tasks.semantic.data import aux_target
from morphoscope.tasks.semantic.postprocess import instances_from_probs, seeded_watershed


def two_touching_discs(h=64, w=96, r=16):
    yy, xx = np.mgrid[:h, :w]
    a = (yy - 32) ** 2 + (xx - 32) ** 2 <= r * r
    b = (yy - 32) ** 2 + (xx - 60) ** 2 <= r * r  # centres 28 px apart: the discs overlap
    truth = np.zeros((h, w), np.int32)
    truth[a] = 1
    truth[b & ~a] = 2
    return a | b, truth


def probs_of(mask):
    fg = mask.astype(np.float32) * 0.9 + 0.05
    return np.stack([1 - fg, fg])


def test_watershed_splits_two_touching_discs_distance_transform():
    mask, _ = two_touching_discs()
    labels = seeded_watershed(mask, None, kind="mask")
    assert len(np.unique(labels[labels > 0])) == 2
    lab, classes, scores = instances_from_probs(probs_of(mask), None, kind="mask", method="watershed")
    assert lab.max() == 2 and classes.tolist() == [0, 1, 1]
    assert np.allclose(scores[1:], 0.95)
    # each object is close to one disc
    assert abs((lab == 1).sum() - (lab == 2).sum()) < 0.1 * mask.sum()


def test_watershed_splits_with_boundary_and_distance_heads():
    mask, truth = two_touching_discs()
    for kind in ("boundary", "distance"):
        aux = aux_target(truth, kind, 2)
        lab, _, _ = instances_from_probs(probs_of(mask), aux, kind=kind, method="watershed")
        assert lab.max() == 2, kind
        assert (lab > 0).sum() == mask.sum()


def test_components_keep_touching_discs_together_and_drop_small():
    mask, _ = two_touching_discs()
    mask = mask.copy()
    mask[0:2, 0:2] = True  # a 4-pixel speck
    lab, _, _ = instances_from_probs(probs_of(mask), None, method="components", min_size=10)
    assert lab.max() == 1


def test_multiclass_objects_take_majority_class():
    mask, _ = two_touching_discs()
    probs = np.zeros((3,) + mask.shape, np.float32)
    probs[0] = ~mask
    probs[1] = mask & (np.arange(mask.shape[1]) < 46)
    probs[2] = mask & (np.arange(mask.shape[1]) >= 46)
    lab, classes, _ = instances_from_probs(probs, None, kind="mask", method="watershed")
    assert sorted(classes[1:].tolist()) == [1, 2]
