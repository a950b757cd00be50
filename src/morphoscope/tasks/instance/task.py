"""The instance task: torchvision Mask R-CNN, multi-class, objects may overlap.

Prediction keeps each detection's mask as a crop inside its box (pasted with torchvision's exact
arithmetic), so the cost follows the objects, not objects x image size; the engine's blocks make
any image size work and lift the per-image cap on detections to a per-window one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

from morphoscope.engine.objects import Objects
from morphoscope.engine.task import BlockOutput, Inference, Task, TrainingPlan, Validation
from morphoscope.errors import ConfigError, InputError
from morphoscope.io.images import as_channels_last
from morphoscope.tasks.instance.config import InstanceConfig


def paste_masks_in_boxes(masks: torch.Tensor, boxes: torch.Tensor, shape, threshold: float):
    """Mask-head outputs ``(N, 1, M, M)`` -> per-detection binary crops and their origins, with
    exactly the arithmetic of torchvision's ``paste_masks_in_image`` (1-pixel padding, box
    expansion, bilinear resize to the integer box), cut to the image instead of pasted onto a
    full canvas."""
    h_img, w_img = shape
    masks, scale = expand_masks(masks, padding=1)
    boxes = expand_boxes(boxes, scale).to(dtype=torch.int64).tolist()
    crops, origins = [], []
    for m, (bx0, by0, bx1, by1) in zip(masks, boxes):
        w, h = max(bx1 - bx0 + 1, 1), max(by1 - by0 + 1, 1)
        r = F.interpolate(m[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        x0, x1 = max(bx0, 0), min(bx1 + 1, w_img)
        y0, y1 = max(by0, 0), min(by1 + 1, h_img)
        if x1 <= x0 or y1 <= y0:
            crops.append(np.zeros((0, 0), bool))
            origins.append((0, 0))
            continue
        crops.append((r[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] > threshold).cpu().numpy())
        origins.append((y0, x0))
    return crops, np.asarray(origins, np.int64).reshape(-1, 2)


def model_input(window: np.ndarray, low: float, high: float) -> np.ndarray:
    """Native window -> float32 (3, h, w): percentile range of the whole plane to 0..1 (clipped to
    -1..3), grey repeated to 3 channels, alpha dropped."""
    x = as_channels_last(window).astype(np.float32)
    x = (x - np.float32(low)) / np.float32(max(high - low, 1e-6))
    c = x.shape[-1]
    if c == 1:
        x = np.repeat(x, 3, axis=-1)
    elif c == 2:
        x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
    return np.ascontiguousarray(np.clip(x, -1.0, 3.0).transpose(2, 0, 1))


class InstanceInference(Inference):
    threshold_kind = "score"
    block_align = 64  # the FPN's last level (P6) has stride 64

    def __init__(self, bundle, *, score_threshold: float | None = None, mask_threshold: float | None = None,
                 block_size: int | None = None, block_margin: int | None = None, batch_size: int | None = None,
                 keep_maps: bool = False):
        super().__init__(bundle)
        cfg = bundle.cfg
        inf = cfg.inference
        self.threshold = 0.5 if score_threshold is None else float(score_threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"score threshold must be in [0, 1], got {self.threshold}")
        self.mask_threshold = cfg.model.mask_threshold if mask_threshold is None else float(mask_threshold)
        if not 0.0 < self.mask_threshold < 1.0:
            raise InputError(f"mask threshold must be between 0 and 1, got {self.mask_threshold}")
        self.use_windows(inf, block_size=block_size, block_margin=block_margin, batch_size=batch_size)
        self.min_side = 16

    def prepare(self, window, stats):
        return model_input(window, stats["low"], stats["high"])

    @torch.inference_mode()
    def run(self, batch):
        model = self.bundle.model
        model.eval()
        xs = [torch.from_numpy(x).to(self.device, non_blocking=True) for x in batch]
        transform = model.transform
        transform.paste_masks = False  # keep 28x28 masks: pasted into their boxes below
        try:
            outs = model(xs)
        finally:
            transform.paste_masks = True
        cap = model.roi_heads.detections_per_img
        results = []
        for x, out in zip(batch, outs):
            shape = x.shape[-2:]
            crops, origins = paste_masks_in_boxes(out["masks"], out["boxes"], shape, self.mask_threshold)
            objs = Objects(shape, crops, origins, out["scores"].float().cpu().numpy(),
                           out["labels"].cpu().numpy()).tight()
            results.append(BlockOutput(objects=objs, capped=len(out["scores"]) >= cap))
        return results

    def settings(self) -> dict:
        return {**super().settings(), "score_threshold": self.threshold, "mask_threshold": self.mask_threshold}


class InstanceTask(Task):
    name = "instance"
    config_schema = InstanceConfig
    description = "Mask R-CNN instance segmentation (multi-class; objects may overlap)"

    def build_model(self, cfg, class_names):
        from morphoscope.tasks.instance.model import build_maskrcnn

        model_cfg = cfg.model.model_copy(update={"pretrained": "none", "weights": None})
        return build_maskrcnn(model_cfg, len(class_names))

    def initial_model(self, cfg, class_names):
        from morphoscope.tasks.instance.model import build_maskrcnn

        return build_maskrcnn(cfg.model, len(class_names))

    def inference(self, bundle, **options):
        return InstanceInference(bundle, **options)

    def export_module(self, bundle):
        from morphoscope.tasks.instance.export import export_spec

        return export_spec(bundle)

    def predict_options(self):
        return {"score_threshold": "keep objects scoring at least this (0..1; default 0.5)",
                "mask_threshold": "mask-head probability that makes a pixel part of an object (default from the model)"}

    def training_plan(self, cfg, *, seed, world):
        from morphoscope.tasks.instance.data import InstanceCropDataset, collate

        t = cfg.train
        train_ds, val_ds = load_datasets(cfg.data)
        iters = t.iters_per_epoch or max(1, len(train_ds) // (t.batch_size * world))
        crops = InstanceCropDataset(train_ds, crop_size=t.crop_size, length=iters * t.batch_size * world,
                                    augment=cfg.augment, normalize=cfg.data.normalize, seed=seed,
                                    min_area=cfg.data.min_object_area)
        class_names = list(train_ds.class_names)
        normalize = cfg.data.normalize.model_dump()
        validate = None
        if val_ds is not None:
            def validate(model, device):
                metrics = validate_instances(self._bundle(model, cfg, class_names, normalize, device), val_ds,
                                             max_images=t.val_max_images)
                return Validation(metrics, score=metrics["f1@0.5"])

        return TrainingPlan(config=cfg, class_names=class_names, normalize=normalize, dataset=crops,
                            collate=collate, loss=rcnn_loss, iters_per_epoch=iters, validate=validate)

    def _bundle(self, model, cfg, class_names, normalize, device):
        from morphoscope.engine.bundle import ModelBundle

        return ModelBundle(name=cfg.name, task=self, model=model, class_names=class_names, cfg=cfg,
                           normalize=normalize, device=device)


def load_datasets(data):
    """The training and (optional) validation datasets of a ``data`` config section (any layout
    :func:`~morphoscope.formats.load_instance_dataset` reads); their class names must agree."""
    from morphoscope.formats import load_instance_dataset

    train_ds = load_instance_dataset(data.train, class_name=data.class_name)
    val_ds = load_instance_dataset(data.val, class_name=data.class_name) if data.val else None
    if val_ds is not None and val_ds.class_names != train_ds.class_names:
        raise ConfigError(f"validation classes {val_ds.class_names} differ from training classes "
                          f"{train_ds.class_names}", path=data.val)
    return train_ds, val_ds


def rcnn_loss(model, batch, device):
    """One training step's losses of a torchvision R-CNN: given targets, it returns its loss dict."""
    images, targets = batch
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in tg.items()} for tg in targets]
    return model(images, targets)


def validate_instances(bundle, dataset, *, max_images: int | None = None, score_threshold: float = 0.5) -> dict:
    """Matching on annotated images through the prediction engine: F1/precision/recall at IoU
    0.5 and the mean of TP/(TP+FP+FN) over IoU 0.5..0.95. With several classes the matching is
    class-aware on one label plane per class (objects of different classes may overlap, as in
    ``NAME_labels_by_class.tif``)."""
    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.engine.writer import label_arrays, labels_by_class
    from morphoscope.metrics.matching import match_class_planes, matching_stats

    samples = dataset.samples[:max_images] if max_images else dataset.samples
    predictor = Predictor(bundle, score_threshold=score_threshold)
    images = [s.load_image() for s in samples]
    n_classes = len(dataset.class_names)
    pairs = []
    for s, img, (_, res) in zip(samples, images,
                                predictor.run(PlaneInput(s.name, img) for s, img in zip(samples, images))):
        if isinstance(res, BaseException):
            raise res
        if n_classes > 1:
            gt_planes, _ = s.load_class_planes(n_classes, img.shape)
            objs = res.objects_at()
            kept = objs.select(label_arrays(objs, by_class=True)[3])
            pred_planes = labels_by_class(kept, n_classes)
            pairs.append(match_class_planes(gt_planes, pred_planes))
            continue
        gt, _ = s.load_label_image(img.shape)
        pred, _ = res.objects_at().to_labels()
        pairs.append((gt, pred))
    st = matching_stats(pairs)
    keys = list(st)
    return {"f1@0.5": st["0.5"]["f1"], "precision@0.5": st["0.5"]["precision"],
            "recall@0.5": st["0.5"]["recall"], "ap@0.5": st["0.5"]["ap"],
            "mean_ap@0.5:0.95": float(np.mean([st[k]["ap"] for k in keys])), "images": len(pairs)}
