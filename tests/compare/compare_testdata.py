"""Test data of the comparison tests (a uniquely named module so test files can import it):
crops of real BBBC039 validation images as GT, and tiny real trained models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BBBC = DATA / "bbbc039"
HPA = DATA / "hpa_sample"


def need_bbbc() -> Path:
    if not (BBBC / "validation" / "images").is_dir():
        pytest.skip("../shared/data/bbbc039 not present (fresh clone): real annotated nuclei are needed")
    return BBBC


def crop_dataset(root: Path, split: str, names: list[str], *, size=(160, 224)) -> Path:
    """A labels-layout copy of the top-left ``size`` crop of each named image (labels relabelled)."""
    import tifffile
    from PIL import Image
    from skimage.segmentation import relabel_sequential

    from morphoscope.io.images import read_image, read_label_image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    h, w = size
    for n in names:
        img = read_image(BBBC / split / "images" / f"{n}.tif")[:h, :w]
        lab = relabel_sequential(read_label_image(BBBC / split / "labels" / f"{n}.png")[:h, :w])[0]
        tifffile.imwrite(root / "images" / f"{n}.tif", img)
        Image.fromarray(lab.astype(np.uint16)).save(root / "labels" / f"{n}.png")
    return root


def first_names(split: str, n: int) -> list[str]:
    return sorted(p.stem for p in (BBBC / split / "images").glob("*.tif"))[:n]


TINY_MODEL = {"fpn_channels": 16, "box_head_size": 32, "mask_head_layers": [16], "box_batch_size_per_image": 32,
              "detections_per_image": 100, "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 200}


def train_tiny_instance(train_dir: Path, out: Path, *, seed: int, iters: int) -> Path:
    from morphoscope.training.run import train

    cfg = {"task": "instance", "name": out.name, "data": {"train": str(train_dir)}, "model": TINY_MODEL,
           "train": {"epochs": 1, "iters_per_epoch": iters, "crop_size": 128, "batch_size": 1, "workers": 0,
                     "device": "cpu", "threads": 1, "seed": seed, "warmup_iters": 0, "lr": 0.002}}
    return train(cfg, out=out, progress=False)
