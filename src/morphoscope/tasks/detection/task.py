"""The detection task: torchvision Faster R-CNN, multi-class boxes that may overlap.

Results are objects like any other: each box is a rectangular mask crop (its pixels), so label
images, class masks, overlays, measurements, predictions.json, the web app and compare work
unchanged; predictions.json's ``bbox`` is the box. Boxes are snapped to whole pixels (each corner
to the nearest pixel edge) so that the crop and the box are the same thing. ``predictions.json``
records ``"objects": "boxes"`` in its settings, and ``morphoscope evaluate`` then scores boxes:
box IoU matching, COCO box AP, counts per image (:mod:`morphoscope.metrics.boxes`).

Validation (each ``val_every`` epochs) predicts the validation images through the prediction
engine, and picks ``model_best.pt`` by box AP (of ``data.score_class``, else the mean over
classes) and the score threshold the model then uses by default: the one with the best F1 at
box IoU 0.5 on the validation images (stored in the checkpoint, ``extra.score_threshold``).
"""

from __future__ import annotations

import numpy as np
import torch

from morphoscope.engine.objects import Objects
from morphoscope.engine.task import (
    BlockOutput,
    Inference,
    Task,
    TrainingPlan,
    Validation,
)
from morphoscope.errors import ConfigError, InputError
from morphoscope.tasks.detection.config import DetectionConfig
from morphoscope.tasks.instance.task import load_datasets, model_input, rcnn_loss

#: score thresholds validation chooses from
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


def snap_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """Boxes ``(N, 4)`` x0, y0, x1, y1 -> int64 whole-pixel corners inside the ``(H, W)`` window,
    each at least one pixel wide and high."""
    h, w = (int(s) for s in shape)
    b = np.rint(np.asarray(boxes, np.float64)).astype(np.int64).reshape(-1, 4)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    b[:, 2] = np.maximum(b[:, 2], np.minimum(b[:, 0] + 1, w))
    b[:, 0] = np.minimum(b[:, 0], b[:, 2] - 1)
    b[:, 3] = np.maximum(b[:, 3], np.minimum(b[:, 1] + 1, h))
    b[:, 1] = np.minimum(b[:, 1], b[:, 3] - 1)
    return b


def boxes_to_objects(boxes, scores, labels, shape) -> Objects:
    """Detections -> :class:`Objects` whose crops are the (snapped) boxes, filled."""
    b = snap_boxes(boxes, shape)
    crops = [np.ones((int(y1 - y0), int(x1 - x0)), bool) for x0, y0, x1, y1 in b]
    return Objects(shape, crops, b[:, [1, 0]], scores, labels)


def objects_to_boxes(objects: Objects) -> np.ndarray:
    """``(N, 4)`` x0, y0, x1, y1 of each object's crop window (the box of a detection)."""
    bb = objects.bboxes  # y0, x0, y1, x1
    return bb[:, [1, 0, 3, 2]].astype(np.float64)


class DetectionInference(Inference):
    threshold_kind = "score"
    block_align = 64  # the FPN's last level (P6) has stride 64

    def __init__(self, bundle, *, score_threshold: float | None = None, block_size: int | None = None,
                 block_margin: int | None = None, batch_size: int | None = None, keep_maps: bool = False):
        super().__init__(bundle)
        inf = bundle.cfg.inference
        chosen = (getattr(bundle, "extra", None) or {}).get("score_threshold")
        self.model_threshold = 0.5 if chosen is None else float(chosen)
        self.threshold = self.model_threshold if score_threshold is None else float(score_threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"score threshold must be in [0, 1], got {self.threshold}")
        self.use_windows(inf, block_size=block_size, block_margin=block_margin, batch_size=batch_size)
        self.min_side = 16

    def prepare(self, window, stats):
        return model_input(window, stats["low"], stats["high"])

    @torch.inference_mode()
    def run(self, batch):
        model = self.bundle.model
        model.eval()
        outs = model([torch.from_numpy(x).to(self.device, non_blocking=True) for x in batch])
        cap = model.roi_heads.detections_per_img
        results = []
        for x, out in zip(batch, outs):
            objs = boxes_to_objects(out["boxes"].float().cpu().numpy(), out["scores"].float().cpu().numpy(),
                                    out["labels"].cpu().numpy(), x.shape[-2:])
            results.append(BlockOutput(objects=objs.sorted(), capped=len(out["scores"]) >= cap))
        return results

    def settings(self) -> dict:
        return {**super().settings(), "score_threshold": self.threshold,
                "model_score_threshold": self.model_threshold, "objects": "boxes"}


class DetectionTask(Task):
    name = "detection"
    config_schema = DetectionConfig
    description = "Faster R-CNN object detection (boxes; multi-class, boxes may overlap)"

    def build_model(self, cfg, class_names):
        from morphoscope.tasks.detection.model import build_fasterrcnn

        return build_fasterrcnn(cfg.model.model_copy(update={"pretrained": "none", "weights": None}),
                                len(class_names))

    def initial_model(self, cfg, class_names):
        from morphoscope.tasks.detection.model import build_fasterrcnn

        return build_fasterrcnn(cfg.model, len(class_names))

    def inference(self, bundle, **options):
        return DetectionInference(bundle, **options)

    def predict_options(self):
        return {"score_threshold": "keep boxes scoring at least this (0..1; default: the threshold "
                                   "chosen on the validation images, else 0.5)"}

    def training_plan(self, cfg, *, seed, world):
        from morphoscope.tasks.detection.data import BoxCropDataset, collate

        t = cfg.train
        train_ds, val_ds = load_datasets(cfg.data)
        train_ds.require_objects()
        class_names = list(train_ds.class_names)
        if cfg.data.score_class is not None and cfg.data.score_class not in class_names:
            raise ConfigError(f"data.score_class '{cfg.data.score_class}' is not a class of the data "
                              f"({', '.join(class_names)})")
        iters = t.iters_per_epoch or max(1, len(train_ds) // (t.batch_size * world))
        crops = BoxCropDataset(train_ds, crop_size=t.crop_size, length=iters * t.batch_size * world,
                               augment=cfg.augment, normalize=cfg.data.normalize, seed=seed,
                               min_size=cfg.data.min_box_size, min_visible=cfg.data.min_visible)
        normalize = cfg.data.normalize.model_dump()
        validate = None
        if val_ds is not None:
            def validate(model, device):
                from morphoscope.engine.bundle import ModelBundle

                bundle = ModelBundle(name=cfg.name, task=self, model=model, class_names=class_names, cfg=cfg,
                                     normalize=normalize, device=device)
                metrics, extra = validate_boxes(bundle, val_ds, max_images=t.val_max_images,
                                                score_class=cfg.data.score_class)
                key = f"box_ap_{cfg.data.score_class}" if cfg.data.score_class else "box_ap"
                score = metrics.get(key)
                return Validation(metrics, score=-1.0 if score is None else float(score), extra=extra)

        return TrainingPlan(config=cfg, class_names=class_names, normalize=normalize, dataset=crops,
                            collate=collate, loss=rcnn_loss, iters_per_epoch=iters, validate=validate,
                            nonfinite_hint="lower train.lr, raise train.warmup_iters, or check the boxes")


def validate_boxes(bundle, dataset, *, max_images: int | None = None, score_class: str | None = None,
                   max_detections: int = 1000) -> tuple[dict, dict]:
    """Box AP, F1 at box IoU 0.5 and count errors on annotated images, through the prediction
    engine with every detection the model outputs; the score threshold with the best F1 at IoU
    0.5 (of ``score_class``, else pooled over classes) is chosen and reported with its F1 and
    count errors. Returns ``(metrics, {"score_threshold": t})``."""
    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.formats.voc import boxes_of
    from morphoscope.metrics.boxes import count_errors, match_boxes
    from morphoscope.metrics.coco_eval import coco_evaluate
    from morphoscope.metrics.matching import matching_stats

    class_names = list(bundle.class_names)
    samples = dataset.samples[:max_images] if max_images else dataset.samples
    predictor = Predictor(bundle, score_threshold=0.0)
    images = [s.load_image() for s in samples]
    gt, preds = [], []
    coco_images, gt_anns, results = [], [], []
    for i, (s, img, (_, res)) in enumerate(zip(samples, images, predictor.run(
            PlaneInput(s.name, img) for s, img in zip(samples, images))), start=1):
        if isinstance(res, BaseException):
            raise res
        boxes, classes = boxes_of(s, img.shape)
        objs = res.objects
        pb = objects_to_boxes(objs)
        gt.append((boxes, classes))
        preds.append((pb, objs.classes, objs.scores))
        h, w = img.shape[:2]
        coco_images.append({"id": i, "file_name": s.name, "width": w, "height": h})
        for b, c in zip(boxes, classes):
            bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i, "category_id": int(c),
                            "bbox": [float(b[0]), float(b[1]), bw, bh], "area": bw * bh})
        for b, c, sc in zip(pb, objs.classes, objs.scores):
            results.append({"image_id": i, "category_id": int(c), "score": float(sc),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    gt_coco = {"images": coco_images, "annotations": gt_anns,
               "categories": [{"id": k, "name": n} for k, n in enumerate(class_names, start=1)]}
    box = coco_evaluate(gt_coco, results, iou_types=("bbox",), max_detections=max_detections)["bbox"]
    metrics = {"box_ap": box["AP"], "box_ap50": box["AP50"], "images": len(samples)}
    for name, ap in box["per_class"].items():
        metrics[f"box_ap_{name}"] = ap
    multi = len(class_names) > 1

    def at(t):
        ms, gc, pc = [], [], []
        for (gb, gcl), (pb, pcl, psc) in zip(gt, preds):
            keep = psc >= t
            ms.append(match_boxes(gb, pb[keep], thresholds=(0.5,), gt_classes=gcl if multi else None,
                                  pred_classes=pcl[keep] if multi else None))
            gc.append({n: int((gcl == k).sum()) for k, n in enumerate(class_names, start=1)})
            pc.append({n: int((pcl[keep] == k).sum()) for k, n in enumerate(class_names, start=1)})
        st = matching_stats(ms, thresholds=(0.5,), class_names=class_names)["0.5"]
        return st, count_errors(gc, pc, class_names)

    def f1_of(st):
        if score_class is not None and multi:
            return st["per_class"].get(score_class, {"f1": 0.0})["f1"]
        return st["f1"]

    best_t, best = None, None
    for t in THRESHOLD_GRID:
        st, counts = at(t)
        if best is None or f1_of(st) > f1_of(best[0]):
            best_t, best = t, (st, counts)
    st, counts = best
    metrics.update({"score_threshold": best_t, "f1@0.5": st["f1"], "precision@0.5": st["precision"],
                    "recall@0.5": st["recall"]})
    for name in class_names:
        if multi:
            metrics[f"f1@0.5_{name}"] = st["per_class"].get(name, {"f1": 0.0})["f1"]
        metrics[f"count_mae_{name}"] = counts[name]["mae"]
    return metrics, {"score_threshold": best_t}
