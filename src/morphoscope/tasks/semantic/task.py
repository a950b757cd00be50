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


#: the size head's votes: histogram of log2(diameter / model diameter) over these bin edges
SIZE_BINS = np.linspace(-4.0, 4.0, 161)
#: the dihedral transforms of test-time augmentation: (flip left-right, number of 90° turns)
TTA_TRANSFORMS = {1: [(False, 0)], 2: [(False, 0), (True, 0)], 4: [(False, 0), (True, 0), (False, 2), (True, 2)],
                  8: [(f, k) for f in (False, True) for k in range(4)]}


class SemanticInference(Inference):
    threshold_kind = "probability"

    def __init__(self, bundle, *, threshold: float | None = None, method: str | None = None,
                 seed_threshold: float | None = None, min_size: int | None = None, block_size: int | None = None,
                 block_margin: int | None = None, batch_size: int | None = None, keep_maps: bool = False,
                 distance_threshold: float | None = None, seeds: str | None = None, tta: int | None = None,
                 features: bool = False, volume: bool | None = None, seed_h: float | None = None,
                 min_volume: int | None = None):
        super().__init__(bundle)
        cfg = bundle.cfg
        post = cfg.postprocess
        self.cfg = cfg
        tuned = bundle.extra.get("postprocess") or {}
        default = bundle.extra.get("threshold", post.threshold)
        self.threshold = float(default if threshold is None else threshold)
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold must be between 0 and 1, got {self.threshold}")
        self.method = method or post.method
        if self.method not in ("watershed", "components"):
            raise InputError(f"unknown instance method '{self.method}' (watershed or components)")
        self.seed_threshold = float(post.seed_threshold if seed_threshold is None else seed_threshold)
        self.distance_threshold = float(tuned.get("distance_threshold", post.distance_threshold)
                                        if distance_threshold is None else distance_threshold)
        self.seeds = seeds or tuned.get("seeds", post.seeds)
        self.min_size = int(post.min_size if min_size is None else min_size)
        if not 0 < self.seed_threshold < 1 or self.min_size < 0 or not 0 < self.distance_threshold < 1:
            raise InputError(f"invalid post-processing setting(s): seed threshold {self.seed_threshold}, "
                             f"distance threshold {self.distance_threshold}, min size {self.min_size}")
        if self.seeds not in ("boundary", "distance", "both"):
            raise InputError(f"seeds must be boundary, distance or both, got '{self.seeds}'")
        self.tta = int(bundle.extra.get("tta", 1) if tta is None else tta)
        if self.tta not in TTA_TRANSFORMS:
            raise InputError(f"tta must be 1, 2, 4 or 8 (transforms averaged), got {self.tta}")
        inf = cfg.inference
        self.use_windows(inf, block_size=block_size, block_margin=block_margin, batch_size=batch_size)
        self.block_size = self.block_size // 32 * 32  # the FPN's input must divide by 32
        #: stacks with Z: 3D objects from the stacked maps (:meth:`merge_stack`), which needs the
        #: planes' maps; they are dropped after merging unless asked for (``keep_maps``)
        self.volume = bool(getattr(post, "volume", False) if volume is None else volume)
        self.seed_h = float(getattr(post, "seed_h", 2.0) if seed_h is None else seed_h)
        self.min_volume = int(getattr(post, "min_volume", 20) if min_volume is None else min_volume)
        if not self.seed_h > 0 or self.min_volume < 0:
            raise InputError(f"invalid 3D post-processing setting(s): seed h {self.seed_h}, "
                             f"min volume {self.min_volume}")
        self.user_keep_maps = keep_maps
        self.keep_maps = keep_maps or self.volume
        self.in_channels = cfg.model.in_channels
        #: percentiles over a whole stack rather than per plane (``data.normalize.per: stack``)
        self.per_stack = bundle.normalize.get("per") == "stack"
        self.per_channel = bool(bundle.normalize.get("per_channel"))
        self.ood = bundle.extra.get("ood")
        #: pool the encoder's deepest features of each window (the out-of-distribution check)
        self.features = features or bool(self.ood)

    def statistics(self, sample):
        if not self.per_channel or sample.ndim == 2 or self.per_stack:
            return super().statistics(sample)
        from morphoscope.tasks.semantic.data import channel_percentiles, is_grey

        norm = self.bundle.normalize
        if is_grey(sample):
            return super().statistics(sample[..., 0])
        lo, hi = channel_percentiles(sample, norm.get("low", 1.0), norm.get("high", 99.8))
        return {"low": lo.tolist(), "high": hi.tolist()}

    def prepare(self, window, stats):
        if window.ndim == 3 and window.shape[-1] == 4:
            window = window[..., :3]  # RGBA: alpha is not image data
        lo = np.asarray(stats["low"], np.float32)
        hi = np.asarray(stats["high"], np.float32)
        if lo.ndim and window.ndim == 2:
            lo, hi = lo[:1], hi[:1]
            window = window[..., None]
        x = (window.astype(np.float32) - lo) / np.maximum(hi - lo, np.float32(1e-6))
        return to_channels(x, self.in_channels)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of a batch, and the encoder's deepest features pooled per window (or None)."""
        model = self.bundle.model
        if not self.features or not hasattr(model, "encoder"):
            return model(x), None
        feats = model.encoder(x)
        logits = model.segmentation_head(model.decoder(feats))
        return logits, feats[-1].float().mean((2, 3))

    def _tta_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of each dihedral transform, mapped back (the caller averages the probabilities),
        and the pooled features of the untransformed window."""
        outs, pooled = [], None
        for i, (flip, k) in enumerate(TTA_TRANSFORMS[self.tta]):
            t = torch.flip(x, (-1,)) if flip else x
            t = torch.rot90(t, k, (-2, -1)) if k else t
            t, h, w = _pad32(t)
            y, f = self._forward(t)
            y = y[..., :h, :w]
            y = torch.rot90(y, -k, (-2, -1)) if k else y
            y = torch.flip(y, (-1,)) if flip else y
            outs.append(y)
            if i == 0:  # the image as it is: the out-of-distribution check does not depend on TTA
                pooled = f
        return outs, pooled

    @torch.inference_mode()
    def network(self, batch: list[np.ndarray], *, extras: list | None = None
                ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Class probabilities (K+1, h, w) and the extra map(s) or None of each window; with
        ``extras`` (a list) also fills one ``{"size": map or None, "features": vector or None}`` per
        window."""
        from morphoscope.tasks.semantic.model import size_output, split_outputs

        model = self.bundle.model
        model.eval()
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(batch):
            groups.setdefault(x.shape, []).append(i)
        results: dict[int, tuple] = {}
        more: dict[int, dict] = {}
        for shape, idx in groups.items():  # windows of one size go through together
            t = torch.from_numpy(np.stack([batch[i] for i in idx])).to(self.device)
            outs, pooled = self._tta_logits(t)
            probs = aux = size = None
            for y in outs:
                p, a = split_outputs(y, self.cfg.model, self.cfg.num_classes)
                z = size_output(y, self.cfg.model, self.cfg.num_classes)
                probs = p if probs is None else probs + p
                aux = a if aux is None else aux + a
                size = z if size is None or z is None else size + z
            n = len(outs)
            probs = (probs / n).cpu().numpy()
            aux = None if aux is None else (aux / n).cpu().numpy()
            size = None if size is None else (size / n).cpu().numpy()
            pooled = None if pooled is None else pooled.cpu().numpy()
            for j, i in enumerate(idx):
                results[i] = (probs[j], None if aux is None else aux[j])
                more[i] = {"size": None if size is None else size[j],
                           "features": None if pooled is None else pooled[j]}
        if extras is not None:
            extras.extend(more[i] for i in range(len(batch)))
        return [results[i] for i in range(len(batch))]

    def run(self, batch):
        outs = []
        extras: list = []
        for (probs, aux), more in zip(self.network(batch, extras=extras), extras):
            objs = self.objects(probs, aux, self.threshold)
            maps = None
            if self.keep_maps:
                parts = [probs] if aux is None else [probs, aux.reshape(-1, *aux.shape[-2:])]
                maps = np.concatenate(parts).astype(np.float16)
            outs.append(BlockOutput(objects=objs, maps=maps, summary=self._summary(probs, more)))
        return outs

    def _summary(self, probs, more) -> dict | None:
        out = {}
        if more["size"] is not None:
            fg = 1.0 - probs[0]
            z = more["size"]
            # each object's pixels vote for its size; weighting by 1 / area makes it one vote per object
            w = fg * np.exp2(-2.0 * np.clip(z, SIZE_BINS[0], SIZE_BINS[-1]))
            keep = fg >= self.threshold
            hist, _ = np.histogram(z[keep], bins=SIZE_BINS, weights=w[keep])
            out["size_votes"] = hist
        if more["features"] is not None:
            out["features"] = more["features"]
            out["pixels"] = int(probs.shape[-2] * probs.shape[-1])
        return out or None

    def object_diameter(self, objects, summaries):
        votes = [s["size_votes"] for s in summaries if "size_votes" in s]
        if not votes or self.diameter is None:
            return super().object_diameter(objects, summaries)
        hist = np.sum(votes, axis=0)
        total = hist.sum()
        if total <= 1e-6:
            return None
        cdf = np.cumsum(hist) / total
        i = int(np.searchsorted(cdf, 0.5))
        lo = SIZE_BINS[i]
        before = cdf[i - 1] if i else 0.0
        frac = (0.5 - before) / max(cdf[i] - before, 1e-9)
        d = float(self.diameter * 2.0 ** (lo + frac * (SIZE_BINS[1] - SIZE_BINS[0])))
        # the size head's bias, measured on validation images (extra.diameter_calibration)
        return d * float(self.bundle.extra.get("diameter_calibration", 1.0))

    def finish(self, objects, maps, class_scores, summaries=()):
        """The out-of-distribution check: the windows' pooled encoder features, averaged over the
        plane, against the training images' statistics stored with the model (``extra.ood``)."""
        feats = [(s["features"], s["pixels"]) for s in summaries if "features" in s]
        self.last_features = self.last_ood_score = None
        if not feats:
            return {}
        f = np.average(np.stack([v for v, _ in feats]), axis=0, weights=[n for _, n in feats])
        self.last_features = f  # the plane finished last (calibration of the check)
        if not self.ood:
            return {}
        score = ood_score(f, self.ood)
        self.last_ood_score = score
        if score <= self.ood["threshold"]:
            return {}
        return {"warnings": [f"this image looks unlike the images the model was trained on (out-of-distribution "
                             f"score {score:.2f}, above {self.ood['threshold']:.2f}, the largest on its validation "
                             "images): check its objects before trusting them"]}

    def objects(self, probs, aux, threshold, **override) -> Objects:
        from morphoscope.tasks.semantic.postprocess import instances_from_probs

        s = {"method": self.method, "seed_threshold": self.seed_threshold, "min_size": self.min_size,
             "distance_threshold": self.distance_threshold, "seeds": self.seeds, **override}
        labels, classes, scores = instances_from_probs(probs, aux, kind=self.cfg.model.output, threshold=threshold, **s)
        return Objects.from_labels(labels, classes=classes, scores=scores)

    def split_maps(self, maps):
        k = self.cfg.num_classes + 1
        maps = maps.astype(np.float32)
        if maps.shape[0] <= k:
            return maps[:k], None
        return maps[:k], (maps[k] if maps.shape[0] == k + 1 else maps[k:])

    def remake(self, maps, threshold):
        return self.objects(*self.split_maps(maps), threshold)

    # ---- 3D: one object per nucleus through Z ---------------------------------------------------
    def merge_stack(self, results, z_spacing_ratio=None):
        """With ``volume``: the planes of one time point (Z order) -> one 3D result whose objects
        come from the stacked probability maps (:mod:`morphoscope.tasks.semantic.volume`).
        Planes without maps (rescaled) have their 2D objects linked through Z by overlap
        (:func:`~morphoscope.engine.volume.stitch_planes`); without ``volume`` they are unchanged."""
        from morphoscope.engine.volume import drop_maps, stack_maps, stitch_planes, volume_result

        if not self.volume:
            return results
        maps = stack_maps(results)
        if len(results) < 2:  # a 2D image: nothing to merge
            return results if self.user_keep_maps else drop_maps(results)
        if maps is None:  # rescaled planes keep no maps: link their 2D objects through Z instead
            out = stitch_planes(results)
            out.warnings.append("the planes were rescaled, which keeps no probability maps: their 2D objects "
                                "were linked through Z by overlap (predict at the input's scale for the 3D "
                                "watershed)")
            return [out]
        ratio = float(z_spacing_ratio) if z_spacing_ratio else 1.0
        warnings = [] if z_spacing_ratio else [
            ("the Z spacing or pixel size is unknown: voxels were taken as cubes for the 3D objects (give "
             "--pixel-size and --z-spacing)")]

        def remake(m, threshold, _r=ratio):
            return self.volume_objects(m, threshold, _r)

        objects = self.volume_objects(maps, self.threshold, ratio)
        return [volume_result(results, objects, maps=maps if self.user_keep_maps else None,
                              remake=remake if self.user_keep_maps else None, warnings=warnings,
                              settings={"volume": True, "z_spacing_ratio": ratio, "seed_h": self.seed_h,
                                        "min_volume": self.min_volume})]

    def volume_objects(self, maps: np.ndarray, threshold: float, z_ratio: float) -> Objects:
        """3D objects of stacked maps ``(channels, Z, H, W)`` at ``threshold``."""
        from morphoscope.tasks.semantic.volume import volume_instances

        probs, aux = self.split_maps(maps)
        labels, classes, scores = volume_instances(
            probs, aux, kind=self.cfg.model.output, threshold=threshold, seeds=self.seeds, seed_h=self.seed_h,
            min_volume=self.min_volume, z_ratio=z_ratio, method=self.method)
        return Objects.from_labels(labels, classes=classes, scores=scores)

    def settings(self):
        out = {**super().settings(), "method": self.method, "seed_threshold": self.seed_threshold,
               "min_size": self.min_size}
        if self.cfg.model.output == "boundary+distance":
            out.update(distance_threshold=self.distance_threshold, seeds=self.seeds)
        if self.tta != 1:
            out["tta"] = self.tta
        if self.volume:
            out.update(volume=True, seed_h=self.seed_h, min_volume=self.min_volume)
        return out


def ood_score(features: np.ndarray, stats: dict) -> float:
    """Distance of an image's pooled encoder features from those of the training images: the
    Mahalanobis distance to the nearest group mean (e.g. per imaging modality; one shared
    within-group covariance: its top principal components plus an isotropic residual), per
    dimension (about 1 for a typical training image)."""
    means = np.asarray(stats["means"], np.float64).reshape(-1, len(stats["means"][0]))
    comps = np.asarray(stats["components"], np.float64)
    var = np.asarray(stats["variances"], np.float64)
    best = np.inf
    for mean in means:
        z = np.asarray(features, np.float64) - mean
        proj = comps @ z
        resid = max(float(z @ z - proj @ proj), 0.0)
        best = min(best, float(np.sum(proj ** 2 / var)) + resid / float(stats["residual"]))
    return float(np.sqrt(best / means.shape[1]))


def ood_statistics(features: np.ndarray, groups=None, *, components: int = 32) -> dict:
    """The training images' feature statistics :func:`ood_score` measures against (features: one
    row per image; ``groups``: one name per row, e.g. the modality)."""
    x = np.asarray(features, np.float64)
    groups = np.asarray(["all"] * len(x) if groups is None else list(groups))
    names = sorted(set(groups.tolist()))
    means = np.stack([x[groups == g].mean(0) for g in names])
    z = x - means[[names.index(g) for g in groups]]
    _, sv, vt = np.linalg.svd(z, full_matrices=False)
    n = max(len(x) - len(names), 1)
    k = min(components, len(sv) - 1)
    var = sv[:k] ** 2 / n + 1e-6
    resid = max(float(np.sum(sv[k:] ** 2) / n / max(x.shape[1] - k, 1)), 1e-6)
    return {"groups": names, "means": means.tolist(), "components": vt[:k].tolist(), "variances": var.tolist(),
            "residual": resid}


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

    def export_module(self, bundle):
        from morphoscope.tasks.semantic.export import export_spec

        return export_spec(bundle)

    def predict_options(self):
        return {"threshold": "foreground probability threshold (default from the model)",
                "method": "watershed or components",
                "seed_threshold": "watershed seeds: boundary probability below / distance above this",
                "distance_threshold": "watershed seeds (boundary+distance models): distance above this",
                "seeds": "boundary+distance models: seeds from boundary, distance or both",
                "min_size": "objects smaller than this (pixels) are removed",
                "tta": "test-time augmentation: average over 1, 2, 4 or 8 flips/rotations",
                "keep_maps": "keep the class probabilities with the results (and write NAME_prob.tif)",
                "volume": "stacks with Z: one 3D object per nucleus through Z (3D seeded watershed), not per plane",
                "seed_h": "volume: seeds are distance maxima at least this high (pixels) above their saddles",
                "min_volume": "volume: 3D objects smaller than this (voxels) are removed"}

    def training_plan(self, cfg, *, seed, world):
        from morphoscope.tasks.semantic.data import SemanticCropDataset, collate
        from morphoscope.tasks.semantic.model import semantic_loss

        t = cfg.train
        train_planes = load_split(cfg.data.train, cfg, fraction=cfg.data.fraction, seed=seed)
        val_planes = load_split(cfg.data.val, cfg, limit=t.val_max_images, per_group=True) if cfg.data.val else None
        iters = t.iters_per_epoch or max(1, len(train_planes) // (t.batch_size * world))
        crops = SemanticCropDataset(train_planes, crop_size=t.crop_size, length=iters * t.batch_size * world,
                                    augment=cfg.augment, seed=seed, aux=cfg.model.output,
                                    boundary_width=cfg.model.boundary_width, diameter=cfg.data.diameter,
                                    size_head=cfg.model.size_head, group_weights=cfg.data.group_weights,
                                    channels=cfg.model.in_channels)
        normalize = cfg.data.normalize.model_dump()
        class_names = list(cfg.data.classes)
        extra = {"threshold": cfg.postprocess.threshold, "output": cfg.model.output,
                 "in_channels": cfg.model.in_channels}
        if cfg.data.diameter is not None:
            extra["diameter"] = float(cfg.data.diameter)

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
                groups = [v for k, v in m.items() if k.startswith("f1@0.5/")]
                score = float(np.mean(groups)) if groups else m["f1@0.5"]  # each group counts the same
                return Validation(m, score=score + 1e-3 * m["iou"])  # IoU breaks ties

        return TrainingPlan(config=cfg, class_names=class_names, normalize=normalize, dataset=crops,
                            collate=collate, loss=loss, iters_per_epoch=iters, validate=validate, extra=extra,
                            nonfinite_hint="lower train.lr, raise train.warmup_iters, or check the labels")


def load_split(path, cfg, *, fraction: float = 1.0, seed: int = 0, limit: int | None = None,
               per_group: bool = False):
    """Normalised planes of a dataset folder or a list of data sources (``fraction`` of the
    samples drawn with ``seed``; the first ``limit`` samples, or with ``per_group`` at most
    ``limit`` samples of each group, evenly spaced)."""
    from morphoscope.tasks.semantic.data import load_planes, source_samples

    sources = path if isinstance(path, list) else [path]
    samples = [s for src in sources for s in source_samples(src)]
    if limit is not None:
        if per_group and any(s.group is not None for s in samples):
            groups: dict = {}
            for s in samples:
                groups.setdefault(s.group, []).append(s)
            samples = [g[int(i * len(g) / limit)] if len(g) > limit else g[i]
                       for g in groups.values() for i in range(min(limit, len(g)))]
        else:
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
    normalised training planes, predicted through the engine (each plane at the model's object
    diameter when the model records one, from the plane's annotated median diameter), with F1 per
    group (``f1@0.5/GROUP``) when the planes have groups."""
    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.metrics.matching import match, matching_stats
    from morphoscope.metrics.semantic import semantic_scores

    cfg = bundle.cfg
    known = bundle.extra.get("diameter") is not None
    predictor = Predictor(bundle, keep_maps=True, **({"diameter": "off"} if known else {}), **options)
    inputs = [PlaneInput(p.name, np.ascontiguousarray(np.moveaxis(p.image, 0, -1)), stats={"low": 0.0, "high": 1.0},
                         diameter=p.median_diameter if known else None)
              for p in planes]
    pairs, matchings = [], []
    by_group: dict = {}
    was_training = bundle.model.training
    for p, (_, res) in zip(planes, predictor.run(inputs)):
        if isinstance(res, BaseException):
            raise res
        labels, _ = res.objects.to_labels()
        m = match(p.instances, labels, thresholds=(0.5,))
        matchings.append(m)
        if p.group is not None:
            by_group.setdefault(p.group, []).append(m)
        if res.maps is not None:
            probs = res.maps[: cfg.num_classes + 1].astype(np.float32)
            fg = (1 - probs[0]) >= predictor.inference.threshold
            pairs.append((p.classes, np.where(fg, probs[1:].argmax(0) + 1, 0)))
        else:  # predicted at another scale: the maps are not on the plane's grid
            lab, index = res.objects.to_labels()
            pairs.append((p.classes, np.concatenate([[0], res.objects.classes[index]])[lab]))
    if was_training:
        bundle.model.train()
    sem = semantic_scores(pairs, cfg.num_classes + 1, cfg.data.classes)
    st = matching_stats(matchings, thresholds=(0.5,))["0.5"]
    out = {"iou": sem["iou"] or 0.0, "dice": sem["dice"] or 0.0, "miou": sem["miou"] or 0.0,
           "pixel_accuracy": sem["pixel_accuracy"] or 0.0, "f1@0.5": st["f1"],
           "precision@0.5": st["precision"], "recall@0.5": st["recall"], "ap@0.5": st["ap"],
           "images": len(planes)}
    for g, ms in sorted(by_group.items()):
        out[f"f1@0.5/{g}"] = matching_stats(ms, thresholds=(0.5,))["0.5"]["f1"]
    return out
