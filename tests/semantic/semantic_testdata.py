"""Helpers of the semantic tests (a module with a unique name: conftest modules of several test
folders would shadow each other when imported by name)."""

from __future__ import annotations

from pathlib import Path


def tiny_config(train: Path, val: Path | None = None, **over) -> dict:
    """A semantic config small enough to train a few steps in about a second."""
    d = {
        "task": "semantic", "name": "tiny",
        "data": {"train": str(train), "val": str(val) if val else None, "classes": ["nucleus"]},
        "model": {"architecture": "fpn", "encoder": "resnet18", "decoder_channels": 32, "output": "boundary"},
        "train": {"epochs": 1, "iters_per_epoch": 2, "batch_size": 2, "crop_size": 64, "optimizer": "adamw",
                  "lr": 0.003, "warmup_iters": 0, "workers": 0, "val_max_images": 1, "threads": 1},
        "inference": {"block_size": 1024},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            d[section][name] = value
        else:
            d[section] = value
    return d
