"""Score a ``morphoscope predict`` output folder against annotated ground truth.

Two families of numbers are reported (see :mod:`.matching` and :mod:`.coco_eval` for their
definitions): object matching at IoU thresholds 0.5..0.95 (TP/FP/FN, precision, recall, F1, FNR,
TP/(TP+FP+FN)), computed on the label images ``NAME_labels.tif``, and COCO mask and box AP of the
scored objects in ``predictions.json``.

GT objects are taken from the dataset's instance-label view (where GT masks overlap, the later
object keeps the pixel), so both families see the same GT objects. With more than one GT class the
matching is class-aware and reported per class as well.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.formats.coco import masks_to_coco_annotations
from morphoscope.formats.dataset import load_instance_dataset
from morphoscope.io.images import read_label_image
from morphoscope.metrics.coco_eval import SUMMARY_KEYS, coco_evaluate
from morphoscope.metrics.matching import THRESHOLDS, match, matching_stats

PREDICTIONS_JSON = "predictions.json"


def _label_annotations(labels: np.ndarray, classes=None, *, image_id: int, start_id: int = 1,
                       scores=None) -> list[dict]:
    """COCO annotations (or, with ``scores``, results) of the objects of one label image.
    ``classes`` and ``scores`` are {label: value}; without ``classes`` every object is class 1."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    masks = (labels == v for v in ids)  # one full-size mask at a time, not N of them at once
    return masks_to_coco_annotations(
        masks, [1 if classes is None else classes[int(v)] for v in ids],
        image_id=image_id, start_id=start_id,
        scores=None if scores is None else [scores[int(v)] for v in ids])


def _gt_coco(images: list[dict], class_names: Sequence[str], annotations: list[dict]) -> dict:
    return {"images": images, "annotations": annotations,
            "categories": [{"id": k, "name": n} for k, n in enumerate(class_names, start=1)]}


def evaluate_arrays(
    gt_labels: Sequence[np.ndarray],
    pred_labels: Sequence[np.ndarray],
    *,
    pred_scores: Sequence[dict[int, float]] | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    max_detections: int = 1000,
) -> dict:
    """Matching (and, given ``pred_scores``, COCO AP) of in-memory label images, one class.

    ``pred_scores[i]`` maps each label of ``pred_labels[i]`` to its detection score. Returns
    ``{"matching": ..., "coco": ... or None, "images": N, "objects": {"gt", "pred"}}``.
    """
    if len(gt_labels) != len(pred_labels):
        raise ValueError(f"{len(gt_labels)} GT label images but {len(pred_labels)} predicted")
    matchings = [match(g, p, thresholds=thresholds) for g, p in zip(gt_labels, pred_labels)]
    coco = None
    if pred_scores is not None:
        images, gt_anns, results = [], [], []
        for i, (g, p, s) in enumerate(zip(gt_labels, pred_labels, pred_scores), start=1):
            h, w = np.shape(g)
            images.append({"id": i, "file_name": f"{i}", "width": w, "height": h})
            gt_anns += _label_annotations(np.asarray(g), image_id=i, start_id=len(gt_anns) + 1)
            results += _label_annotations(np.asarray(p), image_id=i, scores=s)
        coco = coco_evaluate(_gt_coco(images, ["object"], gt_anns), results,
                             max_detections=max_detections)
    return {"matching": matching_stats(matchings, thresholds=thresholds), "coco": coco,
            "images": len(matchings),
            "objects": {"gt": sum(m.n_gt for m in matchings),
                        "pred": sum(m.n_pred for m in matchings)}}


def _read_predictions(pred_dir: Path) -> dict:
    path = pred_dir / PREDICTIONS_JSON
    if not pred_dir.is_dir():
        raise InputError("prediction folder not found", path=pred_dir)
    if not path.is_file():
        raise InputError(
            f"no {PREDICTIONS_JSON} here; expected the output folder of 'morphoscope predict'",
            path=pred_dir)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations")):
        raise InputError("not a prediction file: needs 'images' and 'annotations'", path=path)
    return data


def _category_map(pred_categories: list[dict], class_names: list[str],
                  path: Path) -> dict[int, int]:
    """Predicted category id -> GT class (1..K), by category name. One class on each side is
    paired whatever the names (e.g. a 'cell' model scored on 'nucleus' annotations)."""
    if len(pred_categories) == 1 and len(class_names) == 1:
        return {pred_categories[0]["id"]: 1}
    index = {n: k for k, n in enumerate(class_names, start=1)}
    unknown = [c["name"] for c in pred_categories if c["name"] not in index]
    if unknown:
        raise InputError(
            f"predicted categories {unknown} are not GT classes {class_names}", path=path)
    return {c["id"]: index[c["name"]] for c in pred_categories}


def evaluate(
    pred_dir: str | Path,
    gt: str | Path,
    *,
    max_detections: int = 1000,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict:
    """Score the prediction folder ``pred_dir`` (docs/outputs.md) against the GT dataset ``gt``
    (any layout :func:`~morphoscope.formats.dataset.load_instance_dataset` reads).

    Prediction and GT images are paired by file stem. Every GT image needs a prediction;
    predicted images absent from the GT are ignored (counted in ``ignored_images``, with a
    warning). Returns ``{"matching": {threshold: stats}, "coco": {"segm", "bbox",
    "max_detections"}, "images", "objects": {"gt", "pred"}, "ignored_images", "gt", "pred"}``;
    object counts are those of the label images.
    """
    pred_dir, gt = Path(pred_dir), Path(gt)
    data = _read_predictions(pred_dir)
    json_path = pred_dir / PREDICTIONS_JSON
    dataset = load_instance_dataset(gt)
    class_names = list(dataset.class_names)
    cat_map = _category_map(data.get("categories") or [], class_names, json_path)

    pred_images: dict[str, dict] = {}
    for im in data["images"]:
        stem = Path(im["file_name"]).stem
        if stem in pred_images:
            raise InputError(f"two predicted images share the name '{stem}'", path=json_path)
        pred_images[stem] = im
    samples = dataset.by_name()
    missing = [n for n in samples
               if n not in pred_images or not (pred_dir / f"{n}_labels.tif").is_file()]
    if missing:
        raise InputError(
            f"{len(missing)} GT image(s) have no prediction (in {PREDICTIONS_JSON} and "
            f"NAME_labels.tif): {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""),
            path=pred_dir)
    ignored = sorted(set(pred_images) - set(samples))
    if ignored:
        warnings.warn(f"{len(ignored)} predicted image(s) are not in the GT and were ignored: "
                      f"{', '.join(ignored[:5])}" + (" ..." if len(ignored) > 5 else ""),
                      stacklevel=2)

    anns_by_image: dict = {}
    for ann in data["annotations"]:
        if ann.get("category_id") not in cat_map:
            raise InputError(f"annotation {ann.get('id')} has undeclared category_id "
                             f"{ann.get('category_id')}", path=json_path)
        anns_by_image.setdefault(ann["image_id"], []).append(ann)

    class_aware = len(class_names) > 1
    images, gt_anns, results, matchings = [], [], [], []
    for image_id, (name, sample) in enumerate(samples.items(), start=1):
        gt_labels, gt_classes = sample.load_label_image()
        h, w = gt_labels.shape
        label_path = pred_dir / f"{name}_labels.tif"
        pred_labels = read_label_image(label_path)
        if pred_labels.shape != (h, w):
            raise InputError(f"size {pred_labels.shape} differs from the GT image '{name}' "
                             f"{(h, w)}", path=label_path)
        pim = pred_images[name]
        if (pim.get("height"), pim.get("width")) != (h, w):
            raise InputError(f"image '{pim['file_name']}' is {pim.get('height')}x"
                             f"{pim.get('width')} here but {h}x{w} in the GT", path=json_path)
        anns = anns_by_image.get(pim["id"], [])
        pred_classes = None
        if class_aware:
            pred_classes = {a["label"]: cat_map[a["category_id"]] for a in anns if "label" in a}
        try:
            matchings.append(match(gt_labels, pred_labels, thresholds=thresholds,
                                   gt_classes=gt_classes if class_aware else None,
                                   pred_classes=pred_classes))
        except ValueError as exc:  # labels in the TIFF that predictions.json does not describe
            raise InputError(f"{exc} in {PREDICTIONS_JSON}", path=label_path) from None
        images.append({"id": image_id, "file_name": sample.image_path.name,
                       "width": w, "height": h})
        gt_anns += _label_annotations(gt_labels, gt_classes, image_id=image_id,
                                      start_id=len(gt_anns) + 1)
        for a in anns:
            seg = a.get("segmentation")
            if not isinstance(seg, dict) or "score" not in a:
                raise InputError(f"annotation {a.get('id')} needs an RLE 'segmentation' and a "
                                 "'score'", path=json_path)
            if list(seg.get("size", [])) != [h, w]:
                raise InputError(f"annotation {a.get('id')}: mask size {seg.get('size')} is "
                                 f"not the image's {[h, w]}", path=json_path)
            res = {"image_id": image_id, "category_id": cat_map[a["category_id"]],
                   "segmentation": seg, "score": a["score"]}
            if "bbox" in a:
                res["bbox"] = a["bbox"]
            results.append(res)

    coco = coco_evaluate(_gt_coco(images, class_names, gt_anns), results,
                         max_detections=max_detections)
    return {
        "matching": matching_stats(matchings, thresholds=thresholds,
                                   class_names=class_names),
        "coco": coco,
        "images": len(images),
        "objects": {"gt": sum(m.n_gt for m in matchings), "pred": sum(m.n_pred for m in matchings)},
        "ignored_images": len(ignored),
        "gt": str(gt),
        "pred": str(pred_dir),
    }


def _fmt(v: float | None) -> str:
    return "    -" if v is None else f"{v:.3f}"


def format_table(result: dict) -> str:
    """The result of :func:`evaluate` as a plain-text table."""
    lines = [f"GT {result['gt']}  |  predictions {result['pred']}",
             f"{result['images']} images, {result['objects']['gt']} GT objects, "
             f"{result['objects']['pred']} predicted objects"]
    if result.get("ignored_images"):
        lines.append(f"({result['ignored_images']} predicted images not in the GT were ignored)")
    lines += ["", "Object matching (TP = one-to-one pairs with IoU >= threshold; "
                  "AP = TP/(TP+FP+FN))",
              f"{'IoU':>5} {'TP':>7} {'FP':>7} {'FN':>7} {'prec':>6} {'recall':>6} {'F1':>6} "
              f"{'FNR':>6} {'AP':>6}"]
    for key, s in result["matching"].items():
        lines.append(f"{key:>5} {s['tp']:>7} {s['fp']:>7} {s['fn']:>7} {s['precision']:>6.3f} "
                     f"{s['recall']:>6.3f} {s['f1']:>6.3f} {s['fnr']:>6.3f} {s['ap']:>6.3f}")
    coco = result["coco"]
    iou_types = [t for t in ("segm", "bbox") if t in coco]
    lines += ["", f"COCO AP (pycocotools, up to {coco['max_detections']} detections per image)",
              f"{'':>6}" + "".join(f"{k:>7}" for k in SUMMARY_KEYS)]
    for t in iou_types:
        lines.append(f"{'mask' if t == 'segm' else 'box':>6}"
                     + "".join(f"{_fmt(coco[t][k]):>7}" for k in SUMMARY_KEYS))
    per_class = coco[iou_types[0]]["per_class"] if iou_types else {}
    if len(per_class) > 1:
        lines += ["", "COCO AP per class " + " / ".join("mask" if t == "segm" else "box"
                                                       for t in iou_types)]
        for name in per_class:
            lines.append(f"  {name}: " + " / ".join(_fmt(coco[t]["per_class"][name])
                                                   for t in iou_types))
    return "\n".join(lines)
