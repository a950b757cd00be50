"""Tiny model configs for fast tests on real images (the numbers do not matter, the code paths do)."""

from __future__ import annotations

from pathlib import Path


def tiny_instance_config(train: Path, *, val: Path | None = None, epochs: int = 1, iters: int = 2,
                         crop: int = 128, seed: int = 0) -> dict:
    return {
        "task": "instance", "name": "tiny",
        "data": {"train": str(train), "val": str(val) if val else None},
        "model": {"backbone": "resnet18", "fpn_channels": 16, "box_head_size": 32,
                  "mask_head_layers": [16], "box_batch_size_per_image": 32,
                  "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 200,
                  "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 200,
                  "detections_per_image": 100},
        "train": {"epochs": epochs, "iters_per_epoch": iters, "batch_size": 1, "crop_size": crop,
                  "workers": 0, "seed": seed, "warmup_iters": 2, "lr": 1e-3, "optimizer": "adamw",
                  "val_max_images": 1},
    }
