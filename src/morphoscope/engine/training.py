"""The one training loop, for every task: warm-up + cosine schedule, AMP on CUDA, gradient
clipping, a clear stop on a non-finite loss, TensorBoard, checkpoints, exact ``--resume`` and
``torchrun`` (one process per GPU, any number of nodes).

Run folder: ``config.yaml`` (the config as trained), ``checkpoint_last.pt`` (resumable),
``model_best.pt`` (best validation score; the last weights when there is no validation set),
``history.jsonl`` (one line per epoch), ``tb/`` (TensorBoard) and any files the task adds (e.g. a
classifier's split). Determinism: every data item is drawn from (seed, epoch, index) and torch's
generator is re-seeded per epoch, so a resumed run continues with exactly the numbers the
uninterrupted run would have had.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from morphoscope.engine import distributed as dist
from morphoscope.errors import ConfigError, MorphoscopeError, OutputExistsError
from morphoscope.io.atomic import atomic_write
from morphoscope.models.checkpoint import pick_device, read_checkpoint, save_checkpoint

#: what a run writes; ``--overwrite`` (or a new run in a folder without checkpoints) clears them
RUN_FILES = ("config.yaml", "checkpoint_last.pt", "model_best.pt", "history.jsonl")
RUN_DIRS = ("tb",)


class NonFiniteLossError(MorphoscopeError):
    pass


def warmup_cosine(total_iters: int, warmup_iters: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear from 0.001 to 1 over ``warmup_iters``, then cosine to ``min_ratio``."""

    def factor(it: int) -> float:
        if it < warmup_iters:
            alpha = it / max(1, warmup_iters)
            return 0.001 * (1 - alpha) + alpha
        progress = min(1.0, (it - warmup_iters) / max(1, total_iters - warmup_iters))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def optimizer_step(loss, optimizer, *, scaler=None, grad_clip: float | None = None) -> None:
    """Backward pass and update: AMP loss scaling when ``scaler`` is given, gradient-norm
    clipping over the optimizer's parameters when ``grad_clip`` is set."""
    optimizer.zero_grad(set_to_none=True)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()


def check_finite(total: float, terms: dict, *, where: str, hint: str) -> None:
    """Stop with the loss terms and what to change when the loss is NaN or infinite."""
    if not math.isfinite(total):
        detail = ", ".join(f"{k}={float(v):.3g}" for k, v in terms.items())
        raise NonFiniteLossError(f"loss became {total} at {where} ({detail}); {hint}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_process(t) -> tuple[int, int, int, torch.device]:
    """torchrun (or single-process) set-up: process group, CPU threads (``t.threads``) and this
    process's device. Returns (rank, world, local rank, device)."""
    rank, world, local = dist.init()
    if getattr(t, "threads", None):
        torch.set_num_threads(t.threads)
    device = pick_device(t.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
    return rank, world, local, device


def _has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / f).is_file() for f in ("checkpoint_last.pt", "model_best.pt"))


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, a run folder that holds a trained model (unless ``overwrite``)
    or lacks one to resume from. A folder whose earlier run failed before its first checkpoint
    can be used again as it is."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError("run folder path exists and is not a folder", path=run_dir)
    if resume:
        if not (run_dir / "checkpoint_last.pt").is_file():
            raise ConfigError("--resume: no checkpoint_last.pt to resume from", path=run_dir)
    elif _has_checkpoint(run_dir) and not overwrite:
        raise OutputExistsError("run folder already has a trained model; pass --resume to continue it "
                                "or --overwrite to start again", path=run_dir)


def clear_run_dir(run_dir: Path, extra_files=()) -> None:
    """Remove what an earlier run wrote (never files morphoscope did not write)."""
    for name in (*RUN_FILES, *extra_files):
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for part in run_dir.glob(".*.part"):
        part.unlink(missing_ok=True)


def _default_optimizer(t, model):
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


def _wrap(model, world, device, local):
    if world <= 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)


def train_run(task, cfg, *, out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
              progress: bool = True, on_validation: Callable[[int, dict], None] | None = None,
              max_steps: int | None = None) -> Path:
    """Train ``cfg`` (a validated config of ``task``) into a run folder; returns the folder.

    ``on_validation(epoch, metrics)`` is called after each validation (Optuna uses it to prune);
    ``max_steps`` stops after that many optimiser steps (smoke runs, tests).
    """
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    t = cfg.train
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    rank, world, local, device = setup_process(t)
    seed_everything(t.seed)
    plan = task.training_plan(cfg, seed=t.seed, world=world)
    cfg = plan.config
    dist.barrier()  # every rank has checked and read its data before rank 0 writes
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            clear_run_dir(run_dir, plan.files)
        with atomic_write(run_dir / "config.yaml", mode="w") as fh:
            yaml.safe_dump(cfg.model_dump(mode="json"), fh, sort_keys=False)
        if not resume:
            for name, text in plan.files.items():
                with atomic_write(run_dir / name, mode="w") as fh:
                    fh.write(text)
    dist.barrier()

    iters = plan.iters_per_epoch
    sampler = DistributedSampler(plan.dataset, shuffle=False) if world > 1 else None
    loader = DataLoader(plan.dataset, batch_size=t.batch_size, sampler=sampler, shuffle=False,
                        num_workers=t.workers, collate_fn=plan.collate, pin_memory=device.type == "cuda",
                        drop_last=False, persistent_workers=False)
    bare = task.initial_model(cfg, plan.class_names).to(device)
    if world > 1 and device.type == "cuda":  # SyncBatchNorm exists for GPUs only
        bare = torch.nn.SyncBatchNorm.convert_sync_batchnorm(bare)
    opt = plan.optimizer(bare) if plan.optimizer else _default_optimizer(t, bare)
    factor = plan.lr_factor or warmup_cosine(t.epochs * iters, t.warmup_iters, t.min_lr_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    scaler = torch.amp.GradScaler("cuda") if (t.amp and device.type == "cuda") else None

    start_epoch, best, history = 0, None, []
    if resume:
        ckpt = read_checkpoint(run_dir / "checkpoint_last.pt")
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
    common = dict(task=task.name, config=cfg.model_dump(mode="json"), class_names=plan.class_names,
                  normalize=plan.normalize, card={"trained_on": _trained_on(cfg)})
    model = None
    steps = 0
    try:
        for epoch in range(start_epoch, t.epochs):
            changed = plan.on_epoch(bare, epoch) if plan.on_epoch else False
            if model is None or changed:
                model = _wrap(bare, world, device, local)
            # RPN/RoI sampling, dropout etc. draw from torch's global generator: seed it per epoch
            torch.manual_seed(t.seed * 100_003 + epoch)
            if hasattr(plan.dataset, "set_epoch"):
                plan.dataset.set_epoch(epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            stats = _train_epoch(model, plan, opt, sched, loader, device, epoch=epoch, scaler=scaler,
                                 grad_clip=t.grad_clip, writer=writer, progress=progress,
                                 max_steps=None if max_steps is None else max_steps - steps)
            steps += stats.pop("steps")
            record = {"epoch": epoch, **(plan.epoch_info(epoch) if plan.epoch_info else {}), "train": stats}
            last = epoch + 1 == t.epochs or (max_steps is not None and steps >= max_steps)
            validation = None
            if dist.is_main() and plan.validate is not None and ((epoch + 1) % t.val_every == 0 or last):
                validation = plan.validate(bare, device)
                bare.train()
                record["val"] = validation.metrics
                for k, v in validation.metrics.items():
                    if isinstance(v, (int, float)):
                        writer.add_scalar(f"val/{k}", v, epoch)
            history.append(record)
            if dist.is_main():
                metrics = record.get("val", {})
                if validation is not None and (best is None or validation.score > best):
                    best = validation.score
                    record["best"] = True
                    save_checkpoint(run_dir / "model_best.pt", model=bare, metrics={**metrics, "epoch": epoch},
                                    extra={**plan.extra, **validation.extra}, **common)
                if (epoch + 1) % t.checkpoint_every == 0 or last:
                    save_checkpoint(run_dir / "checkpoint_last.pt", model=bare, metrics=metrics,
                                    extra=plan.extra, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                                    scaler=scaler.state_dict() if scaler else None, epoch=epoch, best=best,
                                    history=history, **common)
                with open(run_dir / "history.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                line = f"epoch {epoch}: loss {stats['loss']:.4f} ({stats['seconds']:.0f} s)"
                if "val" in record:
                    line += "  val " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                if progress or "val" in record:
                    print(line, flush=True)
            if on_validation is not None and validation is not None:
                on_validation(epoch, {**validation.metrics, "score": validation.score})
            dist.barrier()
            if last:
                break
    finally:
        if writer is not None:
            writer.close()
    if dist.is_main() and plan.validate is None:
        # no validation set: the last weights are the model to use
        save_checkpoint(run_dir / "model_best.pt", model=bare, metrics={}, extra=plan.extra, **common)
    dist.cleanup()
    return run_dir


def _trained_on(cfg) -> str:
    data = getattr(cfg, "data", None)
    parts = []
    for key in ("train", "val"):
        value = getattr(data, key, None)
        if value:
            parts.append(f"{key}: {'/'.join(Path(str(value)).parts[-2:])}")
    return "; ".join(parts)


def _train_epoch(model, plan, opt, sched, loader, device, *, epoch, scaler, grad_clip, writer, progress,
                 max_steps) -> dict:
    model.train()
    sums: dict[str, float] = {}
    n = 0
    bar = None
    if progress and dist.is_main():
        from tqdm import tqdm

        bar = tqdm(total=len(loader), desc=f"epoch {epoch}", unit="it", dynamic_ncols=True, mininterval=2)
    t0 = time.time()
    # the bar ends its line even when the epoch stops with an error, which then gets a line of its own
    with contextlib.nullcontext() if bar is None else bar:
        for batch in loader:
            if max_steps is not None and n >= max_steps:
                break
            with torch.autocast(device_type=device.type, enabled=scaler is not None):
                terms = plan.loss(model, batch, device)
            loss = sum(terms.values())
            reduced = dist.reduce_dict({k: v.detach().float() for k, v in terms.items()})
            total = float(sum(reduced.values()))
            check_finite(total, reduced, where=f"epoch {epoch}, iteration {n}", hint=plan.nonfinite_hint)
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
    out = {k: v / max(n, 1) for k, v in sums.items()}
    out["lr"] = opt.param_groups[0]["lr"]
    out["seconds"] = time.time() - t0
    out["steps"] = n
    return out
