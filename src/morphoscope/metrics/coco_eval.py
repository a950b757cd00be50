"""COCO average precision, computed by pycocotools (COCO/COCOeval), with as many detections per
image as microscopy needs.

``AP``    mean precision over recall levels 0:0.01:1, IoU thresholds 0.5:0.05:0.95 and classes
``AP50``, ``AP75``  the same at one IoU threshold
``APs``, ``APm``, ``APl``  the same for objects of area < 32², 32²..96², > 96² pixels
``AR``    recall averaged over IoU thresholds and classes

All use at most ``max_detections`` highest-scoring detections per image.

Why not ``COCOeval.summarize()``: it reads AP (its ``stats[0]``) at a hard-coded 100 detections
per image, which does not exist when ``maxDets`` is ``[1, 10, 1000]`` (it then reports -1), and
100 is too few for images with hundreds of nuclei. The numbers here are read from the same
``eval['precision']`` / ``eval['recall']`` arrays in the same way, at ``maxDets[-1]``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR")


def _mean(values: np.ndarray) -> float | None:
    # pycocotools marks "no GT objects here" with -1; such cells are left out, as summarize does.
    values = values[values > -1]
    return float(values.mean()) if values.size else None


def _coco_gt(gt: dict) -> COCO:
    data = copy.deepcopy(gt)  # COCOeval writes into the annotations ('ignore', RLE conversion)
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
    data.setdefault("categories", [])
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    return coco


def _coco_results(coco_gt: COCO, results: list[dict], iou_type: str) -> COCO:
    anns = copy.deepcopy(results)  # loadRes writes ids and areas into them
    for ann in anns:
        if iou_type == "segm":
            if "segmentation" not in ann:
                raise ValueError("mask AP needs a 'segmentation' in every result")
            # Without a bbox, loadRes takes the mask area (not the box area) for the small/medium/
            # large split, as detectron2 does for mask AP.
            ann.pop("bbox", None)
        elif "bbox" not in ann:
            ann["bbox"] = mask_utils.toBbox(_rle(ann["segmentation"])).tolist()
    if not anns:
        # loadRes cannot take an empty list; an empty result set scores 0 wherever there is GT.
        empty = COCO()
        empty.dataset = {"images": list(coco_gt.dataset["images"]),
                         "categories": copy.deepcopy(coco_gt.dataset["categories"]),
                         "annotations": []}
        empty.createIndex()
        return empty
    return coco_gt.loadRes(anns)


def _rle(seg: dict) -> dict:
    if isinstance(seg.get("counts"), str):
        return {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    return seg


def _summary(ev: COCOeval, coco_gt: COCO) -> dict:
    p = ev.params
    precision = ev.eval["precision"][..., -1]  # [T, R, K, A] at maxDets[-1]
    recall = ev.eval["recall"][..., -1]  # [T, K, A]
    area = {label: i for i, label in enumerate(p.areaRngLbl)}
    t50, t75 = np.isclose(p.iouThrs, 0.5), np.isclose(p.iouThrs, 0.75)
    out = {
        "AP": _mean(precision[..., area["all"]]),
        "AP50": _mean(precision[t50][..., area["all"]]),
        "AP75": _mean(precision[t75][..., area["all"]]),
        "APs": _mean(precision[..., area["small"]]),
        "APm": _mean(precision[..., area["medium"]]),
        "APl": _mean(precision[..., area["large"]]),
        "AR": _mean(recall[..., area["all"]]),
    }
    out["per_class"] = {coco_gt.cats[c]["name"]: _mean(precision[:, :, k, area["all"]])
                        for k, c in enumerate(p.catIds)}
    out["per_class_ap50"] = {coco_gt.cats[c]["name"]: _mean(precision[t50][:, :, k, area["all"]])
                             for k, c in enumerate(p.catIds)}
    return out


def coco_evaluate(
    gt: dict,
    results: list[dict],
    *,
    iou_types: Sequence[str] = ("segm", "bbox"),
    max_detections: int = 1000,
    verbose: bool = False,
) -> dict:
    """COCO AP of detection ``results`` against the COCO dataset ``gt``.

    ``results`` is a COCO results list (``image_id``, ``category_id``, ``segmentation`` as RLE,
    ``score``, optionally ``bbox``); it may be empty. Returns ``{iou_type: {"AP", "AP50", "AP75",
    "APs", "APm", "APl", "AR", "per_class": {category name: AP}, "per_class_ap50": {category
    name: AP50}}, "max_detections": N}`` with
    floats, or None where there are no GT objects to score (pycocotools' -1). pycocotools' log is
    printed only with ``verbose``.
    """
    if max_detections < 1:
        raise ValueError(f"max_detections must be at least 1, got {max_detections}")
    image_ids = {im["id"] for im in gt["images"]}
    unknown = {r["image_id"] for r in results} - image_ids
    if unknown:
        raise ValueError(f"results refer to image ids not in the GT: {sorted(unknown)[:10]}")
    out: dict = {}
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        coco_gt = _coco_gt(gt)
        for iou_type in iou_types:
            ev = COCOeval(coco_gt, _coco_results(coco_gt, results, iou_type), iou_type)
            ev.params.maxDets = [1, 10, int(max_detections)]
            ev.evaluate()
            ev.accumulate()
            out[iou_type] = _summary(ev, coco_gt)
    if verbose:
        sys.stdout.write(log.getvalue())
    out["max_detections"] = int(max_detections)
    return out
