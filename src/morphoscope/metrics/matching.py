"""Object-level matching of predicted to ground-truth instance-label images (as StarDist does).

Quantities, for one IoU threshold ``t``:

``IoU``    intersection over union of one GT object and one predicted object, in pixels.
``TP``     matched pairs: a one-to-one assignment of predicted to GT objects with IoU >= t that has
           as many pairs as possible and, among those, the largest summed IoU.
``FP``     predicted objects left unmatched; ``FN``: GT objects left unmatched.
``precision`` = TP / (TP + FP), ``recall`` = TP / (TP + FN), ``f1`` = 2 TP / (2 TP + FP + FN),
``fnr`` (false-negative rate) = FN / (TP + FN), ``ap`` = TP / (TP + FP + FN) (the "average
precision" of the cell-segmentation literature, e.g. the DSB2018 and StarDist papers; not COCO AP),
``mean_matched_iou`` = mean IoU of the matched pairs.

0/0: when there is nothing to find and nothing was found (TP + FP + FN = 0) every quantity takes
its perfect value (1, and 0 for ``fnr``); any other 0/0 is 0 (e.g. precision with no predictions).

Label images hold 0 for background and one positive integer per object; values need not be
consecutive. Objects are identified by their label values throughout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

STAT_KEYS = ("tp", "fp", "fn", "precision", "recall", "f1", "fnr", "ap", "mean_matched_iou")


def threshold_key(t: float) -> str:
    """Dictionary key of threshold ``t``: ``"0.5"``, ``"0.55"``, ..., ``"0.95"``."""
    return str(round(float(t), 2))


@dataclass(frozen=True)
class ThresholdMatch:
    """The matched pairs at one IoU threshold (pair ``i`` is ``gt_ids[i]`` <-> ``pred_ids[i]``).

    ``classes`` holds each pair's class when the matching was class-aware, else None.
    """

    threshold: float
    gt_ids: np.ndarray
    pred_ids: np.ndarray
    ious: np.ndarray
    classes: np.ndarray | None
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class Matching:
    """Result of :func:`match` for one image.

    ``gt_class_counts`` / ``pred_class_counts`` ({class: objects}) are set for class-aware
    matching only.
    """

    n_gt: int
    n_pred: int
    by_threshold: dict[str, ThresholdMatch]
    gt_class_counts: dict[int, int] | None = None
    pred_class_counts: dict[int, int] | None = None

    def __getitem__(self, threshold: float | str) -> ThresholdMatch:
        key = threshold if isinstance(threshold, str) else threshold_key(threshold)
        return self.by_threshold[key]


def _check_labels(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"label images differ in shape: GT {gt.shape}, prediction {pred.shape}")
    for name, a in (("GT", gt), ("prediction", pred)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"{name} label image must be integer, got dtype {a.dtype}")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} label image has negative labels")
    return gt, pred


def _dense_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted object label values ``ids`` and a flat index image: 0 for background, ``i`` for
    label ``ids[i - 1]``."""
    flat = labels.ravel().astype(np.int64, copy=False)
    top = int(flat.max(initial=0))
    if top < max(flat.size, 1 << 16):
        # Look-up table: linear time, no sort.
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        lut = np.zeros(top + 1, np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        return ids, lut[flat]
    # Sparse huge label values (e.g. hashed ids): sort instead of a huge table.
    ids, inverse = np.unique(flat, return_inverse=True)
    if ids[0] == 0:
        return ids[1:], inverse.reshape(-1)
    return ids, inverse.reshape(-1) + 1


def _overlaps(gt: np.ndarray, pred: np.ndarray):
    """Contingency table of the two label images, as its non-zero object/object cells.

    Returns ``gt_ids, pred_ids, rows, cols, ious`` where cell ``k`` pairs GT object
    ``gt_ids[rows[k]]`` with predicted object ``pred_ids[cols[k]]`` and their IoU is ``ious[k]``.
    """
    gt_ids, gi = _dense_index(gt)
    pred_ids, pi = _dense_index(pred)
    n_g, n_p = len(gt_ids) + 1, len(pred_ids) + 1
    code = gi * n_p + pi
    if n_g * n_p <= code.size:
        counts = np.bincount(code, minlength=n_g * n_p)
        cells = np.flatnonzero(counts)
        counts = counts[cells]
    else:  # more cells than pixels: count only the occupied ones
        cells, counts = np.unique(code, return_counts=True)
    rows, cols = np.divmod(cells, n_p)
    gt_area = np.bincount(gi, minlength=n_g)
    pred_area = np.bincount(pi, minlength=n_p)
    inside = (rows > 0) & (cols > 0)
    rows, cols, inter = rows[inside], cols[inside], counts[inside]
    ious = inter / (gt_area[rows] + pred_area[cols] - inter)
    return gt_ids, pred_ids, rows - 1, cols - 1, ious


def iou_matrix(gt_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """IoU of every GT object (rows) with every predicted object (columns), float64
    ``(n_gt, n_pred)``; rows and columns follow the sorted label values of each image."""
    gt_labels, pred_labels = _check_labels(gt_labels, pred_labels)
    gt_ids, pred_ids, rows, cols, ious = _overlaps(gt_labels, pred_labels)
    out = np.zeros((len(gt_ids), len(pred_ids)))
    out[rows, cols] = ious
    return out


def _assign(rows: np.ndarray, cols: np.ndarray, ious: np.ndarray, t: float):
    """Optimal one-to-one pairs among the cells with IoU >= t: most pairs, then largest IoU sum."""
    ok = ious >= t
    rows, cols, ious = rows[ok], cols[ok], ious[ok]
    if len(np.unique(rows)) == len(rows) and len(np.unique(cols)) == len(cols):
        # The candidates are already one-to-one (always so above IoU 0.5 for label images, whose
        # objects do not overlap), so taking all of them is optimal.
        return rows, cols, ious
    ur, ri = np.unique(rows, return_inverse=True)
    uc, ci = np.unique(cols, return_inverse=True)
    score = np.zeros((len(ur), len(uc)))
    score[ri, ci] = ious
    # StarDist's cost: one more pair always outweighs any IoU gain (the IoU term sums to < 1/2).
    cost = -(score >= t).astype(float) - score / (2 * min(score.shape))
    i, j = linear_sum_assignment(cost)
    keep = score[i, j] >= t
    i, j = i[keep], j[keep]
    return ur[i], uc[j], score[i, j]


def _class_array(ids: np.ndarray, classes: Mapping[int, int], what: str) -> np.ndarray:
    missing = [int(v) for v in ids if int(v) not in classes]
    if missing:
        raise ValueError(f"{what} labels without a class: {missing[:10]}")
    return np.array([classes[int(v)] for v in ids], np.int64)


def _counts(classes: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(classes, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def match(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    gt_classes: Mapping[int, int] | None = None,
    pred_classes: Mapping[int, int] | None = None,
) -> Matching:
    """Match the objects of two label images of the same shape at each IoU threshold.

    With ``gt_classes`` and ``pred_classes`` ({label value: class}) the matching is class-aware:
    a pair whose classes differ never matches.
    """
    gt_labels, pred_labels = _check_labels(gt_labels, pred_labels)
    if any(not 0 < t <= 1 for t in thresholds):
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {list(thresholds)}")
    if (gt_classes is None) != (pred_classes is None):
        raise ValueError("give both gt_classes and pred_classes, or neither")
    gt_ids, pred_ids, rows, cols, ious = _overlaps(gt_labels, pred_labels)
    gt_cls = pred_cls = None
    if gt_classes is not None:
        gt_cls = _class_array(gt_ids, gt_classes, "GT")
        pred_cls = _class_array(pred_ids, pred_classes, "predicted")
        same = gt_cls[rows] == pred_cls[cols]
        rows, cols, ious = rows[same], cols[same], ious[same]
    by_threshold = {}
    for t in thresholds:
        r, c, v = _assign(rows, cols, ious, t)
        tp = len(r)
        by_threshold[threshold_key(t)] = ThresholdMatch(
            threshold=float(t), gt_ids=gt_ids[r], pred_ids=pred_ids[c], ious=v,
            classes=None if gt_cls is None else gt_cls[r],
            tp=tp, fp=len(pred_ids) - tp, fn=len(gt_ids) - tp)
    return Matching(
        n_gt=len(gt_ids), n_pred=len(pred_ids), by_threshold=by_threshold,
        gt_class_counts=None if gt_cls is None else _counts(gt_cls),
        pred_class_counts=None if pred_cls is None else _counts(pred_cls))


def _ratio(num: float, den: float, perfect: float, nothing: bool) -> float:
    if nothing:
        return perfect
    return float(num / den) if den else 0.0


def _stats(tp: int, fp: int, fn: int, iou_sum: float) -> dict:
    nothing = tp + fp + fn == 0
    return {
        "tp": int(tp), "fp": int(fp), "fn": int(fn),
        "precision": _ratio(tp, tp + fp, 1.0, nothing),
        "recall": _ratio(tp, tp + fn, 1.0, nothing),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, 1.0, nothing),
        "fnr": _ratio(fn, tp + fn, 0.0, nothing),
        "ap": _ratio(tp, tp + fp + fn, 1.0, nothing),
        "mean_matched_iou": _ratio(iou_sum, tp, 1.0, nothing),
    }


def matching_stats(
    items: Iterable,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    class_names: Sequence[str] | None = None,
) -> dict:
    """Matching quantities pooled over images: TP, FP and FN are summed over all images first,
    then the ratios are taken (so large images weigh more than in a mean of per-image scores).

    Each item is a :class:`Matching`, a ``(gt_labels, pred_labels)`` pair of label images, or
    ``(gt_labels, pred_labels, gt_classes, pred_classes)`` for class-aware matching.

    Returns ``{"0.5": {tp, fp, fn, precision, recall, f1, fnr, ap, mean_matched_iou}, ...,
    "0.95": {...}}``; after class-aware matching each threshold's entry also has ``"per_class":
    {class: {...same quantities...}}``, keyed by ``class_names[class - 1]`` when given, else by
    the class number as a string.
    """
    keys = [threshold_key(t) for t in thresholds]
    tot = {k: np.zeros(3, np.int64) for k in keys}
    iou_sum = dict.fromkeys(keys, 0.0)
    per_class: dict[str, dict[int, list]] = {k: {} for k in keys}
    class_aware = False
    for item in items:
        m = item if isinstance(item, Matching) else match(
            item[0], item[1], thresholds=thresholds,
            gt_classes=item[2] if len(item) > 2 else None,
            pred_classes=item[3] if len(item) > 3 else None)
        class_aware |= m.gt_class_counts is not None
        for k in keys:
            tm = m[k]
            tot[k] += (tm.tp, tm.fp, tm.fn)
            iou_sum[k] += float(tm.ious.sum())
            if m.gt_class_counts is None:
                continue
            for c in set(m.gt_class_counts) | set(m.pred_class_counts):
                acc = per_class[k].setdefault(c, [0, 0, 0, 0.0])  # tp, fp, fn, iou sum
                mine = tm.classes == c
                tp_c = int(mine.sum())
                acc[0] += tp_c
                acc[1] += m.pred_class_counts.get(c, 0) - tp_c
                acc[2] += m.gt_class_counts.get(c, 0) - tp_c
                acc[3] += float(tm.ious[mine].sum())
    out = {}
    for k in keys:
        out[k] = _stats(*tot[k], iou_sum[k])
        if class_aware:
            out[k]["per_class"] = {
                (class_names[c - 1] if class_names else str(c)): _stats(*acc)
                for c, acc in sorted(per_class[k].items())}
    return out


def match_class_planes(
    gt_planes: np.ndarray,
    pred_planes: np.ndarray,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
) -> Matching:
    """Class-aware matching of objects that may overlap across classes, given as one label plane
    per class: ``gt_planes`` and ``pred_planes`` are ``(K, H, W)`` (or ``(K, ...)``), plane
    ``k - 1`` holding the objects of class ``k`` (an organelle inside its cell: each whole in its
    own class's plane). Each class is matched on its own planes as :func:`match` does; the result
    is one :class:`Matching` with every pair's class, so :func:`matching_stats` reports it pooled
    and per class. Without overlaps it equals class-aware :func:`match` on one label image."""
    gt_planes, pred_planes = np.asarray(gt_planes), np.asarray(pred_planes)
    if gt_planes.shape != pred_planes.shape:
        raise ValueError(f"class planes differ in shape: GT {gt_planes.shape}, prediction {pred_planes.shape}")
    if any(not 0 < t <= 1 for t in thresholds):
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {list(thresholds)}")
    parts = []
    for k in range(len(gt_planes)):
        g, p = _check_labels(gt_planes[k], pred_planes[k])
        parts.append((k + 1, *_overlaps(g, p)))
    gt_counts = {c: len(gi) for c, gi, *_ in parts if len(gi)}
    pred_counts = {c: len(pi) for c, _, pi, *_ in parts if len(pi)}
    n_gt, n_pred = sum(gt_counts.values()), sum(pred_counts.values())
    by_threshold = {}
    for t in thresholds:
        gids, pids, ious, cls = [], [], [], []
        for c, gi, pi, rows, cols, v in parts:
            r, q, s = _assign(rows, cols, v, t)
            gids.append(gi[r])
            pids.append(pi[q])
            ious.append(s)
            cls.append(np.full(len(r), c, np.int64))
        gids, pids = np.concatenate(gids).astype(np.int64), np.concatenate(pids).astype(np.int64)
        tp = len(gids)
        by_threshold[threshold_key(t)] = ThresholdMatch(
            threshold=float(t), gt_ids=gids, pred_ids=pids, ious=np.concatenate(ious).astype(np.float64),
            classes=np.concatenate(cls), tp=tp, fp=n_pred - tp, fn=n_gt - tp)
    return Matching(n_gt=n_gt, n_pred=n_pred, by_threshold=by_threshold,
                    gt_class_counts=gt_counts, pred_class_counts=pred_counts)
