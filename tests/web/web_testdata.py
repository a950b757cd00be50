"""Helpers of the web tests: a model to serve (the shipped one, else a tiny one trained here for
one step: the tests check plumbing, never prediction quality) and the bundled sample images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from morphoscope.engine.task import BlockOutput, Inference, Task
from morphoscope.models.checkpoint import SHIPPED, WEIGHTS_DIR
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
    path = WEIGHTS_DIR / f"{SHIPPED['nuclei-maskrcnn']}.safetensors"
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


def serve_in_thread(app):
    """Run ``app`` with uvicorn on a free 127.0.0.1 port: (base URL, stop function)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.time()
    while not server.started:
        if time.time() - t0 > 30 or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", port, stop


def instance_result(name: str = "cells", size: int = 64, n: int = 6, seed: int = 0, class_names=("nucleus",),
                    classes=None, **kwargs):
    """A small finished result of objects thresholded by score (discs on noise) made without a
    model; object k (1..n) scores from 0.95 down to 0.3 and is of class ``classes[k - 1]``
    (default 1)."""
    from skimage.draw import disk

    from morphoscope.web.jobs import result_from_labels

    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint16)
    for k in range(1, n + 1):
        rr, cc = disk((rng.uniform(8, size - 8), rng.uniform(8, size - 8)), rng.uniform(3, 6), shape=labels.shape)
        labels[rr, cc] = k
    scores = np.concatenate([[0.0], np.linspace(0.95, 0.3, n)]).astype(np.float32)
    classes = np.concatenate([[0], np.ones(n) if classes is None else classes]).astype(np.int64)
    image = (rng.normal(200, 10, labels.shape) + (labels > 0) * 800).clip(0, 65535).astype(np.uint16)
    return result_from_labels(labels, scores, classes, plane=image, name=name, class_names=list(class_names), **kwargs)


# --------------------------------------------------------------------------------------------
# tasks the web app has never heard of: it must serve them by what their results hold
# --------------------------------------------------------------------------------------------


class MapsInference(Inference):
    """Fixed class probabilities for any image (class 1 sure in [4:12, 4:12], class 2 less sure
    in [20:28, 20:28]); objects are the connected regions of foreground probability >= the
    threshold, re-made from the kept maps at any other threshold."""

    threshold_kind = "probability"

    def __init__(self, bundle, *, keep_maps: bool = False):
        super().__init__(bundle)
        self.keep_maps, self.threshold = keep_maps, 0.5

    def statistics(self, sample):
        return {}

    def prepare(self, window, stats):
        return np.asarray(window, np.float32)[None]

    def run(self, batch):
        outs = []
        for x in batch:
            h, w = x.shape[-2:]
            p = np.zeros((3, h, w), np.float32)
            p[1, 4:12, 4:12] = 0.9
            p[2, 20:28, 20:28] = 0.6
            p[0] = 1 - p[1] - p[2]
            outs.append(BlockOutput(objects=self.remake(p, self.threshold), maps=p if self.keep_maps else None))
        return outs

    def remake(self, maps, threshold):
        from scipy import ndimage

        from morphoscope.engine.objects import Objects

        fg = 1 - maps[0]
        labels, n = ndimage.label(fg >= threshold)
        cls = 1 + np.argmax(maps[1:], axis=0)
        ids = np.arange(1, n + 1)
        return Objects.from_labels(labels, classes=dict(zip(ids, ndimage.maximum(cls, labels, ids).astype(int))),
                                   scores=dict(zip(ids, ndimage.mean(fg, labels, ids))))

    def finish(self, objects, maps, class_scores):
        return {"warnings": ["made up: these probabilities are the same for every image"]}


class ScoresInference(MapsInference):
    """Fixed class probabilities of a whole image (0.8, 0.3); the model decides for the first."""

    tiled = False
    threshold_kind = None

    def run(self, batch):
        return [BlockOutput(class_scores=np.array([0.8, 0.3])) for _ in batch]

    def finish(self, objects, maps, class_scores):
        return {"decided": [self.bundle.class_names[0]]}


class BlockingInference(MapsInference):
    """Waits for ``bundle.gate``, then fails."""

    def run(self, batch):
        self.bundle.gate.wait(30)
        raise RuntimeError("boom")


def made_up_bundle(inference_type, class_names, *, name="made-up", gate=None):
    """A loaded model of a task that exists nowhere else, running ``inference_type``."""
    from morphoscope.engine.bundle import ModelBundle

    class MadeUpTask(Task):
        result_kind = "classes" if inference_type is ScoresInference else "objects"

        def inference(self, bundle, **options):
            return inference_type(bundle, **options)

    MadeUpTask.name = f"made_up_{inference_type.__name__.lower()}"
    bundle = ModelBundle(name=name, task=MadeUpTask(), model=None, class_names=list(class_names), cfg=None,
                         normalize={})
    bundle.gate = gate
    return bundle


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
