"""Training of semantic models (``task: semantic``), with the run-folder conventions of
:mod:`morphoscope.training.run`: ``config.yaml``, ``checkpoint_last.pt`` (resumable, same numbers),
``model_best.pt`` (best validation F1 at IoU 0.5 of the watershed instances; foreground IoU breaks
ties and is used when no instances are found), ``history.jsonl``, ``tb/``. Runs under ``torchrun``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from morphoscope.config import config_to_dict
from morphoscope.training import distributed as dist
from morphoscope.training.engine import check_finite, optimizer_step, warmup_cosine


def load_split(path, cfg, *, fraction: float = 1.0, seed: int = 0, limit: int | None = None):
    """Planes of a dataset folder (``fraction`` of its samples, drawn with ``seed``; the first
    ``limit`` samples)."""
    from morphoscope.semantic.data import list_samples, load_planes

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


def validate(model, planes, cfg, *, device, max_images: int | None = None, post=None) -> dict:
    """Pixel metrics (IoU, Dice, mIoU, accuracy) and instance matching at IoU 0.5 on whole planes."""
    from morphoscope.metrics.matching import match, matching_stats
    from morphoscope.metrics.semantic import semantic_scores
    from morphoscope.semantic.infer import predict_plane
    from morphoscope.semantic.postprocess import instances_from_probs

    post = post or cfg.postprocess
    planes = planes[:max_images] if max_images else planes
    pairs, matchings = [], []
    was_training = model.training
    model.eval()
    for p in planes:
        probs, aux = predict_plane(model, p.image, cfg.model, cfg.num_classes, tile_size=post.tile_size,
                                   overlap=post.tile_overlap, device=device)
        labels, _, _ = instances_from_probs(probs, aux, kind=cfg.model.output, method=post.method,
                                            threshold=post.threshold, seed_threshold=post.seed_threshold,
                                            min_size=post.min_size)
        fg = (1 - probs[0]) >= post.threshold
        pred_cls = np.where(fg, probs[1:].argmax(0) + 1, 0)
        pairs.append((p.classes, pred_cls))
        matchings.append(match(p.instances, labels, thresholds=(0.5,)))
    if was_training:
        model.train()
    sem = semantic_scores(pairs, cfg.num_classes + 1, cfg.data.classes)
    st = matching_stats(matchings, thresholds=(0.5,))["0.5"]
    return {"iou": sem["iou"] or 0.0, "dice": sem["dice"] or 0.0, "miou": sem["miou"] or 0.0,
            "pixel_accuracy": sem["pixel_accuracy"] or 0.0, "f1@0.5": st["f1"],
            "precision@0.5": st["precision"], "recall@0.5": st["recall"], "ap@0.5": st["ap"],
            "images": len(planes)}


def build_optimizer(model, t):
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


def train(cfg, *, out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True, trial=None, max_steps: int | None = None) -> Path:
    """Train a semantic model; returns the run folder (see module docstring).

    ``trial`` (Optuna) gets the validation score after each validation and may prune the run;
    ``max_steps`` stops after that many optimiser steps (tests, smoke runs).
    """
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from morphoscope.models.registry import save_checkpoint
    from morphoscope.semantic.data import SemanticCropDataset, collate
    from morphoscope.semantic.model import build_model
    from morphoscope.training.run import prepare_run_dir, seed_everything, setup_process

    t = cfg.train
    rank, world, local, device = setup_process(t)
    run_dir = prepare_run_dir(cfg, out, resume=resume, overwrite=overwrite)
    if not resume and dist.is_main():  # --overwrite starts afresh: no stale history, logs or models
        import shutil

        for stale in ("history.jsonl", "model_best.pt", "checkpoint_last.pt"):
            (run_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
    seed_everything(t.seed)

    train_planes = load_split(cfg.data.train, cfg, fraction=cfg.data.fraction, seed=t.seed)
    val_planes = load_split(cfg.data.val, cfg, limit=t.val_max_images) if cfg.data.val else None
    iters = t.iters_per_epoch or max(1, len(train_planes) // (t.batch_size * world))
    crops = SemanticCropDataset(train_planes, crop_size=t.crop_size, length=iters * t.batch_size * world,
                                augment=cfg.augment, seed=t.seed, aux=cfg.model.output,
                                boundary_width=cfg.model.boundary_width)
    sampler = DistributedSampler(crops, shuffle=False) if world > 1 else None
    loader = DataLoader(crops, batch_size=t.batch_size, sampler=sampler, shuffle=False, num_workers=t.workers,
                        collate_fn=collate, pin_memory=device.type == "cuda", drop_last=False)

    model = build_model(cfg.model, cfg.num_classes).to(device)
    if world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)
    bare = model.module if world > 1 else model
    opt = build_optimizer(model, t)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(t.epochs * iters, t.warmup_iters, t.min_lr_ratio))
    scaler = torch.amp.GradScaler("cuda") if (t.amp and device.type == "cuda") else None

    start_epoch, best, history = 0, (-1.0, -1.0), []
    if resume:
        ckpt = torch.load(run_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        bare.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, history = ckpt["epoch"] + 1, ckpt.get("history", [])
        best = tuple(ckpt.get("best", (-1.0, -1.0)))

    writer = None
    if dist.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_epoch * iters if resume else None)

    cfg_dict = config_to_dict(cfg)
    normalize = cfg.data.normalize.model_dump()
    extra = {"threshold": cfg.postprocess.threshold, "postprocess": cfg.postprocess.model_dump(),
             "output": cfg.model.output, "in_channels": cfg.model.in_channels}
    common = dict(task="semantic", model=bare, config=cfg_dict, class_names=cfg.data.classes,
                  normalize=normalize, extra=extra)
    steps = 0
    for epoch in range(start_epoch, t.epochs):
        torch.manual_seed(t.seed * 100_003 + epoch)
        crops.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        stats = _train_epoch(model, opt, sched, loader, device, cfg, epoch=epoch, scaler=scaler, writer=writer,
                             progress=progress, max_steps=None if max_steps is None else max_steps - steps)
        steps += stats.pop("steps")
        record = {"epoch": epoch, "train": stats}
        last = epoch + 1 == t.epochs or (max_steps is not None and steps >= max_steps)
        if dist.is_main() and val_planes is not None and ((epoch + 1) % t.val_every == 0 or last):
            record["val"] = validate(bare, val_planes, cfg, device=device, max_images=t.val_max_images)
            for k, v in record["val"].items():
                writer.add_scalar(f"val/{k}", v, epoch)
        history.append(record)
        if dist.is_main():
            metrics = record.get("val", {})
            score = (metrics.get("f1@0.5", -1.0), metrics.get("iou", -1.0))
            if "val" in record and score > best:
                best = score
                save_checkpoint(run_dir / "model_best.pt", metrics={**metrics, "epoch": epoch}, **common)
            if (epoch + 1) % t.checkpoint_every == 0 or last:
                save_checkpoint(run_dir / "checkpoint_last.pt", metrics=metrics, optimizer=opt.state_dict(),
                                scheduler=sched.state_dict(), scaler=scaler.state_dict() if scaler else None,
                                epoch=epoch, best=list(best), history=history, **common)
            with open(run_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            line = f"epoch {epoch}: loss {stats['loss']:.4f} ({stats['seconds']:.0f} s)"
            if "val" in record:
                line += "  val " + "  ".join(f"{k} {v:.4f}" for k, v in record["val"].items() if isinstance(v, float))
            if progress or "val" in record:
                print(line, flush=True)
        if trial is not None and "val" in record:
            trial.report(record["val"][_metric_key(cfg)], epoch)
            if trial.should_prune():
                import optuna

                if writer is not None:
                    writer.close()
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        dist.barrier()
        if last:
            break
    if writer is not None:
        writer.close()
    if dist.is_main() and val_planes is None and not (run_dir / "model_best.pt").exists():
        save_checkpoint(run_dir / "model_best.pt", metrics={}, **common)
    dist.cleanup()
    return run_dir


def _metric_key(cfg) -> str:
    return "f1@0.5" if cfg.tune.metric == "f1@0.5" else "iou"


def _train_epoch(model, opt, sched, loader, device, cfg, *, epoch, scaler, writer, progress, max_steps):
    from morphoscope.semantic.model import semantic_loss

    model.train()
    sums: dict[str, float] = {}
    n = 0
    bar = None
    if progress and dist.is_main():
        from tqdm import tqdm

        bar = tqdm(total=len(loader), desc=f"epoch {epoch}", unit="it", dynamic_ncols=True, mininterval=2)
    t0 = time.time()
    grad_clip = cfg.train.grad_clip
    for images, target in loader:
        if max_steps is not None and n >= max_steps:
            break
        images = images.to(device, non_blocking=True)
        target = {k: v.to(device, non_blocking=True) for k, v in target.items()}
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            logits = model(images)
        terms = semantic_loss(logits, target, cfg.model, cfg.loss, cfg.num_classes)
        loss = sum(terms.values())
        reduced = dist.reduce_dict({k: v.detach() for k, v in terms.items()})
        total = float(sum(reduced.values()))
        check_finite(total, reduced, where=f"epoch {epoch}, iteration {n}",
                     hint="lower train.lr, raise train.warmup_iters, or check the labels")
        optimizer_step(loss, opt, scaler=scaler, grad_clip=grad_clip)
        sched.step()
        n += 1
        for k, v in reduced.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["loss"] = sums.get("loss", 0.0) + total
        if writer is not None:
            step = sched.last_epoch
            for k, v in reduced.items():
                writer.add_scalar(f"train/{k}", float(v), step)
            writer.add_scalar("train/loss", total, step)
            writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
        if bar is not None:
            bar.set_postfix(loss=f"{total:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
            bar.update()
    if bar is not None:
        bar.close()
    out = {k: v / max(n, 1) for k, v in sums.items()}
    out["seconds"] = time.time() - t0
    out["steps"] = n
    return out
