"""Box-level scores: when the objects are boxes (a detection model's predictions, whose
``predictions.json`` says ``"objects": "boxes"``) or the ground truth has boxes and no masks
(VOC, box-only COCO), :func:`~.evaluate.evaluate` scores boxes instead of masks:

``matching``  one-to-one matching at box IoU 0.5..0.95 (the rules of :mod:`.matching`, with the
              IoU of the boxes instead of the masks; class-aware with several classes): TP, FP,
              FN, precision, recall, F1, pooled, per class and per image.
``coco``      COCO box AP by pycocotools (``iouType="bbox"``) with up to ``max_detections``
              detections per image (default 1000: dense images).
``counts``    objects per class per image, GT and predicted, and per class the mean absolute
              error of the predicted count per image (``mae``) and its mean signed error
              (``bias``, predicted - GT).

Boxes are corner coordinates ``x0, y0, x1, y1`` (``x1`` exclusive for whole pixels); a box's area
is ``(x1 - x0) * (y1 - y0)``, as in pycocotools and torchvision. Predicted boxes are the
``bbox`` of each annotation of ``predictions.json`` (COCO ``[x, y, w, h]``); GT boxes are the
annotated boxes, or each GT mask's extent (:func:`~morphoscope.formats.voc.boxes_of`). Every
written prediction is scored: matching and counts use the objects at the score threshold the
prediction was written at, and so does AP (predict with a low ``--score-threshold`` for AP over
the whole precision-recall curve).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError, SkippedInputs
from morphoscope.metrics.matching import (
    THRESHOLDS,
    Matching,
    ThresholdMatch,
    _assign,
    _counts,
    threshold_key,
)

__all__ = [
    "box_iou",
    "boxes_are_objects",
    "count_errors",
    "evaluate_boxes",
    "format_counts",
    "match_boxes",
]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (rows) with every box of ``b`` (columns), corner coordinates."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(gt_boxes, pred_boxes, *, thresholds: Sequence[float] = THRESHOLDS,
                gt_classes=None, pred_classes=None) -> Matching:
    """:func:`~.matching.match` for boxes: one-to-one pairs with box IoU >= each threshold (most
    pairs, then the largest IoU sum); with classes a pair of different classes never matches.
    Objects are numbered 1..N in the order given."""
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    if (gt_classes is None) != (pred_classes is None):
        raise ValueError("give both gt_classes and pred_classes, or neither")
    iou = box_iou(gt_boxes, pred_boxes)
    gt_cls = pred_cls = None
    if gt_classes is not None:
        gt_cls = np.asarray(gt_classes, np.int64).reshape(-1)
        pred_cls = np.asarray(pred_classes, np.int64).reshape(-1)
        iou = np.where(gt_cls[:, None] == pred_cls[None, :], iou, 0.0)
    rows, cols = np.nonzero(iou > 0)
    ious = iou[rows, cols]
    gt_ids = np.arange(1, len(gt_boxes) + 1)
    pred_ids = np.arange(1, len(pred_boxes) + 1)
    by_threshold = {}
    for t in thresholds:
        r, c, v = _assign(rows, cols, ious, t)
        tp = len(r)
        by_threshold[threshold_key(t)] = ThresholdMatch(
            threshold=float(t), gt_ids=gt_ids[r], pred_ids=pred_ids[c], ious=v,
            classes=None if gt_cls is None else gt_cls[r], tp=tp, fp=len(pred_boxes) - tp,
            fn=len(gt_boxes) - tp)
    return Matching(n_gt=len(gt_boxes), n_pred=len(pred_boxes), by_threshold=by_threshold,
                    gt_class_counts=None if gt_cls is None else _counts(gt_cls),
                    pred_class_counts=None if pred_cls is None else _counts(pred_cls))


def count_errors(gt_counts: Sequence[dict], pred_counts: Sequence[dict],
                 class_names: Sequence[str]) -> dict:
    """Per class, over images: ``gt_mean``, ``pred_mean`` (objects per image), ``mae`` (mean of
    |predicted - GT| per image) and ``bias`` (mean of predicted - GT). ``gt_counts[i]`` maps a
    class name to image ``i``'s count."""
    out = {}
    for name in class_names:
        g = np.array([c.get(name, 0) for c in gt_counts], np.float64)
        p = np.array([c.get(name, 0) for c in pred_counts], np.float64)
        n = len(g)
        out[name] = {"gt_mean": float(g.mean()) if n else None, "pred_mean": float(p.mean()) if n else None,
                     "mae": float(np.abs(p - g).mean()) if n else None,
                     "bias": float((p - g).mean()) if n else None, "images": n}
    return out


def boxes_are_objects(predictions: dict, dataset) -> bool:
    """Whether a prediction folder is scored by boxes: its ``predictions.json`` says the boxes
    are the objects (a detection model), or the GT dataset has boxes and no masks."""
    settings = (predictions.get("info") or {}).get("settings") or {}
    return settings.get("objects") == "boxes" or bool(getattr(dataset, "boxes_only", False))


def _xyxy(bbox) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def _pred_boxes(anns: list[dict], json_path: Path) -> np.ndarray:
    from pycocotools import mask as mask_utils

    out = []
    for a in anns:
        if "score" not in a:
            raise InputError(f"annotation {a.get('id')} has no 'score'", path=json_path)
        if "bbox" in a:
            box = a["bbox"]
        elif isinstance(a.get("segmentation"), dict):
            seg = a["segmentation"]
            counts = seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"]
            box = mask_utils.toBbox({"size": seg["size"], "counts": counts}).tolist()
        else:
            raise InputError(f"annotation {a.get('id')} needs a 'bbox' or an RLE 'segmentation'",
                             path=json_path)
        if len(box) != 4 or not np.all(np.isfinite(np.asarray(box, float))):
            raise InputError(f"annotation {a.get('id')} has a bbox that is not 4 finite numbers",
                             path=json_path)
        out.append(_xyxy(box))
    return np.asarray(out, np.float64).reshape(-1, 4)


def evaluate_boxes(pred_dir: str | Path, gt: str | Path, predictions: dict, dataset, cat_map: dict,
                   *, max_detections: int = 1000, thresholds: Sequence[float] = THRESHOLDS,
                   strict: bool = True) -> dict:
    """Box scores of the prediction folder ``pred_dir`` (its parsed ``predictions``) against the
    GT ``dataset``: the keys of :func:`~.evaluate.evaluate` (``matching`` at box IoU, per-image
    rows, ``coco`` with ``bbox`` only, ``images``, ``objects``, ``ignored_images``, ``gt``,
    ``pred``) plus ``"iou": "box"``, ``"counts"`` (:func:`count_errors`, and ``per_image``
    ``{"image", "gt": {class: n}, "pred": {class: n}}``) and ``"score_threshold"`` (the threshold
    the predictions were written at). Only ``predictions.json`` is read (no label images: boxes
    overlap, a label image cannot hold them all). ``strict=False`` skips unscorable images as
    :func:`~.evaluate.evaluate` does."""
    from morphoscope.formats.voc import boxes_of
    from morphoscope.metrics.coco_eval import coco_evaluate
    from morphoscope.metrics.evaluate import (
        PREDICTIONS_JSON,
        _gt_coco,
        _per_image_results,
    )
    from morphoscope.metrics.matching import matching_stats

    pred_dir = Path(pred_dir)
    json_path = pred_dir / PREDICTIONS_JSON
    class_names = list(dataset.class_names)
    pred_images: dict[str, dict] = {}
    for im in predictions["images"]:
        stem = Path(im["file_name"]).stem
        if stem in pred_images:
            raise InputError(f"two predicted images share the name '{stem}'", path=json_path)
        pred_images[stem] = im
    samples = dataset.by_name()
    missing = [n for n in samples if n not in pred_images]
    if missing and (strict or len(missing) == len(samples)):
        raise InputError(f"{len(missing)} GT image(s) have no prediction in {PREDICTIONS_JSON}: "
                         f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""), path=pred_dir)
    skipped = [{"image": n, "file": PREDICTIONS_JSON, "error": f"no prediction in {PREDICTIONS_JSON}"}
               for n in missing]
    ignored = sorted(set(pred_images) - set(samples))
    if ignored:
        warnings.warn(f"{len(ignored)} predicted image(s) are not in the GT and were ignored: "
                      f"{', '.join(ignored[:5])}" + (" ..." if len(ignored) > 5 else ""), stacklevel=3)
    anns_by_image: dict = {}
    for ann in predictions["annotations"]:
        if ann.get("category_id") not in cat_map:
            raise InputError(f"annotation {ann.get('id')} has undeclared category_id "
                             f"{ann.get('category_id')}", path=json_path)
        anns_by_image.setdefault(ann["image_id"], []).append(ann)

    class_aware = len(class_names) > 1
    images, gt_anns, results, matchings, names, gt_counts, pred_counts = [], [], [], [], [], [], []
    for name, sample in samples.items():
        if name in missing:
            continue
        pim = pred_images[name]
        try:
            h, w = int(pim.get("height") or 0), int(pim.get("width") or 0)
            if sample.declared_size is not None and tuple(sample.declared_size) != (h, w):
                raise InputError(f"image '{pim['file_name']}' is {h}x{w} here but "
                                 f"{sample.declared_size[0]}x{sample.declared_size[1]} in the GT",
                                 path=json_path)
            gt_boxes, gt_cls = boxes_of(sample, (h, w))
            anns = anns_by_image.get(pim["id"], [])
            pred_boxes = _pred_boxes(anns, json_path)
        except InputError as exc:
            if strict:
                raise
            skipped.append({"image": name, "file": Path(str(exc.path or name)).name, "error": exc.message})
            continue
        pred_cls = np.array([cat_map[a["category_id"]] for a in anns], np.int64)
        scores = np.array([float(a["score"]) for a in anns])
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": sample.image_path.name, "width": w, "height": h})
        for b, c in zip(gt_boxes, gt_cls):
            bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": int(c),
                            "bbox": [float(b[0]), float(b[1]), bw, bh], "area": bw * bh, "iscrowd": 0})
        for b, c, s in zip(pred_boxes, pred_cls, scores):
            results.append({"image_id": image_id, "category_id": int(c), "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
        matchings.append(match_boxes(gt_boxes, pred_boxes, thresholds=thresholds,
                                     gt_classes=gt_cls if class_aware else None,
                                     pred_classes=pred_cls if class_aware else None))
        names.append(name)
        gt_counts.append({n: int((gt_cls == k).sum()) for k, n in enumerate(class_names, start=1)})
        pred_counts.append({n: int((pred_cls == k).sum()) for k, n in enumerate(class_names, start=1)})
    failed = [(s["file"], s["error"]) for s in skipped]
    if skipped and not images:
        raise SkippedInputs(failed, done=0, action="scored", outcome="nothing was scored")
    coco = coco_evaluate(_gt_coco(images, class_names, gt_anns), results, iou_types=("bbox",),
                         max_detections=max_detections)
    settings = (predictions.get("info") or {}).get("settings") or {}
    result = {
        "matching": matching_stats(matchings, thresholds=thresholds, class_names=class_names),
        **_per_image_results(matchings, names),
        "coco": coco,
        "images": len(images),
        "objects": {"gt": sum(m.n_gt for m in matchings), "pred": sum(m.n_pred for m in matchings)},
        "ignored_images": len(ignored),
        "gt": str(gt),
        "pred": str(pred_dir),
        "iou": "box",
        "score_threshold": settings.get("score_threshold", settings.get("threshold")),
        "counts": {"per_class": count_errors(gt_counts, pred_counts, class_names),
                   "per_image": [{"image": n, "gt": g, "pred": p}
                                 for n, g, p in zip(names, gt_counts, pred_counts)]},
    }
    if skipped:
        result["skipped"] = skipped
        raise SkippedInputs(failed, done=len(images), action="scored",
                            outcome=f"the other {len(images)} were scored", result=result)
    return result


def format_counts(result: dict) -> list[str]:
    """Lines for :func:`~.evaluate.format_table`: what box scoring means, and per class the
    counts per image, F1 at box IoU 0.5 and box AP."""
    counts = result.get("counts") or {}
    per_class = counts.get("per_class") or {}
    thr = result.get("score_threshold")
    written = f"; predictions written at score >= {thr:g}" if isinstance(thr, (int, float)) else ""
    lines = ["", f"Boxes: IoU above is box IoU; COCO AP is box AP (iouType bbox){written}"]
    if per_class:
        f1 = (result.get("matching", {}).get("0.5") or {}).get("per_class") or {}
        ap = ((result.get("coco") or {}).get("bbox") or {}).get("per_class") or {}
        lines += [(f"Per class over {result['images']} images: objects per image (GT, predicted), mean absolute "
                   "error of the count per image (MAE), mean error (predicted - GT), F1 at box IoU 0.5, box AP"),
                  f"  {'class':<16}{'GT':>8}{'pred':>8}{'MAE':>8}{'bias':>8}{'F1@0.5':>8}{'box AP':>8}"]
        for name, c in per_class.items():
            if not c["images"]:
                continue
            f = f1.get(name, {}).get("f1") if len(per_class) > 1 else result["matching"]["0.5"]["f1"]
            a = ap.get(name)
            lines.append(f"  {name:<16}{c['gt_mean']:>8.2f}{c['pred_mean']:>8.2f}{c['mae']:>8.2f}"
                         f"{c['bias']:>+8.2f}{_fmt(f):>8}{_fmt(a):>8}")
    return lines


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"
