"""Classification metrics equal scikit-learn's on the same arrays; threshold tuning is optimal."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from morphoscope.tasks.classify.metrics import classification_metrics, decide, format_metrics, tune_thresholds


@pytest.fixture()
def multilabel():
    rng = np.random.default_rng(5)
    n, k = 40, 6
    y = (rng.random((n, k)) < [0.5, 0.3, 0.1, 0.05, 0.0, 0.6]).astype(int)
    y[0, 3] = 1  # class 3 present once; class 4 never present
    score = np.clip(y * 0.35 + rng.random((n, k)) * 0.65, 0, 1)
    thr = np.array([0.5, 0.4, 0.6, 0.3, 0.5, 0.55])
    return y, score, thr


def test_multilabel_metrics_equal_sklearn(multilabel):
    y, score, thr = multilabel
    m = classification_metrics(y, score, thresholds=thr, class_names=list("abcdef"))
    pred = (score >= thr).astype(int)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for c, name in enumerate("abcdef"):
        pc = m["per_class"][name]
        assert pc["precision"] == pytest.approx(p[c])
        assert pc["recall"] == pytest.approx(r[c])
        assert pc["f1"] == pytest.approx(f[c])
        assert pc["support"] == s[c]
        assert pc["predicted"] == pred[:, c].sum()
        assert pc["threshold"] == pytest.approx(thr[c])
        if 0 < y[:, c].sum() < len(y):
            assert pc["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, c], score[:, c]))
        else:
            assert pc["roc_auc"] is None  # class 4: never present, AUC undefined
    assert m["per_class"]["e"]["roc_auc"] is None
    assert m["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro", zero_division=0))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    present = [c for c in range(6) if y[:, c].any()]
    assert m["macro_f1_present"] == pytest.approx(
        skm.f1_score(y, pred, average="macro", labels=present, zero_division=0))
    assert m["exact_match"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred))
    aucs = [skm.roc_auc_score(y[:, c], score[:, c]) for c in range(6) if 0 < y[:, c].sum() < len(y)]
    assert m["mean_roc_auc"] == pytest.approx(np.mean(aucs))
    assert m["roc_auc_classes"] == len(aucs)
    assert "micro_f1" in format_metrics(m)


def test_single_label_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    n, k = 30, 4
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += 1.0
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = prob.argmax(1)
    m = classification_metrics(truth, prob, multi_label=False)
    p, r, f, s = skm.precision_recall_fscore_support(truth, pred, labels=range(k), average=None, zero_division=0)
    assert [m["per_class"][str(c)]["f1"] for c in range(k)] == pytest.approx(f)
    assert [m["per_class"][str(c)]["precision"] for c in range(k)] == pytest.approx(p)
    assert m["micro_f1"] == pytest.approx(skm.accuracy_score(truth, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(truth, pred, average="macro"))
    assert m["exact_match"] == pytest.approx(skm.accuracy_score(truth, pred))
    assert m["hamming_loss"] == pytest.approx(skm.hamming_loss(truth, pred))
    for c in range(k):
        assert m["per_class"][str(c)]["roc_auc"] == pytest.approx(skm.roc_auc_score(truth == c, prob[:, c]))
    assert (decide(prob, multi_label=False).argmax(1) == pred).all()


def test_tuned_thresholds_maximise_f1(multilabel):
    y, score, _ = multilabel
    thr, tuned = tune_thresholds(y, score)
    assert tuned == [bool(y[:, c].any()) for c in range(y.shape[1])]
    assert thr[4] == 0.5  # no positive: the default is kept
    for c in range(y.shape[1]):
        if not tuned[c]:
            continue
        best = max(skm.f1_score(y[:, c], score[:, c] >= t, zero_division=0) for t in np.unique(score[:, c]))
        got = skm.f1_score(y[:, c], score[:, c] >= thr[c], zero_division=0)
        assert got == pytest.approx(best)
        assert not np.any(np.isclose(score[:, c], thr[c]))  # the boundary lies between two images


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(np.zeros((3, 2)), np.zeros((4, 2)))
