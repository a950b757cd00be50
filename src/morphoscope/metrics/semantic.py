"""Pixel metrics of semantic segmentation, all from one confusion matrix.

``C[i, j]`` counts pixels of true class ``i`` predicted as class ``j`` (class 0 = background).
Per class ``k``: ``TP = C[k, k]``, ``FP = column sum - TP``, ``FN = row sum - TP``;
``IoU = TP / (TP + FP + FN)``, ``Dice = 2 TP / (2 TP + FP + FN)``. A class absent from both truth
and prediction has no IoU/Dice (``None``) and is left out of the means. ``pixel_accuracy`` is
``trace(C) / sum(C)``. ``miou`` is the mean IoU over all classes, background included (the usual
definition); ``iou`` and ``dice`` are the means over the foreground classes (for one foreground
class: that class's IoU — "the IoU" of a nucleus mask). Pixels with a negative truth value are
ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 confusion matrix; ``num_classes`` includes background."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"truth {gt.shape} and prediction {pred.shape} differ in shape")
    keep = gt >= 0
    g = gt[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if g.size and (g.max() >= num_classes or p.max() >= num_classes or p.min() < 0):
        raise ValueError(f"class values must lie in 0..{num_classes - 1}")
    return np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num / den)


def scores_from_confusion(cm: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """IoU and Dice per class, their means, and pixel accuracy (see module docstring).

    ``class_names`` names the foreground classes 1..K (background is ``background``).
    """
    cm = np.asarray(cm, np.int64)
    k = cm.shape[0]
    names = ["background"] + list(class_names if class_names is not None else [str(i) for i in range(1, k)])
    if len(names) != k:
        raise ValueError(f"{k - 1} foreground classes in the matrix but {len(names) - 1} names")
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    iou = {n: _ratio(tp[i], tp[i] + fp[i] + fn[i]) for i, n in enumerate(names)}
    dice = {n: _ratio(2 * tp[i], 2 * tp[i] + fp[i] + fn[i]) for i, n in enumerate(names)}

    def mean(vals):
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    fgn = names[1:]
    return {
        "iou": mean(iou[n] for n in fgn),
        "dice": mean(dice[n] for n in fgn),
        "miou": mean(iou.values()),
        "pixel_accuracy": _ratio(tp.sum(), cm.sum()),
        "per_class": {n: {"iou": iou[n], "dice": dice[n], "tp": int(tp[i]), "fp": int(fp[i]), "fn": int(fn[i])}
                      for i, n in enumerate(names)},
        "pixels": int(cm.sum()),
    }


def semantic_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int,
                    class_names: Sequence[str] | None = None) -> dict:
    """Scores over many (truth, prediction) class maps, pooled in one confusion matrix."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    for g, p in pairs:
        cm += confusion_matrix(g, p, num_classes)
    out = scores_from_confusion(cm, class_names)
    out["confusion"] = cm.tolist()
    return out
