"""The semantic task: FPN / U-Net pixel classes (segmentation-models-pytorch), objects by
connected components or a seeded watershed, in 2D images and the planes of 3D / 3D+t stacks.

Prediction runs the network on each block window of the engine and cuts the window's objects
out of its class probabilities; the engine keeps each object once, in the block that owns its
centre. With ``keep_maps`` the probabilities stay with the result, so a new probability
threshold re-makes the objects without running the network again (the web app's slider).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from morphoscope.engine.objects import Objects
from morphoscope.engine.task import BlockOutput, Inference, Task, TrainingPlan, Validation
from morphoscope.errors import InputError
from morphoscope.tasks.semantic.config import SemanticConfig


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(h, w) or (h, w, C) float -> (channels, h, w), grey repeated, clipped to -1..3."""
    if x.ndim == 2:
        x = x[..., None]
    c = x.shape[-1]
    if c == 1 and channels != 1:
        x = np.repeat(x, channels, axis=-1)
    elif c == 4 and channels == 3:
        x = x[..., :3]  # RGBA: alpha is not image data
    elif c != channels:
        raise InputError(f"image has {c} channels, the model expects {channels} (model.in_channels)")
    return np.ascontiguousarray(np.clip(x, -1.0, 3.0).transpose(2, 0, 1))


def _pad32(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "constant")
    return x, h, w


class SemanticInference(Inference):
    threshold_kind = "probability"

    def __init__(self, bundle, *, threshold: float | None = None, method: str | None = None,
                 seed_threshold: float | None = None, min_size: int | None = None, block_size: int | None = None,
                 block_margin: int | None = None, batch_size: int | None = None, keep_maps: bool = False):
        super().__init__(bundle)
        cfg = bundle.cfg
        post = cfg.postprocess
        self.cfg = cfg
        default = bundle.extra.get("threshold", post.threshold)
        self.threshold = float(default if threshold is None else threshold)
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold must be between 0 and 1, got {self.threshold}")
        self.method = method or post.method
        if self.method not in ("watershed", "components"):
            raise InputError(f"unknown instance method '{self.method}' (watershed or components)")
        self.seed_threshold = float(post.seed_threshold if seed_threshold is None else seed_threshold)
        self.min_size = int(post.min_size if min_size is None else min_size)
        if not 0 < self.seed_threshold < 1 or self.min_size < 0:
            raise InputError(f"invalid post-processing setting(s): seed threshold {self.seed_threshold}, "
                             f"min size {self.min_size}")
        inf = cfg.inference
        self.block_size = int(block_size or inf.block_size) // 32 * 32 or 32
        self.block_margin = int(inf.block_margin if block_margin is None else block_margin)
        self.batch_size = int(batch_size or inf.batch_size)
        self.keep_maps = keep_maps
        self.in_channels = cfg.model.in_channels
        #: percentiles over a whole stack rather than per plane (``data.normalize.per: stack``)
        self.per_stack = bundle.normalize.get("per") == "stack"

    def prepare(self, window, stats):
        x = (window.astype(np.float32) - np.float32(stats["low"])) / np.float32(max(stats["high"] - stats["low"], 1e-6))
        return to_channels(x, self.in_channels)

    @torch.inference_mode()
    def network(self, batch: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Class probabilities (K+1, h, w) and the extra map (h, w) or None of each window."""
        from morphoscope.tasks.semantic.model import split_outputs

        model = self.bundle.model
        model.eval()
        out = []
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(batch):
            groups.setdefault(x.shape, []).append(i)
        results: dict[int, tuple] = {}
        for shape, idx in groups.items():  # windows of one size go through together
            t = torch.from_numpy(np.stack([batch[i] for i in idx])).to(self.device)
            tp, h, w = _pad32(t)
            probs, aux = split_outputs(model(tp)[..., :h, :w], self.cfg.model, self.cfg.num_classes)
            probs = probs.cpu().numpy()
            aux = None if aux is None else aux.cpu().numpy()
            for j, i in enumerate(idx):
                results[i] = (probs[j], None if aux is None else aux[j])
        for i in range(len(batch)):
            out.append(results[i])
        return out

    def run(self, batch):
        outs = []
        for probs, aux in self.network(batch):
            objs = self.objects(probs, aux, self.threshold)
            maps = None
            if self.keep_maps:
                maps = (probs if aux is None else np.concatenate([probs, aux[None]])).astype(np.float16)
            outs.append(BlockOutput(objects=objs, maps=maps))
        return outs

    def objects(self, probs, aux, threshold, **override) -> Objects:
        from morphoscope.tasks.semantic.postprocess import instances_from_probs

        s = {"method": self.method, "seed_threshold": self.seed_threshold, "min_size": self.min_size, **override}
        labels, classes, scores = instances_from_probs(probs, aux, kind=self.cfg.model.output, threshold=threshold, **s)
        return Objects.from_labels(labels, classes=classes, scores=scores)

    def split_maps(self, maps):
        k = self.cfg.num_classes + 1
        maps = maps.astype(np.float32)
        return maps[:k], (maps[k] if maps.shape[0] > k else None)

    def remake(self, maps, threshold):
        return self.objects(*self.split_maps(maps), threshold)

    def settings(self):
        return {**super().settings(), "method": self.method, "seed_threshold": self.seed_threshold,
                "min_size": self.min_size}


class SemanticTask(Task):
    name = "semantic"
    config_schema = SemanticConfig
    description = "FPN / U-Net pixel classes, objects by watershed (2D, and planes of 3D+t stacks)"

    def build_model(self, cfg, class_names):
        from morphoscope.tasks.semantic.model import build_model

        return build_model(cfg.model, cfg.num_classes, load_weights=False)

    def initial_model(self, cfg, class_names):
        from morphoscope.tasks.semantic.model import build_model

        return build_model(cfg.model, cfg.num_classes)

    def inference(self, bundle, **options):
        return SemanticInference(bundle, **options)

    def predict_options(self):
        return {"threshold": "foreground probability threshold (default from the model)",
                "method": "watershed or components",
                "seed_threshold": "watershed seeds: boundary probability below / distance above this",
                "min_size": "objects smaller than this (pixels) are removed",
                "keep_maps": "keep the class probabilities with the results (and write NAME_prob.tif)"}

    def training_plan(self, cfg, *, seed, world):
        from morphoscope.tasks.semantic.data import SemanticCropDataset, collate
        from morphoscope.tasks.semantic.model import semantic_loss

        t = cfg.train
        train_planes = load_split(cfg.data.train, cfg, fraction=cfg.data.fraction, seed=seed)
        val_planes = load_split(cfg.data.val, cfg, limit=t.val_max_images) if cfg.data.val else None
        iters = t.iters_per_epoch or max(1, len(train_planes) // (t.batch_size * world))
        crops = SemanticCropDataset(train_planes, crop_size=t.crop_size, length=iters * t.batch_size * world,
                                    augment=cfg.augment, seed=seed, aux=cfg.model.output,
                                    boundary_width=cfg.model.boundary_width)
        normalize = cfg.data.normalize.model_dump()
        class_names = list(cfg.data.classes)
        extra = {"threshold": cfg.postprocess.threshold, "output": cfg.model.output,
                 "in_channels": cfg.model.in_channels}

        def loss(model, batch, device):
            images, target = batch
            images = images.to(device, non_blocking=True)
            target = {k: v.to(device, non_blocking=True) for k, v in target.items()}
            return semantic_loss(model(images), target, cfg.model, cfg.loss, cfg.num_classes)

        validate = None
        if val_planes is not None:
            def validate(model, device):
                from morphoscope.engine.bundle import ModelBundle

                bundle = ModelBundle(name=cfg.name, task=self, model=model, class_names=class_names, cfg=cfg,
                                     normalize=normalize, extra=extra, device=device)
                m = validate_planes(bundle, val_planes)
                return Validation(m, score=m["f1@0.5"] + 1e-3 * m["iou"])  # IoU breaks ties

        return TrainingPlan(config=cfg, class_names=class_names, normalize=normalize, dataset=crops,
                            collate=collate, loss=loss, iters_per_epoch=iters, validate=validate, extra=extra,
                            nonfinite_hint="lower train.lr, raise train.warmup_iters, or check the labels")


def load_split(path, cfg, *, fraction: float = 1.0, seed: int = 0, limit: int | None = None):
    """Normalised planes of a dataset folder (``fraction`` of its samples drawn with ``seed``;
    the first ``limit`` samples)."""
    from morphoscope.tasks.semantic.data import list_samples, load_planes

    samples = list_samples(path)
    if limit is not None:
        samples = samples[:limit]
    if fraction < 1.0:
        n = max(1, int(math.ceil(fraction * len(samples))))
        pick = np.sort(np.random.default_rng(seed).permutation(len(samples))[:n])
        samples = [samples[i] for i in pick]
    planes = []
    for s in samples:
        planes += load_planes(s, data_cfg=cfg.data, in_channels=cfg.model.in_channels,
                              num_classes=cfg.num_classes)
    return planes


def validate_planes(bundle, planes, **options) -> dict:
    """Pixel metrics (IoU, Dice, mean IoU, accuracy) and instance matching at IoU 0.5 of
    normalised training planes, predicted through the engine."""
    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.metrics.matching import match, matching_stats
    from morphoscope.metrics.semantic import semantic_scores

    cfg = bundle.cfg
    predictor = Predictor(bundle, keep_maps=True, **options)
    inputs = [PlaneInput(p.name, np.ascontiguousarray(np.moveaxis(p.image, 0, -1)), stats={"low": 0.0, "high": 1.0})
              for p in planes]
    pairs, matchings = [], []
    was_training = bundle.model.training
    for p, (_, res) in zip(planes, predictor.run(inputs)):
        if isinstance(res, BaseException):
            raise res
        labels, _ = res.objects.to_labels()
        probs = res.maps[: cfg.num_classes + 1].astype(np.float32)
        fg = (1 - probs[0]) >= predictor.inference.threshold
        pairs.append((p.classes, np.where(fg, probs[1:].argmax(0) + 1, 0)))
        matchings.append(match(p.instances, labels, thresholds=(0.5,)))
    if was_training:
        bundle.model.train()
    sem = semantic_scores(pairs, cfg.num_classes + 1, cfg.data.classes)
    st = matching_stats(matchings, thresholds=(0.5,))["0.5"]
    return {"iou": sem["iou"] or 0.0, "dice": sem["dice"] or 0.0, "miou": sem["miou"] or 0.0,
            "pixel_accuracy": sem["pixel_accuracy"] or 0.0, "f1@0.5": st["f1"],
            "precision@0.5": st["precision"], "recall@0.5": st["recall"], "ap@0.5": st["ap"],
            "images": len(planes)}
