"""Training of ``task: classify``: a ResNet, optionally the head alone first.

Transfer learning: for ``freeze_backbone_epochs: N`` the trunk is frozen (weights and BatchNorm
statistics) and only the head trains for N epochs; then the whole network trains at
``lr * unfreeze_lr_factor``. Each phase has its own schedule (cosine with optional warm-up, or
one-cycle). The run folder is the instance task's: ``config.yaml``, ``checkpoint_last.pt``
(resumable), ``model_best.pt`` (best validation ``train.monitor``, with the per-class thresholds
tuned on the validation images), ``history.jsonl``, ``tb/``, plus ``split.json`` (the Ids of
each subset) and ``val.csv`` (the validation images as a labels CSV, usable as ``--gt``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from morphoscope.classify.config import ClassifyConfig
from morphoscope.classify.data import (ClassificationImages, channel_stats, check_channels,
                                       datasets_from_config)
from morphoscope.classify.metrics import classification_metrics, summary, tune_thresholds
from morphoscope.classify.model import ResNetClassifier, build_model, imagenet_stats
from morphoscope.config import config_to_dict
from morphoscope.errors import ConfigError, InputError
from morphoscope.io.atomic import atomic_write
from morphoscope.training import distributed as dist
from morphoscope.training.engine import check_finite, optimizer_step, warmup_cosine


def phase_schedule(t, iters: int):
    """LR multiplier of iteration ``it``: the head-only phase and the whole-network phase each get
    their own warm-up/cosine or one-cycle curve; the second is scaled by ``unfreeze_lr_factor``."""
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


def _optimizer(t, model: ResNetClassifier):
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


def train_step(model, batch, criterion, optimizer, *, device, scaler=None, grad_clip=None,
               where: str = "") -> float:
    """One optimisation step on ``batch`` = (inputs, targets); returns the loss."""
    x, y = batch
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    with torch.autocast(device_type=device.type, enabled=scaler is not None):
        loss = criterion(model(x).float(), y)
    value = float(dist.reduce_dict({"loss": loss.detach()})["loss"])
    check_finite(value, {"loss": value}, where=where or "a training step",
                 hint="lower train.lr or check the images (NaN/Inf pixels?)")
    optimizer_step(loss, optimizer, scaler=scaler, grad_clip=grad_clip)
    return value


def _write_split(run_dir: Path, ds, tr_idx, val_ds, val_idx) -> None:
    split = {"train": [ds.samples[i].id for i in tr_idx],
             "val": [val_ds.samples[i].id for i in val_idx],
             "val_source": str(val_ds.source)}
    with atomic_write(run_dir / "split.json", mode="w") as fh:
        json.dump(split, fh, indent=1)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Id", "Target", "Dir"])
    channels = val_ds.channels
    for i in val_idx:
        s = val_ds.samples[i]
        f = s.files[0]
        stem = f.stem[: -len(channels[0]) - 1] if channels else f.stem
        w.writerow([stem, " ".join(map(str, s.labels)), str(f.parent.resolve())])
    with atomic_write(run_dir / "val.csv", mode="w") as fh:
        fh.write(buf.getvalue())


def train(cfg: ClassifyConfig, *, out=None, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train a classifier; returns the run folder (see the module docstring)."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from morphoscope.models.registry import save_checkpoint
    from morphoscope.training.run import prepare_run_dir, seed_everything, setup_process

    t = cfg.train
    rank, world, local, device = setup_process(t)

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

    run_dir = prepare_run_dir(cfg, out, resume=resume, overwrite=overwrite)
    seed_everything(t.seed)
    ckpt = None
    if resume:
        ckpt = torch.load(run_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    norm_mode = cfg.data.normalization
    if norm_mode == "auto":
        norm_mode = "imagenet" if pretrained else "dataset"
    if ckpt is not None:
        normalize = ckpt["normalize"]
    else:
        mean, std = (imagenet_stats(in_ch) if norm_mode == "imagenet" else
                     channel_stats(ds, tr_idx, in_channels=in_ch, intensity=cfg.data.intensity, seed=t.seed))
        normalize = {"intensity": cfg.data.intensity, "mean": mean, "std": std, "source": norm_mode}
    if dist.is_main() and not resume:
        _write_split(run_dir, ds, tr_idx, val_src, val_idx)

    iters = t.iters_per_epoch or max(1, math.ceil(len(tr_idx) / (t.batch_size * world)))
    common = dict(in_channels=in_ch, image_size=cfg.data.image_size, intensity=cfg.data.intensity,
                  mean=normalize["mean"], std=normalize["std"], multi_label=multi,
                  cache=cfg.data.cache_images)
    train_images = ClassificationImages(ds, tr_idx, augment=cfg.augment, shuffle=True, seed=t.seed,
                                        length=iters * t.batch_size * world, **common)
    val_images = ClassificationImages(val_src, val_idx, augment=None, **common)
    sampler = DistributedSampler(train_images, shuffle=False) if world > 1 else None
    loader = DataLoader(train_images, batch_size=t.batch_size, sampler=sampler, shuffle=False,
                        num_workers=t.workers, pin_memory=device.type == "cuda", drop_last=False)
    val_loader = DataLoader(val_images, batch_size=t.batch_size, shuffle=False, num_workers=t.workers)

    bare = build_model(cfg, k).to(device)
    criterion = make_loss(cfg, ds.subset(tr_idx).label_matrix(), device)
    opt = _optimizer(t, bare)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, phase_schedule(t, iters))
    scaler = torch.amp.GradScaler("cuda") if (t.amp and device.type == "cuda") else None
    start_epoch, best, history = 0, None, []
    if ckpt is not None:
        bare.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best, history = ckpt["epoch"] + 1, ckpt.get("best"), ckpt.get("history", [])

    writer = None
    if dist.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_epoch * iters if resume else None)
    cfg_dict = config_to_dict(cfg)
    base_extra = {"channel_mean": normalize["mean"], "channel_std": normalize["std"], "in_channels": in_ch,
                  "image_size": cfg.data.image_size, "head": cfg.model.head, "channels": cfg.data.channels,
                  "split": {"train": int(len(tr_idx)), "val": int(len(val_idx))}}
    model, phase = bare, None
    for epoch in range(start_epoch, t.epochs):
        frozen = epoch < t.freeze_backbone_epochs
        if frozen != phase:
            bare.set_backbone_trainable(not frozen)
            if world > 1:  # DDP registers the trainable parameters when wrapping
                model = torch.nn.parallel.DistributedDataParallel(
                    bare, device_ids=[local] if device.type == "cuda" else None)
            phase = frozen
        torch.manual_seed(t.seed * 100_003 + epoch)
        train_images.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        bar = None
        if progress and dist.is_main():
            from tqdm import tqdm

            bar = tqdm(total=len(loader), desc=f"epoch {epoch}{' (head)' if frozen else ''}", unit="it",
                       dynamic_ncols=True, mininterval=2)
        t0, total, n = time.time(), 0.0, 0
        for it, batch in enumerate(loader):
            loss = train_step(model, batch, criterion, opt, device=device, scaler=scaler,
                              grad_clip=t.grad_clip, where=f"epoch {epoch}, iteration {it}")
            sched.step()
            total, n = total + loss, n + 1
            if writer is not None:
                step = sched.last_epoch
                writer.add_scalar("train/loss", loss, step)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
                bar.update()
        if bar is not None:
            bar.close()
        record = {"epoch": epoch, "phase": "head" if frozen else "all",
                  "train": {"loss": total / max(n, 1), "lr": opt.param_groups[0]["lr"],
                            "seconds": time.time() - t0}}
        last = epoch + 1 == t.epochs
        if dist.is_main() and ((epoch + 1) % t.val_every == 0 or last):
            val_loss, probs, targets = evaluate_loader(bare, val_loader, criterion, device, multi_label=multi)
            y_true = targets if multi else np.eye(k, dtype=np.int64)[targets]
            m = classification_metrics(y_true, probs, class_names=ds.class_names, multi_label=multi,
                                       default_threshold=t.default_threshold)
            record["val"] = {"loss": val_loss, **summary(m)}
            for key, v in record["val"].items():
                if isinstance(v, float):
                    writer.add_scalar(f"val/{key}", v, epoch)
            score = -val_loss if t.monitor == "loss" else m[t.monitor]
            if best is None or score > best:
                best = score
                thresholds, tuned = None, None
                if multi:
                    thresholds = [t.default_threshold] * k
                    if t.tune_thresholds:
                        thresholds, tuned = tune_thresholds(y_true, probs, default=t.default_threshold)
                mt = classification_metrics(y_true, probs, thresholds=thresholds, class_names=ds.class_names,
                                            multi_label=multi)
                metrics = {"epoch": epoch, "val_loss": val_loss, **summary(m),
                           **({f"{key}_tuned": v for key, v in summary(mt).items()} if tuned else {}),
                           "train_images": int(len(tr_idx)), "val_images": int(len(val_idx))}
                record["best"] = True
                save_checkpoint(run_dir / "model_best.pt", task="classify", model=bare, config=cfg_dict,
                                class_names=ds.class_names, normalize=normalize, metrics=metrics,
                                extra={**base_extra, "thresholds": thresholds, "thresholds_tuned": tuned,
                                       "val_metrics": mt, "val_metrics_default_threshold": m})
        history.append(record)
        if dist.is_main():
            if (epoch + 1) % t.checkpoint_every == 0 or last:
                save_checkpoint(run_dir / "checkpoint_last.pt", task="classify", model=bare, config=cfg_dict,
                                class_names=ds.class_names, normalize=normalize, extra=base_extra,
                                metrics=record.get("val", {}), optimizer=opt.state_dict(),
                                scheduler=sched.state_dict(), scaler=scaler.state_dict() if scaler else None,
                                epoch=epoch, best=best, history=history)
            with open(run_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            line = f"epoch {epoch}{' (head only)' if frozen else ''}: loss {record['train']['loss']:.4f} " \
                   f"({record['train']['seconds']:.0f} s)"
            if "val" in record:
                line += "  val " + "  ".join(f"{key} {v:.4f}" for key, v in record["val"].items()
                                              if isinstance(v, float))
            print(line, flush=True)
        dist.barrier()
    if writer is not None:
        writer.close()
    dist.cleanup()
    return run_dir

