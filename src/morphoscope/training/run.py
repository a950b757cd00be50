"""``morphoscope train``: config -> run folder with checkpoints, validation metrics and logs.

Run folder: ``config.yaml`` (validated, paths resolved), ``checkpoint_last.pt`` (resumable),
``model_best.pt`` (best validation F1 at IoU 0.5), ``history.jsonl`` (one line per epoch),
``tb/`` (TensorBoard). The same code runs under ``torchrun --nproc-per-node N``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
import yaml

from morphoscope.config import InstanceConfig, config_to_dict, load_config, parse_config
from morphoscope.errors import ConfigError, OutputExistsError
from morphoscope.training import distributed as dist


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_process(t) -> tuple[int, int, int, torch.device]:
    """torchrun (or single-process) set-up shared by every task's training: process group,
    CPU threads (``t.threads``) and this process's device. Returns (rank, world, local, device)."""
    from morphoscope.models.registry import pick_device

    rank, world, local = dist.init()
    if t.threads:
        torch.set_num_threads(t.threads)
    device = pick_device(t.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
    return rank, world, local, device


def prepare_run_dir(cfg, out: str | Path | None, *, resume: bool, overwrite: bool, source=None) -> Path:
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    last = run_dir / "checkpoint_last.pt"
    if resume:
        if not last.is_file():
            raise ConfigError("--resume: no checkpoint_last.pt to resume from", path=run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise OutputExistsError("run folder already has results; pass --resume to continue it or "
                                "--overwrite to start again", path=run_dir)
    dist.barrier()  # every rank has checked before rank 0 writes into the folder
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        from morphoscope.io.atomic import atomic_write

        with atomic_write(run_dir / "config.yaml", mode="w") as fh:
            yaml.safe_dump(config_to_dict(cfg), fh, sort_keys=False)
    dist.barrier()
    return run_dir


def train(config, *, out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train the model a config describes; returns the run folder.

    ``config`` is a YAML path, a dict or a validated config object. With ``resume`` training
    continues from ``checkpoint_last.pt`` exactly where it stopped (same crops, same numbers).
    """
    if isinstance(config, (str, Path)):
        cfg = load_config(config)
    elif isinstance(config, dict):
        cfg = parse_config(config, base=Path.cwd())
    else:
        cfg = config
    if cfg.task == "instance":
        return _train_instance(cfg, out=out, resume=resume, overwrite=overwrite, progress=progress)
    import importlib

    mod = importlib.import_module(f"morphoscope.{'semantic' if cfg.task == 'semantic' else 'classify'}.train")
    return mod.train(cfg, out=out, resume=resume, overwrite=overwrite, progress=progress)


def _train_instance(cfg: InstanceConfig, *, out, resume, overwrite, progress) -> Path:
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from morphoscope.formats import load_instance_dataset
    from morphoscope.models.maskrcnn import build_maskrcnn
    from morphoscope.models.registry import ModelBundle, save_checkpoint
    from morphoscope.training.data import InstanceCropDataset, collate
    from morphoscope.training.engine import train_one_epoch, warmup_cosine

    t = cfg.train
    rank, world, local, device = setup_process(t)
    run_dir = prepare_run_dir(cfg, out, resume=resume, overwrite=overwrite)
    seed_everything(t.seed)

    train_ds = load_instance_dataset(cfg.data.train, class_name=cfg.data.class_name)
    val_ds = load_instance_dataset(cfg.data.val, class_name=cfg.data.class_name) if cfg.data.val else None
    if val_ds is not None and val_ds.class_names != train_ds.class_names:
        raise ConfigError(f"validation classes {val_ds.class_names} differ from training classes "
                          f"{train_ds.class_names}", path=cfg.data.val)
    iters = t.iters_per_epoch or max(1, len(train_ds) // (t.batch_size * world))
    crops = InstanceCropDataset(train_ds, crop_size=t.crop_size, length=iters * t.batch_size * world,
                                augment=cfg.augment, normalize=cfg.data.normalize, seed=t.seed,
                                min_area=cfg.data.min_object_area)
    sampler = DistributedSampler(crops, shuffle=False) if world > 1 else None
    loader = DataLoader(crops, batch_size=t.batch_size, sampler=sampler, shuffle=False,
                        num_workers=t.workers, collate_fn=collate, pin_memory=device.type == "cuda",
                        persistent_workers=False)

    model = build_maskrcnn(cfg.model, len(train_ds.class_names)).to(device)
    if world > 1:
        if device.type == "cuda":  # SyncBatchNorm exists for GPUs only
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local] if device.type == "cuda" else None)
    bare = model.module if world > 1 else model
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(t.epochs * iters, t.warmup_iters, t.min_lr_ratio))
    scaler = torch.amp.GradScaler("cuda") if (t.amp and device.type == "cuda") else None

    start_epoch, best, history = 0, -1.0, []
    if resume:
        ckpt = torch.load(run_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        bare.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best, history = ckpt["epoch"] + 1, ckpt.get("best", -1.0), ckpt.get("history", [])

    writer = None
    if dist.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_epoch * iters if resume else None)

    def log(step, values):
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(f"train/{k}", v, step)

    cfg_dict = config_to_dict(cfg)
    normalize = cfg.data.normalize.model_dump()
    for epoch in range(start_epoch, t.epochs):
        # RPN/RoI sampling draws from torch's global generator: seed it per epoch (resume = same run)
        torch.manual_seed(t.seed * 100_003 + epoch)
        crops.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        stats = train_one_epoch(model, opt, sched, loader, device, epoch=epoch, scaler=scaler,
                                grad_clip=t.grad_clip, log=log, progress=progress)
        record = {"epoch": epoch, "train": stats}
        if dist.is_main() and val_ds is not None and ((epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs):
            bundle = ModelBundle(name=cfg.name, task="instance", model=bare, class_names=train_ds.class_names,
                                 config=cfg_dict, normalize=normalize, device=device)
            record["val"] = validate_instance(bundle, val_ds, max_images=t.val_max_images)
            bare.train()
            for k, v in record["val"].items():
                if isinstance(v, (int, float)):
                    writer.add_scalar(f"val/{k}", v, epoch)
        history.append(record)
        if dist.is_main():
            metrics = record.get("val", {})
            score = metrics.get("f1@0.5", -1.0)
            common = dict(task="instance", model=bare, config=cfg_dict, class_names=train_ds.class_names,
                          normalize=normalize)
            if "val" in record and score > best:
                best = score
                save_checkpoint(run_dir / "model_best.pt", metrics={**metrics, "epoch": epoch}, **common)
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs:
                save_checkpoint(run_dir / "checkpoint_last.pt", metrics=metrics, optimizer=opt.state_dict(),
                                scheduler=sched.state_dict(), scaler=scaler.state_dict() if scaler else None,
                                epoch=epoch, best=best, history=history, **common)
            with open(run_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            line = f"epoch {epoch}: loss {stats['loss']:.4f} ({stats['seconds']:.0f} s)"
            if "val" in record:
                line += "  val " + "  ".join(f"{k} {v:.4f}" for k, v in record["val"].items() if isinstance(v, float))
            print(line, flush=True)
        dist.barrier()
    if writer is not None:
        writer.close()
    if dist.is_main() and val_ds is None and not (run_dir / "model_best.pt").exists():
        # no validation set: the last weights are the model to use
        save_checkpoint(run_dir / "model_best.pt", task="instance", model=bare, config=cfg_dict,
                        class_names=train_ds.class_names, normalize=normalize, metrics={})
    dist.cleanup()
    return run_dir


def validate_instance(bundle, val_ds, *, max_images: int | None = None, score_threshold: float = 0.5) -> dict:
    """Instance matching on the validation images: F1/precision/recall at IoU 0.5, AP@0.5..0.95."""
    from morphoscope.metrics.matching import matching_stats
    from morphoscope.prediction.instance import predict_instances

    samples = val_ds.samples[:max_images] if max_images else val_ds.samples
    pairs = []
    for s in samples:
        img = s.load_image()
        gt, _ = s.load_label_image(img.shape)
        pred, _ = predict_instances(bundle, img).to_labels(score_threshold)
        pairs.append((gt, pred))
    st = matching_stats(pairs)
    keys = list(st)
    return {"f1@0.5": st["0.5"]["f1"], "precision@0.5": st["0.5"]["precision"],
            "recall@0.5": st["0.5"]["recall"], "ap@0.5": st["0.5"]["ap"],
            "mean_ap@0.5:0.95": float(np.mean([st[k]["ap"] for k in keys])), "images": len(pairs)}
