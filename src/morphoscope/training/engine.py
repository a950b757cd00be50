"""One training epoch, as in torchvision's references/detection: linear warm-up then cosine decay
per iteration, AMP on CUDA, gradient clipping, and a clear stop on a non-finite loss. Works the
same in one process and under ``torchrun`` (only rank 0 prints)."""

from __future__ import annotations

import math
import time

import torch

from morphoscope.errors import MorphoscopeError
from morphoscope.training import distributed as dist


class NonFiniteLossError(MorphoscopeError):
    pass


def warmup_cosine(total_iters: int, warmup_iters: int, min_ratio: float):
    """LR multiplier: linear from 0.001 to 1 over ``warmup_iters``, then cosine to ``min_ratio``."""

    def factor(it: int) -> float:
        if it < warmup_iters:
            alpha = it / max(1, warmup_iters)
            return 0.001 * (1 - alpha) + alpha
        progress = min(1.0, (it - warmup_iters) / max(1, total_iters - warmup_iters))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def optimizer_step(loss, optimizer, *, scaler=None, grad_clip: float | None = None) -> None:
    """Backward pass and update, shared by every task: AMP loss scaling when ``scaler`` is given,
    gradient-norm clipping over the optimizer's parameters when ``grad_clip`` is set."""
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


def train_one_epoch(model, optimizer, scheduler, loader, device, *, epoch: int, scaler=None,
                    grad_clip: float | None = None, log=None, progress: bool = True) -> dict:
    """Train over ``loader`` once; returns the mean of each loss term. ``log(step, losses)`` is
    called every iteration (TensorBoard)."""
    model.train()
    sums: dict[str, float] = {}
    n = 0
    bar = None
    if progress and dist.is_main():
        from tqdm import tqdm

        bar = tqdm(total=len(loader), desc=f"epoch {epoch}", unit="it", dynamic_ncols=True, mininterval=2)
    t0 = time.time()
    for images, targets in loader:
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
        reduced = dist.reduce_dict({k: v.detach() for k, v in loss_dict.items()})
        total = float(sum(reduced.values()))
        check_finite(total, reduced, where=f"epoch {epoch}, iteration {n}",
                     hint="lower train.lr, raise train.warmup_iters, or check the annotations")
        optimizer_step(loss, optimizer, scaler=scaler, grad_clip=grad_clip)
        scheduler.step()
        n += 1
        for k, v in reduced.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["loss"] = sums.get("loss", 0.0) + total
        if log is not None:
            log(scheduler.last_epoch, {**{k: float(v) for k, v in reduced.items()}, "loss": total,
                                       "lr": optimizer.param_groups[0]["lr"]})
        if bar is not None:
            bar.set_postfix(loss=f"{total:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
            bar.update()
    if bar is not None:
        bar.close()
    out = {k: v / max(n, 1) for k, v in sums.items()}
    out["seconds"] = time.time() - t0
    return out
