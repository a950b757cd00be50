"""Precision, recall and F1 of a prediction folder against ground truth, as functions of the
detection-score threshold and of the IoU threshold. Object matching is
:func:`morphoscope.metrics.matching.match` (one-to-one pairs with IoU >= threshold); TP, FP and FN
are pooled over all images before the ratios are taken.

Score threshold ``s``: the objects with score >= ``s`` are kept. Because the objects of a label
image do not overlap, a GT object has at most one predicted partner with IoU > 0.5, so at IoU
thresholds >= 0.5 the matched pairs of the kept objects are exactly the matched pairs (found
once, with every object) whose predicted object is kept: TP(s) = matched pairs with score >= s,
FP(s) = kept objects - TP(s), FN(s) = GT objects - TP(s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from morphoscope.errors import InputError

IOU_GRID = tuple(round(0.1 + 0.05 * i, 2) for i in range(18))  # 0.1 .. 0.95


def _ratio(num, den, perfect, nothing):
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return np.where(nothing, perfect, r)


def prf(tp, fp, fn) -> dict[str, np.ndarray]:
    """Precision, recall and F1 with the conventions of :mod:`morphoscope.metrics.matching`
    (all 1 when there was nothing to find and nothing was found; other 0/0 are 0)."""
    tp, fp, fn = (np.asarray(a, float) for a in (tp, fp, fn))
    nothing = (tp + fp + fn) == 0
    return {"precision": _ratio(tp, tp + fp, 1.0, nothing),
            "recall": _ratio(tp, tp + fn, 1.0, nothing),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn, 1.0, nothing)}


def pairs_for_scores(pred_dir: str | Path, gt: str | Path, *, iou: float = 0.5) -> dict:
    """Match every image of ``pred_dir`` to the GT ``gt`` once at IoU ``iou``.

    Returns ``{"scores": (n_pred,), "matched": (n_pred,) bool, "n_gt": int, "matchings":
    [Matching at the IoU thresholds 0.1..0.95], "names": [image names, as the matchings],
    "iou": iou, "class_names", "class_planes": images matched on per-class planes}``. Images
    are paired by name as in
    :func:`morphoscope.metrics.evaluate` (every GT image needs a prediction). With more than
    one GT class the matching is class-aware (predicted categories paired with GT classes by
    name), and where the folder holds ``NAME_labels_by_class.tif`` each class is matched on its
    own plane as :func:`~morphoscope.metrics.evaluate.evaluate` does (objects of different
    classes may overlap; within a plane they do not, so the score-threshold rule above holds).
    """
    from morphoscope.formats.dataset import load_instance_dataset
    from morphoscope.io.images import read_label_image
    from morphoscope.metrics.matching import THRESHOLDS, match
    from morphoscope.morphology.measure import prediction_objects, read_predictions

    if iou < 0.5:
        raise ValueError("score-threshold curves are exact only for IoU thresholds >= 0.5")
    pred_dir = Path(pred_dir)
    data = read_predictions(pred_dir)
    objects = prediction_objects(data, path=pred_dir / "predictions.json")
    cat_names = {int(c["id"]): str(c["name"]) for c in data.get("categories") or []}
    dataset = load_instance_dataset(gt)
    class_index = {n: k for k, n in enumerate(dataset.class_names, start=1)}
    class_aware = len(dataset.class_names) > 1
    # one matching per image gives every threshold (the overlaps are computed once)
    thresholds = tuple(sorted(set(THRESHOLDS) | set(IOU_GRID) | {round(float(iou), 2)}))
    scores, matched, matchings, names, n_gt = [], [], [], [], 0
    on_planes = 0
    for name, sample in dataset.by_name().items():
        if name not in objects or not (pred_dir / f"{name}_labels.tif").is_file():
            raise InputError(f"GT image '{name}' has no prediction in this folder",
                             path=pred_dir)
        by_class = pred_dir / f"{name}_labels_by_class.tif"
        if class_aware and by_class.is_file():  # overlapping classes: one plane per class
            m, ids = _match_on_planes(sample, by_class, objects[name], cat_names, class_index,
                                      dataset.class_names, thresholds)
            on_planes += 1
        else:
            m, ids = None, None
        gt_labels, gt_classes = sample.load_label_image() if m is None else (None, None)
        pred_labels = read_label_image(pred_dir / f"{name}_labels.tif") if m is None else None
        if m is None and pred_labels.shape != gt_labels.shape:
            raise InputError(f"size {pred_labels.shape} differs from the GT image "
                             f"{gt_labels.shape}", path=pred_dir / f"{name}_labels.tif")
        entry = objects[name]
        pred_classes = None
        if m is None and class_aware:
            pred_classes = {}
            for lab, cat in entry["classes"].items():
                cname = cat_names.get(cat)
                if cname not in class_index:
                    raise InputError(f"predicted category '{cname}' is not a GT class "
                                     f"{dataset.class_names}", path=pred_dir)
                pred_classes[lab] = class_index[cname]
        if m is None:
            try:
                m = match(gt_labels, pred_labels, thresholds=thresholds,
                          gt_classes=gt_classes if class_aware else None, pred_classes=pred_classes)
            except ValueError as exc:
                raise InputError(str(exc), path=pred_dir / f"{name}_labels.tif") from None
            ids = np.unique(pred_labels)
            ids = ids[ids > 0]
        matchings.append(m)
        names.append(name)
        missing = [int(v) for v in ids if int(v) not in entry["scores"]]
        if missing:
            raise InputError(f"label(s) {missing[:10]} have no score in predictions.json",
                             path=pred_dir / f"{name}_labels.tif")
        s = np.array([entry["scores"][int(v)] for v in ids], float)
        hit = np.isin(ids, m[iou].pred_ids)
        scores.append(s)
        matched.append(hit)
        n_gt += m.n_gt
    return {"scores": np.concatenate(scores) if scores else np.zeros(0),
            "matched": np.concatenate(matched) if matched else np.zeros(0, bool),
            "n_gt": n_gt, "matchings": matchings, "names": names, "iou": float(iou),
            "class_names": list(dataset.class_names), "class_planes": on_planes}


def _match_on_planes(sample, path, entry, cat_names, class_index, class_names, thresholds):
    """Matching of one image on per-class label planes, and the predicted labels present."""
    from morphoscope.metrics.evaluate import prediction_class_planes
    from morphoscope.metrics.matching import match_class_planes

    unknown = sorted({n for n in cat_names.values() if n not in class_index})
    if unknown:
        raise InputError(f"predicted categories {unknown} are not GT classes {class_names}", path=path.parent)
    cat_map = {cat: class_index[n] for cat, n in cat_names.items()}
    gt_planes, _ = sample.load_class_planes(len(class_names))
    anns = [{"label": lab, "category_id": cat} for lab, cat in entry["classes"].items()]
    pred_planes = prediction_class_planes(path, anns, cat_map, len(class_names), gt_planes.shape[1:])
    ids = np.unique(pred_planes)
    return match_class_planes(gt_planes, pred_planes, thresholds=thresholds), ids[ids > 0]


def score_threshold_curve(pairs: dict, *, thresholds=None) -> dict:
    """P/R/F1 (and TP/FP/FN) for each score threshold, from :func:`pairs_for_scores`.

    ``thresholds`` default to 0, every distinct score, and just above the highest score (no
    object kept). ``best_index`` is the lowest threshold that reaches the highest F1.
    """
    s = np.asarray(pairs["scores"], float)
    hit = np.asarray(pairs["matched"], bool)
    if thresholds is None:
        top = float(s.max()) if len(s) else 1.0
        thresholds = np.unique(np.r_[0.0, s, np.nextafter(top, np.inf)])
    t = np.asarray(thresholds, float)
    order = np.argsort(s)
    s_sorted, hit_sorted = s[order], hit[order]
    first = np.searchsorted(s_sorted, t, side="left")  # objects kept: index >= first
    tp_suffix = np.r_[np.cumsum(hit_sorted[::-1])[::-1], 0]
    tp = tp_suffix[first]
    kept = len(s) - first
    fp = kept - tp
    fn = pairs["n_gt"] - tp
    out = {"thresholds": t, "tp": tp, "fp": fp, "fn": fn, **prf(tp, fp, fn),
           "iou": pairs["iou"]}
    out["best_index"] = int(np.argmax(out["f1"])) if len(t) else 0
    return out


def iou_threshold_curve(pairs: dict, *, thresholds=IOU_GRID) -> dict:
    """P/R/F1 for each IoU threshold (every object kept), by
    :func:`morphoscope.metrics.matching.matching_stats`; ``best_index`` as above."""
    from morphoscope.metrics.matching import matching_stats

    matchings = pairs["matchings"]
    keys = [round(float(t), 2) for t in thresholds]
    stats = matching_stats(matchings, thresholds=keys)
    rows = [stats[str(k)] for k in keys]
    out = {"thresholds": np.asarray(keys, float),
           **{k: np.asarray([r[k] for r in rows], float)
              for k in ("tp", "fp", "fn", "precision", "recall", "f1")},
           "stats": stats}
    out["best_index"] = int(np.argmax(out["f1"])) if len(keys) else 0
    return out


def gt_curves(pred_dir: str | Path, gt: str | Path, *, iou: float = 0.5) -> dict:
    """Both curves and the matching table of ``pred_dir`` against ``gt`` (for the report).

    Returns ``{"score": score curve, "iou": IoU curve, "matching": {threshold: stats at
    0.5..0.95}, "per_image": [rows], "per_image_mean", "dsb_score", "images_without_objects",
    "n_gt", "n_pred", "images"}``; the per-image entries are those of
    :func:`morphoscope.metrics.evaluate` (:mod:`morphoscope.metrics.per_image`).
    """
    from morphoscope.metrics.matching import THRESHOLDS, matching_stats
    from morphoscope.metrics.per_image import image_rows, per_image_summary

    pairs = pairs_for_scores(pred_dir, gt, iou=iou)
    names = pairs["class_names"]
    # the matchings cover IoU 0.1..0.95; the rows keep evaluate's thresholds 0.5..0.95
    rows = image_rows(pairs["matchings"], pairs["names"], thresholds=THRESHOLDS)
    summary = per_image_summary(rows)
    return {
        "score": score_threshold_curve(pairs),
        "iou": iou_threshold_curve(pairs),
        "matching": matching_stats(pairs["matchings"], thresholds=THRESHOLDS,
                                   class_names=names if len(names) > 1 else None),
        "per_image": rows,
        "per_image_mean": summary["per_image_mean"],
        "dsb_score": summary["dsb_score"],
        "images_without_objects": summary["images_without_objects"],
        "n_gt": int(pairs["n_gt"]), "n_pred": int(len(pairs["scores"])),
        "images": len(pairs["matchings"]), "class_planes": pairs.get("class_planes", 0),
    }
