"""Helpers of the web tests: a model to serve (the shipped one, else a tiny one trained here for
one step: the tests check plumbing, never prediction quality) and the bundled sample images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from morphoscope.models.registry import SHIPPED, WEIGHTS_DIR
from morphoscope.samples import BBBC039, sample_images

SCREENSHOTS = Path(__file__).parent / "screenshots"

TINY_CONFIG = {
    "task": "instance",
    "name": "tiny_nuclei",
    "data": {"train": str(BBBC039), "class_name": "nucleus"},
    "model": {"backbone": "resnet18", "pretrained": "none", "fpn_channels": 16, "box_head_size": 32,
              "mask_head_layers": [16], "box_batch_size_per_image": 32, "detections_per_image": 100, "scale": 0.5,
              "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 200},
    "train": {"epochs": 1, "iters_per_epoch": 1, "crop_size": 128, "batch_size": 1, "workers": 0,
              "device": "cpu", "warmup_iters": 0},
}


def shipped_model_path() -> Path | None:
    path = WEIGHTS_DIR / SHIPPED["nuclei"]
    return path if path.is_file() else None


def tiny_model(out: Path) -> Path:
    """A one-step Mask R-CNN checkpoint (seconds on a CPU)."""
    from morphoscope.training.run import train

    run = train(TINY_CONFIG, out=out, progress=False)
    return run / "model_best.pt"


def samples() -> list[Path]:
    return sample_images()


def tiff_bytes(arr: np.ndarray, **kwargs) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def synthetic_scene(size: int = 2048, spacing: int = 36, seed: int = 0):
    """A ``size``² uint16 image with thousands of ellipses: (image, labels, scores, classes).

    Object k has score ``scores[k]`` (descending in k, index 0 = background); every fifth object
    is of class 2, the others of class 1.
    """
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint16)
    k = 0
    for cy in range(spacing // 2, size - spacing // 2, spacing):
        for cx in range(spacing // 2, size - spacing // 2, spacing):
            ry, rx = rng.uniform(6, 15, 2)
            rr, cc = ellipse(cy + rng.uniform(-3, 3), cx + rng.uniform(-3, 3), ry, rx, shape=labels.shape,
                             rotation=rng.uniform(0, np.pi))
            k += 1
            labels[rr, cc] = k
    n = k
    scores = np.concatenate([[0.0], np.linspace(0.99, 0.05, n)]).astype(np.float32)
    classes = np.concatenate([[0], np.where(np.arange(1, n + 1) % 5 == 0, 2, 1)]).astype(np.int64)
    image = (rng.normal(300, 20, labels.shape) + (labels > 0) * rng.uniform(800, 2000, n + 1)[labels]).clip(0, 65535)
    return image.astype(np.uint16), labels, scores, classes


def expected_count(scores: np.ndarray, classes: np.ndarray, threshold: float, cls: int | None = None) -> int:
    keep = scores[1:] >= np.float32(threshold)
    if cls is not None:
        keep &= classes[1:] == cls
    return int(keep.sum())


def wait_done(client, job_id: str, timeout: float = 240) -> dict:
    import time

    t0 = time.time()
    while time.time() - t0 < timeout:
        st = client.get(f"/api/jobs/{job_id}").json()
        if st["status"] not in ("queued", "running"):
            return st
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def decode_tiff(data: bytes) -> np.ndarray:
    import tifffile

    return tifffile.imread(io.BytesIO(data))
