"""Comparing segmentation models (``instance`` and ``semantic``) on one annotated dataset.

Each model predicts every GT image into its own prediction folder (the files of docs/outputs.md),
which :func:`morphoscope.metrics.evaluate.evaluate` then scores: the table's numbers are that
function's. For the bootstrap, the same label images are matched image by image
(:func:`morphoscope.metrics.matching.match`), and the pixel classes of GT and prediction give one
confusion matrix per image (IoU and Dice per class, :mod:`morphoscope.metrics.semantic`'s
definitions). Models whose objects carry detection scores also get curves versus the score
threshold: the network runs once per image and its raw detections are re-thresholded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.compare.bootstrap import Statistic, ratio
from morphoscope.errors import InputError
from morphoscope.metrics.matching import THRESHOLDS, match, match_class_planes, threshold_key

SCORE_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
KEYS = [threshold_key(t) for t in THRESHOLDS]
CURVE_QUANTITIES = ("f1", "precision", "recall", "fnr")


@dataclass
class SegmentationResult:
    name: str
    path: str
    task: str
    evaluation: dict  # evaluate()'s output
    per_image: np.ndarray  # (N, 3 * len(THRESHOLDS) + (K+1)^2)
    score_counts: np.ndarray | None  # (N, len(SCORE_GRID), 3) TP, FP, FN at IoU 0.5, instance models
    pred_dir: Path
    table: dict = field(default_factory=dict)


def _stats(tp, fp, fn) -> dict[str, np.ndarray]:
    nothing = (tp + fp + fn) == 0
    return {"precision": ratio(tp, tp + fp, nothing=nothing), "recall": ratio(tp, tp + fn, nothing=nothing),
            "f1": ratio(2 * tp, 2 * tp + fp + fn, nothing=nothing),
            "fnr": ratio(fn, tp + fn, nothing=nothing, perfect=0.0),
            "ap": ratio(tp, tp + fp + fn, nothing=nothing)}


def _confusion_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per foreground class IoU and Dice of confusion matrices ``(..., K+1, K+1)``; NaN where the
    class is in neither truth nor prediction."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)[..., 1:]
    fp = cm.sum(-2)[..., 1:] - tp
    fn = cm.sum(-1)[..., 1:] - tp
    den = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(den > 0, tp / np.where(den > 0, den, 1), np.nan)
        dice = np.where(den > 0, 2 * tp / np.where(den > 0, den + tp, 1), np.nan)
    return iou, dice


def statistics(num_classes: int) -> dict[str, Statistic]:
    """The bootstrapped quantities, from summed per-image rows (layout of :class:`SegmentationResult`)."""
    nt = len(THRESHOLDS)
    k1 = num_classes + 1

    def at(key: str, q: str):
        i = KEYS.index(key)
        return lambda s: _stats(s[:, 3 * i], s[:, 3 * i + 1], s[:, 3 * i + 2])[q]

    def mean_ap(s):
        return np.mean([_stats(s[:, 3 * i], s[:, 3 * i + 1], s[:, 3 * i + 2])["ap"] for i in range(nt)], axis=0)

    def pixel(which: int):
        def fn(s):
            cm = s[:, 3 * nt:].reshape(-1, k1, k1)
            vals = _confusion_scores(cm)[which]
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(vals)
                return np.where(ok.any(1), np.nansum(vals, 1) / np.maximum(ok.sum(1), 1), np.nan)
        return fn

    out = {}
    for key in ("0.5", "0.75"):
        if key not in KEYS:
            continue
        for q in ("f1", "precision", "recall", "fnr", "ap"):
            if key == "0.75" and q not in ("f1", "ap"):
                continue
            out[f"{q}@{key}"] = Statistic(at(key, q), higher_is_better=q != "fnr")
    out["ap@0.5:0.95"] = Statistic(mean_ap)
    out["pixel_iou"] = Statistic(pixel(0))
    out["pixel_dice"] = Statistic(pixel(1))
    return out


def table_from_evaluation(ev: dict, per_image: np.ndarray, num_classes: int) -> dict:
    """The side-by-side table's rows for one model: :func:`evaluate`'s numbers (matching and COCO)
    plus pixel IoU/Dice."""
    m = ev["matching"]
    row: dict = {}
    for key in ("0.5", "0.75"):
        s = m[key]
        for q in ("f1", "precision", "recall", "fnr", "ap"):
            if key == "0.75" and q not in ("f1", "ap"):
                continue
            row[f"{q}@{key}"] = s[q]
    row["ap@0.5:0.95"] = float(np.mean([m[k]["ap"] for k in m]))
    for q in ("tp", "fp", "fn"):
        row[f"{q}@0.5"] = m["0.5"][q]
    nt = len(THRESHOLDS)
    k1 = num_classes + 1
    cm = per_image[:, 3 * nt:].sum(0).reshape(k1, k1)
    iou, dice = _confusion_scores(cm)
    row["pixel_iou"] = float(np.nanmean(iou)) if np.isfinite(iou).any() else None
    row["pixel_dice"] = float(np.nanmean(dice)) if np.isfinite(dice).any() else None
    for t, label in (("segm", "mask"), ("bbox", "box")):
        c = ev["coco"].get(t)
        if c:
            for q in ("AP", "AP50", "AP75", "AR"):
                row[f"coco_{label}_{q}"] = c.get(q)
    row["objects_gt"] = ev["objects"]["gt"]
    row["objects_pred"] = ev["objects"]["pred"]
    return row


def _class_map(labels: np.ndarray, classes: dict[int, int]) -> np.ndarray:
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.int64)
    for k, c in classes.items():
        if k < len(lut):
            lut[k] = c
    return lut[labels]


def _read_pred_classes(pred_dir: Path, class_names: list[str]) -> dict[str, dict[int, int]]:
    """{image stem: {label: GT class}} from a prediction folder's predictions.json."""
    data = json.loads((pred_dir / "predictions.json").read_text())
    cats = {c["id"]: c["name"] for c in data.get("categories", [])}
    index = {n: k for k, n in enumerate(class_names, start=1)}
    by_id = {im["id"]: Path(im["file_name"]).stem for im in data["images"]}
    out: dict[str, dict[int, int]] = {s: {} for s in by_id.values()}
    for a in data["annotations"]:
        if "label" not in a:
            continue
        name = cats.get(a["category_id"])
        cls = 1 if len(class_names) == 1 else index.get(name, 0)
        out[by_id[a["image_id"]]][int(a["label"])] = cls
    return out


def per_image_counts(pred_dir: Path, dataset) -> np.ndarray:
    """``(N, 3 * len(THRESHOLDS) + (K+1)^2)``: TP, FP, FN at each IoU threshold and the pixel
    confusion matrix, per GT image (dataset order), from the prediction folder's label images —
    the same images and class-aware rule that :func:`evaluate` uses."""
    from morphoscope.io.images import read_label_image
    from morphoscope.metrics.semantic import confusion_matrix

    class_names = list(dataset.class_names)
    k1 = len(class_names) + 1
    class_aware = len(class_names) > 1
    pred_classes = _read_pred_classes(pred_dir, class_names)
    plane_class = _plane_classes(pred_dir, class_names) if class_aware else []
    rows = []
    for s in dataset.samples:
        gt, gt_cls = s.load_label_image()
        pred = read_label_image(pred_dir / f"{s.name}_labels.tif")
        pc = pred_classes.get(s.name, {})
        if not class_aware:
            pc = {int(v): 1 for v in np.unique(pred) if v > 0}
        by_class = pred_dir / f"{s.name}_labels_by_class.tif"
        if class_aware and by_class.is_file():  # overlapping classes: as evaluate, each on its own plane
            gt_planes, _ = s.load_class_planes(len(class_names))
            m = match_class_planes(gt_planes, _gt_ordered_planes(by_class, plane_class, gt_planes.shape),
                                   thresholds=THRESHOLDS)
        else:
            m = match(gt, pred, thresholds=THRESHOLDS, gt_classes=gt_cls if class_aware else None,
                      pred_classes=pc if class_aware else None)
        counts = [v for key in KEYS for v in (m[key].tp, m[key].fp, m[key].fn)]
        cm = confusion_matrix(_class_map(gt, gt_cls), _class_map(pred, pc), k1)
        rows.append(np.concatenate([np.asarray(counts, np.float64), cm.ravel().astype(np.float64)]))
    return np.stack(rows)


def _plane_classes(pred_dir: Path, class_names: list[str]) -> list[int]:
    """The GT class (1..K, 0: none) of each plane of a folder's ``NAME_labels_by_class.tif``
    (plane ``j - 1`` = category ``j`` of its predictions.json)."""
    data = json.loads((pred_dir / "predictions.json").read_text())
    index = {n: k for k, n in enumerate(class_names, start=1)}
    names = {int(c["id"]): c["name"] for c in data.get("categories", [])}
    return [index.get(names.get(j, ""), 0) for j in range(1, max(names, default=0) + 1)]


def _gt_ordered_planes(path: Path, plane_class: list[int], shape) -> np.ndarray:
    """The predicted class planes of ``path`` rearranged into GT class order."""
    from morphoscope.io.images import read_class_planes

    raw = read_class_planes(path, shape=shape[1:])
    out = np.zeros(tuple(shape), raw.dtype)
    for j, c in enumerate(plane_class[: raw.shape[0]]):
        if c:
            out[c - 1] = np.maximum(out[c - 1], raw[j])
    return out


def _labels_by_score(objects, grid) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(labels, kept object indices)`` of ``objects.above(s)`` for every ``s`` of ``grid``.

    Objects come highest score first, so the label image at a lower threshold is the one at a
    higher threshold plus more objects painted on free pixels: painting once at the lowest
    threshold and cutting by score gives exactly the label image at each threshold."""
    low = objects.above(min(grid))
    labels, index = low.to_labels()
    out = []
    for s in grid:
        n = int((low.scores[index] >= s).sum())  # kept labels are a prefix 1..n
        out.append((np.where(labels <= n, labels, 0).astype(labels.dtype), index[:n]))
    return out


def evaluate_model(bundle, dataset, gt: Path, pred_dir: Path, *, score_threshold: float,
                   progress: bool = False) -> SegmentationResult:
    """Predict every GT image into ``pred_dir`` through the prediction engine (the files of
    ``morphoscope predict``), score the folder with ``evaluate``, and, for models whose objects
    carry detection scores, count TP/FP/FN at IoU 0.5 for every score threshold of
    :data:`SCORE_GRID` from the same raw detections."""
    from morphoscope.metrics.evaluate import evaluate
    from morphoscope.prediction.predict import predict_groups

    if bundle.task.result_kind != "objects":
        raise InputError(f"model '{bundle.name}' is a {bundle.task.name} model, not a segmentation model")
    class_aware = len(dataset.class_names) > 1
    samples = {s.name: (i, s) for i, s in enumerate(dataset.samples)}
    counts = np.zeros((len(dataset.samples), len(SCORE_GRID), 3))
    scored = []

    def score_grid(item, results, planes):
        res = results[0]
        if res.threshold_kind != "score":
            return
        scored.append(True)
        i, s = samples[item.name]
        gt, gt_cls = s.load_label_image(res.shape)
        for j, (lab, index) in enumerate(_labels_by_score(res.objects, SCORE_GRID)):
            kw = {}
            if class_aware:
                low = res.objects.above(min(SCORE_GRID))
                kw = {"gt_classes": gt_cls, "pred_classes": {k + 1: int(low.classes[d]) for k, d in enumerate(index)}}
            tm = match(gt, lab, thresholds=(0.5,), **kw)["0.5"]
            counts[i, j] = (tm.tp, tm.fp, tm.fn)

    options = {"score_threshold": score_threshold} if "score_threshold" in bundle.task.predict_options() else {}
    predict_groups(bundle, [(s.name, [s.image_path]) for s in dataset.samples], pred_dir, overwrite=True,
                   progress=progress, on_result=score_grid, **options)
    ev = evaluate(pred_dir, gt)
    per_image = per_image_counts(pred_dir, dataset)
    res = SegmentationResult(bundle.name, str(bundle.path), bundle.task.name, ev, per_image,
                             counts if scored else None, pred_dir)
    res.table = table_from_evaluation(ev, per_image, len(dataset.class_names))
    return res


def iou_curves(per_image: np.ndarray, w: np.ndarray, ci: float) -> dict:
    """F1/precision/recall/FNR at every IoU threshold, with bootstrap bands (rows of ``w``)."""
    nt = len(THRESHOLDS)
    return _curves(per_image[:, : 3 * nt].reshape(len(per_image), nt, 3), w, ci, list(THRESHOLDS))


def score_curves(score_counts: np.ndarray, w: np.ndarray, ci: float) -> dict:
    return _curves(score_counts, w, ci, list(SCORE_GRID))


def _curves(counts: np.ndarray, w: np.ndarray, ci: float, x: list) -> dict:
    total = counts.sum(0)  # (G, 3)
    boot = np.einsum("bn,ngc->bgc", w, counts)
    out = {"x": x}
    full = _stats(total[:, 0], total[:, 1], total[:, 2])
    bs = _stats(boot[..., 0], boot[..., 1], boot[..., 2])
    for q in CURVE_QUANTITIES:
        lo, hi = np.percentile(bs[q], [50 * (1 - ci), 50 * (1 + ci)], axis=0)
        out[q] = {"value": full[q].tolist(), "low": lo.tolist(), "high": hi.tolist()}
    return out


def per_class_pixel(per_image: np.ndarray, class_names: list[str]) -> dict:
    nt = len(THRESHOLDS)
    k1 = len(class_names) + 1
    cm = per_image[:, 3 * nt:].sum(0).reshape(k1, k1)
    iou, dice = _confusion_scores(cm)
    f = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    return {n: {"iou": f(iou[k]), "dice": f(dice[k])} for k, n in enumerate(class_names)}
