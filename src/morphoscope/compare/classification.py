"""Comparing classification models on one labelled dataset (CSV or class folders).

Each model writes ``classifications.csv`` for the GT images (as ``morphoscope predict`` does) and
is scored by :func:`morphoscope.tasks.classify.metrics.evaluate_classifications` (scikit-learn). For the
bootstrap every image contributes its per-class TP, FP and FN, whether its whole label set is
right, and its share of wrong decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.compare.bootstrap import Statistic, ratio
from morphoscope.errors import InputError


@dataclass
class ClassificationResult:
    name: str
    path: str
    task: str
    evaluation: dict
    per_image: np.ndarray  # (N, 3K + 3): per_image_counts + a column of ones
    pred_dir: Path
    table: dict = field(default_factory=dict)


def per_image_counts(y_true: np.ndarray, y_pred: np.ndarray, multi_label: bool) -> np.ndarray:
    """``(N, 3K + 2)``: per class TP, FP, FN (class-major), exact match (0/1), and the image's
    share of the Hamming loss (multi-label: wrong decisions / K; single-label: 1 - exact)."""
    yt, yp = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp, fp, fn = yt & yp, ~yt & yp, yt & ~yp
    k = yt.shape[1]
    per_class = np.stack([tp, fp, fn], axis=2).reshape(len(yt), 3 * k)
    exact = (yt == yp).all(1)
    hamming = (yt != yp).sum(1) / k if multi_label else (~exact).astype(float)
    return np.column_stack([per_class, exact, hamming]).astype(np.float64)


def statistics(num_classes: int) -> dict[str, Statistic]:
    """Bootstrapped quantities from summed rows of :func:`with_image_count` (the last column
    counts the images drawn); the same formulas as scikit-learn's (``zero_division=0``)."""
    k = num_classes

    def parts(s):
        c = s[:, : 3 * k].reshape(-1, k, 3)
        return c[..., 0], c[..., 1], c[..., 2]

    def micro(s):
        tp, fp, fn = (v.sum(1) for v in parts(s))
        return ratio(2 * tp, 2 * tp + fp + fn)

    def macro(s):
        tp, fp, fn = parts(s)
        return ratio(2 * tp, 2 * tp + fp + fn).mean(1)

    def macro_present(s):
        tp, fp, fn = parts(s)
        present = (tp + fn) > 0
        return ratio((ratio(2 * tp, 2 * tp + fp + fn) * present).sum(1), present.sum(1))

    return {"micro_f1": Statistic(micro), "macro_f1": Statistic(macro),
            "macro_f1_present": Statistic(macro_present),
            "exact_match": Statistic(lambda s: ratio(s[:, 3 * k], s[:, -1])),
            "hamming_loss": Statistic(lambda s: ratio(s[:, 3 * k + 1], s[:, -1]), higher_is_better=False)}


def with_image_count(per_image: np.ndarray) -> np.ndarray:
    """Append a column of ones, so that summed rows carry the number of images drawn."""
    return np.column_stack([per_image, np.ones(len(per_image))])


def load_gt(gt: Path, bundle):
    from morphoscope.tasks.classify.data import load_classification_dataset

    d = bundle.config.get("data", {})
    return load_classification_dataset(gt, class_names=list(bundle.class_names), channels=d.get("channels"))


def evaluate_model(bundle, dataset, gt: Path, pred_dir: Path, *, progress: bool = False) -> ClassificationResult:
    from morphoscope.prediction.predict import predict_groups
    from morphoscope.tasks.classify.metrics import evaluate_classifications, read_classifications_csv

    if bundle.task.result_kind != "classes":
        raise InputError(f"model '{bundle.name}' is a {bundle.task.name} model, not a classifier")
    if list(bundle.class_names) != list(dataset.class_names):
        raise InputError(f"model '{bundle.name}' has classes {bundle.class_names}, the GT "
                         f"{dataset.class_names}", path=gt)
    predict_groups(bundle, [(s.id, s.files) for s in dataset.samples], pred_dir, overwrite=True,
                   progress=progress)
    ev = evaluate_classifications(pred_dir, gt, channels=bundle.config.get("data", {}).get("channels"))
    names, _, _, decisions = read_classifications_csv(pred_dir)
    row = {n: i for i, n in enumerate(names)}
    y_pred = decisions[[row[s.id] for s in dataset.samples]]
    counts = with_image_count(per_image_counts(dataset.label_matrix(), y_pred, ev["multi_label"]))
    res = ClassificationResult(bundle.name, str(bundle.path), bundle.task.name, ev, counts, pred_dir)
    res.table = {key: ev[key] for key in ("micro_f1", "macro_f1", "macro_f1_present", "exact_match",
                                          "hamming_loss", "mean_roc_auc")}
    res.table["images"] = ev["images"]
    return res
