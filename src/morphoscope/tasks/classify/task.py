"""The classify task: whole-image classification, multi-label (sigmoid + BCE) or single-label
(softmax + cross-entropy), with a transfer-learned torchvision ResNet.

Transfer learning: for ``freeze_backbone_epochs: N`` the trunk is frozen (weights and BatchNorm
statistics) and only the head trains for N epochs; then the whole network trains at
``lr * unfreeze_lr_factor``, each phase with its own schedule. ``model_best.pt`` holds the best
validation ``train.monitor`` and the per-class thresholds tuned on the validation images; the run
folder also gets ``split.json`` (the Ids of each subset) and ``val.csv`` (the validation images as
a labels CSV, usable as ``--gt``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings

import numpy as np
import torch
from torch import nn

from morphoscope.engine.task import BlockOutput, Inference, Task, TrainingPlan, Validation
from morphoscope.errors import ConfigError, InputError
from morphoscope.tasks.classify.config import ClassifyConfig


# --------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------


class ClassifyInference(Inference):
    tiled = False
    threshold_kind = None
    threshold = None
    min_side = 2

    def __init__(self, bundle, *, batch_size: int | None = None, block_size=None, block_margin=None,
                 keep_maps: bool = False):
        super().__init__(bundle)
        cfg = bundle.cfg
        norm = bundle.normalize
        k = len(bundle.class_names)
        self.multi_label = cfg.model.head == "multi_label"
        thr = bundle.extra.get("thresholds")
        if self.multi_label and thr is None:
            thr = [cfg.train.default_threshold] * k
        self.thresholds = thr if self.multi_label else None
        self.in_channels = cfg.model.in_channels
        self.image_size = cfg.data.image_size
        self.intensity = norm.get("intensity", cfg.data.intensity)
        self.mean, self.std = norm["mean"], norm["std"]
        self.channels = cfg.data.channels
        self.batch_size = int(8 if batch_size is None else batch_size)

    def statistics(self, sample):
        return {}  # intensities are scaled per image (dtype range or percentiles) in prepare

    def prepare(self, window, stats):
        from morphoscope.tasks.classify.data import _channels_last, fit_channels, prepare_input

        img = fit_channels(_channels_last(np.asarray(window), None), self.in_channels, None)
        return prepare_input(img, intensity=self.intensity, image_size=self.image_size, mean=self.mean,
                             std=self.std).numpy()

    @torch.inference_mode()
    def run(self, batch):
        model = self.bundle.model
        model.eval()
        logits = model(torch.from_numpy(np.stack(batch)).to(self.device)).float()
        p = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)
        return [BlockOutput(class_scores=row) for row in p.cpu().numpy()]

    def finish(self, objects, maps, class_scores):
        from morphoscope.tasks.classify.metrics import decide

        d = decide(class_scores[None], self.thresholds, multi_label=self.multi_label)[0]
        return {"decided": [n for n, v in zip(self.bundle.class_names, d) if v]}

    def settings(self):
        return {"multi_label": self.multi_label, "thresholds": self.thresholds, "channels": self.channels,
                "image_size": self.image_size, "batch_size": self.batch_size}


def classify_image(bundle, image: np.ndarray) -> dict:
    """One image -> ``{"probabilities": {class: p}, "labels": [decided class names]}``."""
    from morphoscope.engine.predictor import Predictor

    res = Predictor(bundle).predict(np.asarray(image))
    return {"probabilities": {n: float(p) for n, p in zip(bundle.class_names, res.class_scores)},
            "labels": list(res.decided)}


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def phase_schedule(t, iters: int):
    """LR multiplier of iteration ``it``: the head-only phase and the whole-network phase each get
    their own warm-up/cosine or one-cycle curve; the second is scaled by ``unfreeze_lr_factor``."""
    from morphoscope.engine.training import warmup_cosine

    frozen_iters = t.freeze_backbone_epochs * iters
    total = t.epochs * iters

    def shape(i: int, length: int) -> float:
        if t.schedule == "onecycle":
            up = max(1, round(t.onecycle_pct_start * length))
            if i < up:
                return 0.04 + 0.96 * i / up
            p = min(1.0, (i - up) / max(1, length - up))
            return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        if t.schedule == "constant":
            return 1.0 if i >= t.warmup_iters else 0.001 + 0.999 * i / max(1, t.warmup_iters)
        return warmup_cosine(length, t.warmup_iters, t.min_lr_ratio)(i)

    def factor(it: int) -> float:
        if it < frozen_iters:
            return shape(it, frozen_iters)
        scale = t.unfreeze_lr_factor if frozen_iters else 1.0
        return scale * shape(it - frozen_iters, total - frozen_iters)

    return factor


def make_loss(cfg: ClassifyConfig, train_labels: np.ndarray, device) -> nn.Module:
    """BCE-with-logits (multi-label) or cross-entropy (single-label), with optional weights."""
    lc = cfg.loss
    k = train_labels.shape[1]
    weight = None
    if isinstance(lc.pos_weight, list):
        if len(lc.pos_weight) != k:
            raise ConfigError(f"loss.pos_weight has {len(lc.pos_weight)} values for {k} classes")
        weight = torch.tensor(lc.pos_weight, dtype=torch.float32)
    elif lc.pos_weight == "balanced":
        pos = train_labels.sum(0).astype(np.float64)
        n = len(train_labels)
        if cfg.model.head == "multi_label":
            w = (n - pos) / np.maximum(pos, 1)
        else:
            w = n / (k * np.maximum(pos, 1))
        weight = torch.tensor(np.clip(w, 1.0 / lc.max_pos_weight, lc.max_pos_weight), dtype=torch.float32)
    if weight is not None:
        weight = weight.to(device)
    if cfg.model.head == "multi_label":
        bce = nn.BCEWithLogitsLoss(pos_weight=weight)
        if lc.label_smoothing == 0:
            return bce
        s = lc.label_smoothing

        class Smoothed(nn.Module):
            def forward(self, logits, target):
                return bce(logits, target * (1 - s) + s / 2)

        return Smoothed()
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=lc.label_smoothing)


def _optimizer(t, model):
    groups = [{"params": list(model.head.parameters()), "name": "head"},
              {"params": list(model.backbone.parameters()), "name": "backbone"}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)


@torch.inference_mode()
def evaluate_loader(model, loader, criterion, device, *, multi_label: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, probabilities ``(N, K)`` and targets of a (non-augmented) loader."""
    model.eval()
    losses, probs, targets = [], [], []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        losses.append(float(criterion(logits, y)) * len(x))
        probs.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, 1)).cpu().numpy())
        targets.append(y.cpu().numpy())
    n = sum(len(p) for p in probs)
    return sum(losses) / max(n, 1), np.concatenate(probs), np.concatenate(targets)


def split_files(ds, tr_idx, val_ds, val_idx) -> dict[str, str]:
    """``split.json`` (the Ids of each subset) and ``val.csv`` (a labels CSV of the validation
    images) for the run folder."""
    split = {"train": [ds.samples[i].id for i in tr_idx], "val": [val_ds.samples[i].id for i in val_idx],
             "val_source": str(val_ds.source)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Id", "Target", "Dir"])
    channels = val_ds.channels
    for i in val_idx:
        s = val_ds.samples[i]
        f = s.files[0]
        stem = f.stem[: -len(channels[0]) - 1] if channels else f.stem
        w.writerow([stem, " ".join(map(str, s.labels)), str(f.parent.resolve())])
    return {"split.json": json.dumps(split, indent=1), "val.csv": buf.getvalue()}


class ClassifyTask(Task):
    name = "classify"
    config_schema = ClassifyConfig
    description = "whole-image classification, multi- or single-label (ResNet, freeze -> unfreeze)"
    result_kind = "classes"

    def build_model(self, cfg, class_names):
        from morphoscope.tasks.classify.model import build_from_config

        return build_from_config(cfg, len(class_names))

    def initial_model(self, cfg, class_names):
        from morphoscope.tasks.classify.model import build_model

        return build_model(cfg, len(class_names))

    def inference(self, bundle, **options):
        return ClassifyInference(bundle, **options)

    def export_module(self, bundle):
        from morphoscope.tasks.classify.export import export_spec

        return export_spec(bundle)

    def input_groups(self, bundle, paths):
        from morphoscope.tasks.classify.data import group_prediction_files

        return group_prediction_files(list(paths), bundle.cfg.data.channels)

    def read_group(self, bundle, name, files):
        from morphoscope.tasks.classify.data import read_sample_image

        return read_sample_image(files, bundle.cfg.model.in_channels, f"image '{name}'")

    def training_plan(self, cfg, *, seed, world):
        from morphoscope.tasks.classify.data import (ClassificationImages, channel_stats, check_channels,
                                                      datasets_from_config)
        from morphoscope.tasks.classify.metrics import classification_metrics, summary, tune_thresholds
        from morphoscope.tasks.classify.model import imagenet_stats

        t = cfg.train
        ds, tr_idx, val_idx, val_ds = datasets_from_config(cfg)
        val_src = val_ds if val_ds is not None else ds
        if len(val_idx) == 0:
            raise InputError("the validation set is empty", path=cfg.data.val_ids or cfg.data.val or cfg.data.train)
        in_ch = check_channels(ds, cfg.model.in_channels)
        if val_ds is not None:
            check_channels(val_ds, in_ch)
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"in_channels": in_ch}),
                                     "data": cfg.data.model_copy(update={"class_names": list(ds.class_names),
                                                                         "class_names_file": None})})
        k = len(ds.class_names)
        multi = cfg.model.head == "multi_label"
        pretrained = cfg.model.pretrained == "imagenet" or cfg.model.weights is not None
        if t.freeze_backbone_epochs and not pretrained:
            warnings.warn("freeze_backbone_epochs with a randomly initialised backbone trains the head on "
                          "random features; set model.pretrained: imagenet or model.weights", stacklevel=2)
        norm_mode = cfg.data.normalization
        if norm_mode == "auto":
            norm_mode = "imagenet" if pretrained else "dataset"
        mean, std = (imagenet_stats(in_ch) if norm_mode == "imagenet" else
                     channel_stats(ds, tr_idx, in_channels=in_ch, intensity=cfg.data.intensity, seed=seed))
        normalize = {"intensity": cfg.data.intensity, "mean": mean, "std": std, "source": norm_mode}
        iters = t.iters_per_epoch or max(1, math.ceil(len(tr_idx) / (t.batch_size * world)))
        common = dict(in_channels=in_ch, image_size=cfg.data.image_size, intensity=cfg.data.intensity,
                      mean=mean, std=std, multi_label=multi, cache=cfg.data.cache_images)
        train_images = ClassificationImages(ds, tr_idx, augment=cfg.augment, shuffle=True, seed=seed,
                                            length=iters * t.batch_size * world, **common)
        val_images = ClassificationImages(val_src, val_idx, augment=None, **common)
        criterion = make_loss(cfg, ds.subset(tr_idx).label_matrix(), "cpu")
        extra = {"channel_mean": mean, "channel_std": std, "in_channels": in_ch, "image_size": cfg.data.image_size,
                 "head": cfg.model.head, "channels": cfg.data.channels,
                 "split": {"train": int(len(tr_idx)), "val": int(len(val_idx))}}

        def loss(model, batch, device):
            x, y = batch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            return {"loss": criterion.to(device)(model(x).float(), y)}

        def validate(model, device):
            from torch.utils.data import DataLoader

            loader = DataLoader(val_images, batch_size=t.batch_size, shuffle=False, num_workers=t.workers)
            val_loss, probs, targets = evaluate_loader(model, loader, criterion.to(device), device, multi_label=multi)
            y_true = targets if multi else np.eye(k, dtype=np.int64)[targets]
            m = classification_metrics(y_true, probs, class_names=ds.class_names, multi_label=multi,
                                       default_threshold=t.default_threshold)
            metrics = {"loss": val_loss, **summary(m)}
            thresholds, tuned = None, None
            if multi:
                thresholds = [t.default_threshold] * k
                if t.tune_thresholds:
                    thresholds, tuned = tune_thresholds(y_true, probs, default=t.default_threshold)
            mt = classification_metrics(y_true, probs, thresholds=thresholds, class_names=ds.class_names,
                                        multi_label=multi)
            best_extra = {"thresholds": thresholds, "thresholds_tuned": tuned, "val_metrics": mt,
                          "val_metrics_default_threshold": m}
            if tuned:
                metrics.update({f"{key}_tuned": v for key, v in summary(mt).items()})
            metrics.update(train_images=int(len(tr_idx)), val_images=int(len(val_idx)))
            score = -val_loss if t.monitor == "loss" else m[t.monitor]
            return Validation(metrics, score=score, extra=best_extra)

        def on_epoch(model, epoch):
            frozen = epoch < t.freeze_backbone_epochs
            changed = getattr(model, "_frozen", None) != frozen
            if changed:
                model.set_backbone_trainable(not frozen)
            return changed

        return TrainingPlan(config=cfg, class_names=list(ds.class_names), normalize=normalize, dataset=train_images,
                            loss=loss, iters_per_epoch=iters, validate=validate, extra=extra,
                            files=split_files(ds, tr_idx, val_src, val_idx),
                            optimizer=lambda model: _optimizer(t, model), lr_factor=phase_schedule(t, iters),
                            on_epoch=on_epoch, epoch_info=lambda e: {"phase": "head" if e < t.freeze_backbone_epochs else "all"},
                            nonfinite_hint="lower train.lr or check the images (NaN/Inf pixels?)")
