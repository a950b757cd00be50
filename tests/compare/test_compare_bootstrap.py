"""The paired bootstrap: its interval contains the observed difference and narrows with more
images; its statistics on all images equal the reported metrics (matching, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from morphoscope.compare.bootstrap import Statistic, bootstrap_difference, paired_bootstrap, ratio
from morphoscope.compare.classification import per_image_counts, statistics, with_image_count

F1 = Statistic(lambda s: ratio(2 * s[:, 0], 2 * s[:, 0] + s[:, 1] + s[:, 2]))


def _counts(rng, n, recall, fp_rate):
    """Per-image TP, FP, FN of a detector finding ``recall`` of ~40 objects per image."""
    gt = rng.poisson(40, n)
    tp = rng.binomial(gt, recall)
    fp = rng.poisson(fp_rate * gt)
    return np.column_stack([tp, fp, gt - tp]).astype(float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_difference_and_narrows(seed):
    rng = np.random.default_rng(seed)
    widths = []
    for n in (15, 60, 240):
        a = _counts(rng, n, 0.80, 0.10)
        b = _counts(rng, n, 0.85, 0.10)
        d = bootstrap_difference(a, b, F1, n_boot=1000, seed=seed)
        obs = float(F1.fn(b.sum(0, keepdims=True))[0] - F1.fn(a.sum(0, keepdims=True))[0])
        assert d["diff"] == pytest.approx(obs)
        assert d["low"] <= obs <= d["high"]
        widths.append(d["high"] - d["low"])
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] > 2.5  # ~ sqrt(16) = 4 in theory


def test_pairing_and_significance():
    rng = np.random.default_rng(3)
    a = _counts(rng, 50, 0.7, 0.2)
    same = paired_bootstrap({"a": a, "b": a.copy()}, {"f1": F1}, n_boot=500)["differences"][0]
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0 and not same["significant"]
    # B finds 5 more objects on every image: a small but consistent gain, detected because paired
    b = a.copy()
    b[:, 0] += 5
    b[:, 2] -= 5
    d = paired_bootstrap({"a": a, "b": b}, {"f1": F1, "fn": Statistic(lambda s: s[:, 2], higher_is_better=False)},
                         n_boot=500)
    f1, fn = d["differences"]
    assert f1["significant"] and f1["better"] == "b" and f1["low"] > 0
    assert fn["significant"] and fn["better"] == "b" and fn["high"] < 0
    assert d["models"]["a"]["f1"]["low"] <= d["models"]["a"]["f1"]["value"] <= d["models"]["a"]["f1"]["high"]


def test_classification_statistics_equal_sklearn():
    rng = np.random.default_rng(7)
    y = (rng.random((30, 5)) < [0.4, 0.2, 0.05, 0.0, 0.5]).astype(int)
    pred = np.where(rng.random(y.shape) < 0.8, y, 1 - y)
    counts = with_image_count(per_image_counts(y, pred, multi_label=True))
    stats = statistics(5)
    total = counts.sum(0, keepdims=True)
    present = [c for c in range(5) if y[:, c].any()]
    expected = {"micro_f1": skm.f1_score(y, pred, average="micro", zero_division=0),
                "macro_f1": skm.f1_score(y, pred, average="macro", zero_division=0),
                "macro_f1_present": skm.f1_score(y, pred, average="macro", labels=present, zero_division=0),
                "exact_match": skm.accuracy_score(y, pred), "hamming_loss": skm.hamming_loss(y, pred)}
    for key, value in expected.items():
        assert stats[key].fn(total)[0] == pytest.approx(value), key
    # single-label: one-hot rows
    t, p = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    counts = with_image_count(per_image_counts(np.eye(3)[t], np.eye(3)[p], multi_label=False)).sum(0, keepdims=True)
    stats = statistics(3)
    assert stats["micro_f1"].fn(counts)[0] == pytest.approx(skm.accuracy_score(t, p))
    assert stats["macro_f1"].fn(counts)[0] == pytest.approx(skm.f1_score(t, p, average="macro"))
    assert stats["hamming_loss"].fn(counts)[0] == pytest.approx(skm.hamming_loss(t, p))


def test_labels_by_score_equal_to_labels():
    """Cutting one painting by score gives exactly the label image of the objects above each
    threshold (Objects.above(s).to_labels())."""
    from morphoscope.compare.segmentation import SCORE_GRID, _labels_by_score
    from morphoscope.engine.objects import Objects

    rng = np.random.default_rng(0)
    n, h, w = 30, 48, 48
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 9)
        yy, xx = np.ogrid[:h, :w]
        masks[i] = (yy - y) ** 2 + (xx - x) ** 2 <= r * r  # overlapping discs
    scores = rng.random(n).astype(np.float32)
    objs = Objects((h, w), list(masks), np.zeros((n, 2), np.int64), scores, np.ones(n, np.int64)).sorted()
    for (lab, idx), s in zip(_labels_by_score(objs, SCORE_GRID), SCORE_GRID):
        ref, ref_idx = objs.above(s).to_labels()
        assert np.array_equal(lab, ref) and np.array_equal(idx, ref_idx)
