"""Test data of the classification tests (a uniquely named module so test files can import it).

Real data only: the HPA sample in ../shared (CC BY-SA, never copied into the project), and crops
of real CC0 BBBC039 nuclei images (the package's bundled samples, else ../shared) for a
folder-per-class dataset built in a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HPA = DATA / "hpa_sample"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "hpa_resnet18.yaml"
SAMPLES = Path(__file__).resolve().parents[2] / "src" / "morphoscope" / "samples" / "bbbc039" / "images"


def need_hpa() -> Path:
    if not (HPA / "labels.csv").is_file():
        pytest.skip("../shared/data/hpa_sample not present (fresh clone): the HPA sample is needed")
    return HPA


def real_images(n: int = 2) -> list[np.ndarray]:
    """``n`` real uint16 BBBC039 images (bundled samples first, else ../shared)."""
    from morphoscope.io.images import read_image

    files = sorted(SAMPLES.glob("*.tif")) if SAMPLES.is_dir() else []
    if len(files) < n:
        files = sorted((DATA / "bbbc039" / "validation" / "images").glob("*.tif"))
    if len(files) < n:
        pytest.skip("no real BBBC039 images (bundled samples or ../shared/data) to build a dataset from")
    return [read_image(f) for f in files[:n]]


def folder_dataset(root: Path, *, per_class: int = 4, size: int = 48, classes=("dense", "sparse")) -> Path:
    """One sub-folder per class of 16-bit TIFF crops; class k's crops come from real image k."""
    import tifffile

    images = real_images(len(classes))
    for name, img in zip(classes, images):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            y, x = 40 * i, 60 * i
            tifffile.imwrite(root / name / f"{name}_{i}.tif", img[y:y + size, x:x + size])
    return root


def hpa_config(**train) -> dict:
    """The shipped HPA config as a dict, paths absolute, made tiny for tests."""
    import yaml

    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"]["train"] = str(need_hpa())
    cfg["data"]["image_size"] = 64
    cfg["train"].update({"epochs": 1, "iters_per_epoch": 1, "batch_size": 4, "device": "cpu", "threads": 1,
                         **train})
    return cfg
