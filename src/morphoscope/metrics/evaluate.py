"""Score a ``morphoscope predict`` output folder against annotated ground truth.

Two families of numbers are reported (see :mod:`.matching`, :mod:`.per_image` and
:mod:`.coco_eval` for their definitions): object matching at IoU thresholds 0.5..0.95 (TP/FP/FN,
precision, recall, F1, FNR, TP/(TP+FP+FN)), computed on the label images ``NAME_labels.tif`` --
pooled over images, per image, and as the mean over images with the DSB score -- and COCO mask
and box AP of the scored objects in ``predictions.json``.

GT objects are taken from the dataset's instance-label view (where GT masks overlap, the later
object keeps the pixel), so both families see the same GT objects. With more than one GT class the
matching is class-aware and reported per class as well.

Overlapping classes (an organelle inside its cell): when the prediction folder holds
``NAME_labels_by_class.tif`` (multi-class models write it: one label plane per class, the
``predictions.json`` numbers), each class is matched on its own plane against a GT plane of that
class built from the dataset's objects, so an object of one class inside an object of another is
found, matched and scored whole on both sides; the COCO GT objects are then the whole masks of
those planes too. Without that file the flat label images are used (with a warning when GT objects
of different classes overlap: an object hidden under another then counts as missed).

Predictions whose objects are boxes (a detection model) and GT without masks (VOC, box-only COCO)
are scored by boxes instead: box IoU matching, box AP and counts per image (:mod:`.boxes`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError, SkippedInputs
from morphoscope.formats.coco import masks_to_coco_annotations
from morphoscope.formats.dataset import load_instance_dataset
from morphoscope.io.images import read_label_image
from morphoscope.metrics.coco_eval import SUMMARY_KEYS, coco_evaluate
from morphoscope.metrics.matching import THRESHOLDS, Matching, match, match_class_planes, matching_stats
from morphoscope.metrics.per_image import image_rows, per_image_summary, per_image_table

PREDICTIONS_JSON = "predictions.json"
BY_CLASS_SUFFIX = "_labels_by_class.tif"


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
    image_names: Sequence[str] | None = None,
) -> dict:
    """Matching (and, given ``pred_scores``, COCO AP) of in-memory label images, one class.

    ``pred_scores[i]`` maps each label of ``pred_labels[i]`` to its detection score;
    ``image_names`` name the per-image rows (default ``"0"``, ``"1"``, ...). Returns
    ``{"matching": pooled, "per_image_mean", "dsb_score", "per_image": [rows],
    "images_without_objects", "coco": ... or None, "images": N, "objects": {"gt", "pred"}}``
    as :func:`evaluate` does.
    """
    if len(gt_labels) != len(pred_labels):
        raise ValueError(f"{len(gt_labels)} GT label images but {len(pred_labels)} predicted")
    if image_names is None:
        image_names = [str(i) for i in range(len(gt_labels))]
    elif len(image_names) != len(gt_labels):
        raise ValueError(f"{len(image_names)} image names for {len(gt_labels)} images")
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
    return {"matching": matching_stats(matchings, thresholds=thresholds),
            **_per_image_results(matchings, image_names), "coco": coco,
            "images": len(matchings),
            "objects": {"gt": sum(m.n_gt for m in matchings),
                        "pred": sum(m.n_pred for m in matchings)}}


def _per_image_results(matchings: Sequence[Matching], names: Sequence[str]) -> dict:
    rows = image_rows(matchings, names)
    summary = per_image_summary(rows)
    return {"per_image_mean": summary["per_image_mean"], "dsb_score": summary["dsb_score"],
            "images_without_objects": summary["images_without_objects"], "per_image": rows}


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
    strict: bool = True,
) -> dict:
    """Score the prediction folder ``pred_dir`` (docs/outputs.md) against the GT dataset ``gt``
    (any layout :func:`~morphoscope.formats.dataset.load_instance_dataset` reads).

    Prediction and GT images are paired by file stem. Every GT image needs a prediction;
    predicted images absent from the GT are ignored (counted in ``ignored_images``, with a
    warning). Returns::

        {"matching": {threshold: stats pooled over images},
         "per_image_mean": {threshold: {precision, recall, f1, ap}: mean over images},
         "dsb_score": mean over images of each image's mean ap at IoU 0.5:0.05:0.95,
         "images_without_objects": images with no GT and no predicted object (they score 1),
         "per_image": [{"image", "n_gt", "n_pred", "tp@0.5", ..., "ap@0.95", "dsb_score"}],
         "coco": {"segm", "bbox", "max_detections"}, "images", "objects": {"gt", "pred"},
         "ignored_images", "gt", "pred"}

    (definitions in :mod:`.matching` and :mod:`.per_image`). Object counts are those of the
    label images (of the class planes where they are used); per-image rows are in GT order and
    named by file stem. ``"matched_on"`` says which: ``"class planes"`` (multi-class predictions
    with ``NAME_labels_by_class.tif``: every class matched on its own plane, objects may overlap;
    module docstring) or ``"label images"``.

    ``strict=False`` scores a batch that has bad images: a GT image without a prediction, or
    whose GT or predicted labels cannot be read or do not fit, is skipped and the others are
    scored; :class:`~morphoscope.errors.SkippedInputs` is then raised naming the skipped images,
    with the others' result (its ``"skipped"``: ``[{"image", "file", "error"}]``) as its
    ``result``.
    """
    pred_dir, gt = Path(pred_dir), Path(gt)
    data = _read_predictions(pred_dir)
    json_path = pred_dir / PREDICTIONS_JSON
    dataset = load_instance_dataset(gt)
    class_names = list(dataset.class_names)
    cat_map = _category_map(data.get("categories") or [], class_names, json_path)
    from morphoscope.metrics.boxes import boxes_are_objects, evaluate_boxes

    if boxes_are_objects(data, dataset):  # box predictions or box-only GT: scored by box IoU
        return evaluate_boxes(pred_dir, gt, data, dataset, cat_map, max_detections=max_detections,
                              thresholds=thresholds, strict=strict)

    pred_images: dict[str, dict] = {}
    for im in data["images"]:
        stem = Path(im["file_name"]).stem
        if stem in pred_images:
            if "plane" in im and "plane" in pred_images[stem]:  # another plane of a stack
                pred_images[stem].setdefault("planes", [pred_images[stem]["id"]]).append(im["id"])
                continue
            raise InputError(f"two predicted images share the name '{stem}'", path=json_path)
        pred_images[stem] = dict(im)
    samples = dataset.by_name()
    missing = [n for n in samples
               if n not in pred_images or not (pred_dir / f"{n}_labels.tif").is_file()]
    if missing and (strict or len(missing) == len(samples)):
        raise InputError(
            f"{len(missing)} GT image(s) have no prediction (in {PREDICTIONS_JSON} and "
            f"NAME_labels.tif): {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""),
            path=pred_dir)
    skipped = [{"image": n, "file": f"{n}_labels.tif",
                "error": f"no prediction (in {PREDICTIONS_JSON} and {n}_labels.tif)"} for n in missing]
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
    images, gt_anns, results, matchings, names = [], [], [], [], []
    on_planes: list[str] = []  # images matched on per-class label planes
    stacks = 0
    for name, sample in samples.items():
        if name in missing:
            continue
        try:
            if _is_stack(pred_images[name], sample):  # 3D (or 3D+t): matched as volumes
                matching = _score_stack(name, sample, pred_dir=pred_dir, pred_image=pred_images[name],
                                        anns_by_image=anns_by_image, cat_map=cat_map, class_aware=class_aware,
                                        thresholds=thresholds)
                matchings.append(matching)
                names.append(name)
                stacks += 1
                continue
            scored = _score_image(name, sample, len(images) + 1, pred_dir=pred_dir,
                                  pred_image=pred_images[name], anns_by_image=anns_by_image,
                                  cat_map=cat_map, class_aware=class_aware, thresholds=thresholds,
                                  gt_start=len(gt_anns) + 1, n_classes=len(class_names),
                                  on_planes=on_planes)
        except InputError as exc:
            if strict:
                raise
            skipped.append({"image": name, "file": Path(exc.path or name).name, "error": exc.message})
            continue
        image, matching, image_gt, image_results = scored
        images.append(image)
        matchings.append(matching)
        names.append(name)
        gt_anns += image_gt
        results += image_results
    failed = [(s["file"], s["error"]) for s in skipped]
    if skipped and not images:
        raise SkippedInputs(failed, done=0, action="scored", outcome="nothing was scored")

    if images or not stacks:
        coco = coco_evaluate(_gt_coco(images, class_names, gt_anns), results,
                             max_detections=max_detections)
    else:  # COCO AP is a 2D measure: not computed for stacks
        coco = {"max_detections": max_detections}
    if stacks:
        coco["stacks_not_in_coco"] = stacks
    result = {
        "matching": matching_stats(matchings, thresholds=thresholds,
                                   class_names=class_names),
        **_per_image_results(matchings, names),
        "coco": coco,
        "images": len(names),
        "objects": {"gt": sum(m.n_gt for m in matchings), "pred": sum(m.n_pred for m in matchings)},
        "ignored_images": len(ignored),
        "matched_on": ("class planes" if on_planes and len(on_planes) == len(names) else
                       f"class planes for {len(on_planes)} of {len(names)} images" if on_planes else
                       "label images"),
        "gt": str(gt),
        "pred": str(pred_dir),
    }
    if skipped:
        result["skipped"] = skipped
        raise SkippedInputs(failed, done=len(images), action="scored",
                            outcome=f"the other {len(images)} were scored", result=result)
    return result


def _score_image(name, sample, image_id, *, pred_dir, pred_image, anns_by_image, cat_map,
                 class_aware, thresholds, gt_start, n_classes=1, on_planes=None):
    """One image's matching and COCO entries: (image entry, matching, GT annotations, scored
    results). Raises :class:`InputError` naming the file when the image cannot be scored."""
    json_path = pred_dir / PREDICTIONS_JSON
    by_class_path = pred_dir / f"{name}{BY_CLASS_SUFFIX}"
    planes = class_aware and by_class_path.is_file()
    if planes:  # overlapping classes: each class on its own plane, GT planes from the objects
        gt_planes, gt_classes = sample.load_class_planes(n_classes)
        h, w = gt_planes.shape[1:]
    else:
        gt_labels, gt_classes = sample.load_label_image()
        h, w = gt_labels.shape
    label_path = pred_dir / f"{name}_labels.tif"
    pred_labels = read_label_image(label_path)
    if pred_labels.shape != (h, w):
        raise InputError(f"size {pred_labels.shape} differs from the GT image '{name}' "
                         f"{(h, w)}", path=label_path)
    pim = pred_image
    if (pim.get("height"), pim.get("width")) != (h, w):
        raise InputError(f"image '{pim['file_name']}' is {pim.get('height')}x"
                         f"{pim.get('width')} here but {h}x{w} in the GT", path=json_path)
    anns = anns_by_image.get(pim["id"], [])
    pred_classes = None
    if class_aware:
        pred_classes = {a["label"]: cat_map[a["category_id"]] for a in anns if "label" in a}
    if planes:
        pred_planes = prediction_class_planes(by_class_path, anns, cat_map, n_classes, (h, w))
        matching = match_class_planes(gt_planes, pred_planes, thresholds=thresholds)
        gt_anns = []
        for k in range(n_classes):
            gt_anns += _label_annotations(gt_planes[k], gt_classes, image_id=image_id,
                                          start_id=gt_start + len(gt_anns))
        if on_planes is not None:
            on_planes.append(name)
    else:
        if class_aware and getattr(sample, "objects", None) and len(sample.objects) > 1:
            gt_planes, _ = sample.load_class_planes(n_classes, (h, w))
            if ((gt_planes > 0).sum(0) > 1).any():
                warnings.warn(f"'{name}': GT objects of different classes overlap but there is no "
                              f"{name}{BY_CLASS_SUFFIX} to match them on: scored on the flat label "
                              "images, where an object hidden under another counts as missed",
                              stacklevel=3)
        try:
            matching = match(gt_labels, pred_labels, thresholds=thresholds,
                             gt_classes=gt_classes if class_aware else None,
                             pred_classes=pred_classes)
        except ValueError as exc:  # labels in the TIFF that predictions.json does not describe
            raise InputError(f"{exc} in {PREDICTIONS_JSON}", path=label_path) from None
        gt_anns = _label_annotations(gt_labels, gt_classes, image_id=image_id, start_id=gt_start)
    image = {"id": image_id, "file_name": sample.image_path.name, "width": w, "height": h}
    results = []
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
    return image, matching, gt_anns, results


def _is_stack(pred_image: dict, sample) -> bool:
    """The prediction is a stack (planes in predictions.json) or the GT label file is one."""
    if "plane" in pred_image:
        return True
    if getattr(sample, "label_path", None) is None:
        return False
    from morphoscope.io.metadata import read_metadata

    try:
        return bool(read_metadata(sample.label_path).plane_axes)
    except InputError:
        return False


def _read_label_stack(path: Path, *, what: str):
    from morphoscope.io.stacks import read_stack

    stack = read_stack(path)
    if "C" in stack.axes:
        raise InputError(f"{what} label stack has a channel axis (axes {stack.axes}); expected one label per voxel",
                         path=path)
    if not np.issubdtype(stack.data.dtype, np.integer) or (stack.data.size and stack.data.min() < 0):
        raise InputError(f"{what} labels must be non-negative integers, got dtype {stack.data.dtype}", path=path)
    return stack


def _score_stack(name, sample, *, pred_dir, pred_image, anns_by_image, cat_map, class_aware, thresholds):
    """3D matching of one stack: the GT label stack against ``NAME_labels.tif`` (IoU of 3D
    objects; over a T axis the objects of each time point are matched with each other only).
    Raises :class:`InputError` naming the file that does not fit."""
    from morphoscope.io.metadata import read_metadata

    label_path = pred_dir / f"{name}_labels.tif"
    gt = _read_label_stack(sample.label_path, what="GT")
    if not gt.plane_axes:
        raise InputError(f"GT labels are 2D (shape {gt.data.shape}) but the prediction '{name}' is a stack "
                         f"({label_path.name})", path=sample.label_path)
    image_meta = read_metadata(sample.image_path)
    if image_meta.plane_axes.replace("T", "") != gt.plane_axes.replace("T", "") or tuple(
            image_meta.shape[image_meta.axes.index(a)] for a in gt.axes if a in image_meta.axes) != gt.data.shape:
        raise InputError(f"label stack of shape {gt.data.shape} (axes {gt.axes}) does not fit its image "
                         f"{sample.image_path.name} of shape {image_meta.shape} (axes {image_meta.axes}): a 3D label "
                         "image needs the 3D image it was drawn on", path=sample.label_path)
    pred = _read_label_stack(label_path, what="predicted")
    if sorted(pred.axes) != sorted(gt.axes):
        raise InputError(f"axes {pred.axes} differ from the GT stack's {gt.axes} ('{name}')", path=label_path)
    pdata = np.transpose(pred.data, [pred.axes.index(a) for a in gt.axes])
    if pdata.shape != gt.data.shape:
        raise InputError(f"shape {pdata.shape} differs from the GT stack '{name}' {gt.data.shape} (axes {gt.axes})",
                         path=label_path)
    gdata = gt.data.astype(np.int64)
    if "T" in gt.axes:  # GT numbers may repeat over time (tracks): make them unique per time point
        t_axis = gt.axes.index("T")
        top = int(gdata.max(initial=0)) + 1
        steps = np.arange(gdata.shape[t_axis], dtype=np.int64).reshape([-1 if a == t_axis else 1
                                                                        for a in range(gdata.ndim)])
        gdata = np.where(gdata > 0, gdata + steps * top, 0)
    gt_classes = pred_classes = None
    if class_aware:
        mapping = sample.label_classes or {}
        ids = np.unique(gt.data)
        if "T" in gt.axes:
            gt_classes = {int(v): mapping.get(int(v) % top, 1) for v in np.unique(gdata) if v > 0}
        else:
            gt_classes = {int(v): mapping.get(int(v), 1) for v in ids if v > 0}
        pred_classes = {}
        for image_id in pred_image.get("planes", [pred_image["id"]]):
            for a in anns_by_image.get(image_id, []):
                if "label" in a:
                    pred_classes[int(a["label"])] = cat_map[a["category_id"]]
    try:
        return match(gdata, pdata, thresholds=thresholds, gt_classes=gt_classes, pred_classes=pred_classes)
    except ValueError as exc:
        raise InputError(f"{exc} in {PREDICTIONS_JSON}", path=label_path) from None


def prediction_class_planes(path: Path, anns: list[dict], cat_map: dict[int, int], n_classes: int,
                       shape) -> np.ndarray:
    """The predicted class planes in GT class order (plane ``c - 1`` = GT class ``c``), checked
    against ``predictions.json``: every label of plane ``j - 1`` is an object of category ``j``."""
    from morphoscope.io.images import read_class_planes

    raw = read_class_planes(path)
    if raw.shape[1:] != tuple(shape):
        raise InputError(f"size {raw.shape[1:]} differs from the GT image {tuple(shape)}", path=path)
    if raw.shape[0] != len(cat_map):
        raise InputError(f"{raw.shape[0]} class planes but {len(cat_map)} categories in "
                         f"{PREDICTIONS_JSON}", path=path)
    category_of = {int(a["label"]): int(a["category_id"]) for a in anns if "label" in a}
    out = np.zeros((n_classes,) + tuple(shape), raw.dtype)
    for j, c in sorted(cat_map.items()):
        plane = raw[j - 1]
        wrong = [int(v) for v in np.unique(plane) if v > 0 and category_of.get(int(v)) != j]
        if wrong:
            raise InputError(f"plane {j} holds label(s) {wrong[:10]} that {PREDICTIONS_JSON} does not "
                             f"give category {j}", path=path)
        out[c - 1] = np.maximum(out[c - 1], plane)
    return out


def class_map_from_planes(planes: np.ndarray) -> np.ndarray:
    """One class per pixel from per-class label planes ``(K, H, W)``: where objects of several
    classes cover a pixel, the smallest object's class wins (an organelle inside its cell shows
    the organelle, the rest of the cell shows cell), the way semantic labels of nested structures
    are drawn. 0 = no object; label numbers must be unique across the planes."""
    planes = np.asarray(planes)
    if planes.ndim < 3:
        raise ValueError(f"expected (K, H, W) class planes, got shape {planes.shape}")
    flat = planes.reshape(len(planes), -1).astype(np.int64)
    area = np.bincount(flat.ravel(), minlength=int(flat.max(initial=0)) + 1).astype(np.float64)
    area[0] = np.inf
    size = area[flat]  # (K, N): area of the object each plane shows at each pixel (inf: none)
    best = np.argmin(size, axis=0)
    found = np.isfinite(size[best, np.arange(flat.shape[1])])
    return np.where(found, best + 1, 0).reshape(planes.shape[1:])


def write_per_image_csv(result: dict, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the per-image rows of an :func:`evaluate` result as CSV (atomically; an existing
    file is replaced only with ``overwrite``). Columns: ``image, n_gt, n_pred``, then
    ``tp, fp, fn, precision, recall, f1, ap`` at each IoU threshold (``f1@0.5``), then
    ``dsb_score``."""
    from morphoscope.io.atomic import atomic_write

    path = Path(path)
    table = per_image_table(result["per_image"])
    with atomic_write(path, overwrite=overwrite, mode="w") as fh:
        table.to_csv(fh, index=False, lineterminator="\n")
    return path


def _fmt(v: float | None) -> str:
    return "    -" if v is None else f"{v:.3f}"


def format_table(result: dict) -> str:
    """The result of :func:`evaluate` as a plain-text table."""
    lines = [f"GT {result['gt']}  |  predictions {result['pred']}",
             f"{result['images']} images, {result['objects']['gt']} GT objects, "
             f"{result['objects']['pred']} predicted objects"]
    if result.get("ignored_images"):
        lines.append(f"({result['ignored_images']} predicted images not in the GT were ignored)")
    if str(result.get("matched_on", "")).startswith("class planes"):
        lines.append(f"(matched on per-class label planes ({result['matched_on']}): objects of "
                     "different classes may overlap, each is scored whole)")
    if result.get("skipped"):
        names = [s["image"] for s in result["skipped"]]
        lines.append(f"({len(names)} GT image(s) could not be scored and are left out: "
                     f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''})")
    mean = result.get("per_image_mean") or {}
    lines += ["", "Object matching (TP = one-to-one pairs with IoU >= threshold; "
                  "AP = TP/(TP+FP+FN))",
              "pooled: TP, FP, FN summed over all images, then the ratios; "
              f"per image: mean over the {result['images']} images of each image's ratio",
              f"{'':>5} {' pooled ':-^58} {' mean per image ':-^27}",
              f"{'IoU':>5} {'TP':>7} {'FP':>7} {'FN':>7} {'prec':>6} {'recall':>6} {'F1':>6} "
              f"{'FNR':>6} {'AP':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'AP':>6}"]
    for key, s in result["matching"].items():
        m = mean.get(key)
        per_image = (" ".join(f"{m[q]:>6.3f}" for q in ("precision", "recall", "f1", "ap"))
                     if m else "")
        lines.append(f"{key:>5} {s['tp']:>7} {s['fp']:>7} {s['fn']:>7} {s['precision']:>6.3f} "
                     f"{s['recall']:>6.3f} {s['f1']:>6.3f} {s['fnr']:>6.3f} {s['ap']:>6.3f} "
                     f"{per_image}".rstrip())
    if result.get("dsb_score") is not None:
        line = (f"DSB score (mean over images of each image's mean AP at IoU 0.5:0.05:0.95): "
                f"{result['dsb_score']:.3f}")
        empty = result.get("images_without_objects", 0)
        if empty:
            line += (f"  ({empty} image{'s' if empty > 1 else ''} without GT or predicted "
                     "objects score 1)")
        lines += ["", line]
    coco = result["coco"]
    iou_types = [t for t in ("segm", "bbox") if t in coco]
    if coco.get("stacks_not_in_coco"):
        lines += ["", (f"{coco['stacks_not_in_coco']} stack(s) matched in 3D (IoU of 3D objects); COCO AP "
                       "is a 2D measure and leaves them out")]
    if not iou_types:
        return "\n".join(lines)
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
    if result.get("iou") == "box":  # scored by boxes (metrics/boxes.py): say so, and the counts
        from morphoscope.metrics.boxes import format_counts

        lines += format_counts(result)
    return "\n".join(lines)
