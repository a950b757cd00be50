"""Server-side state of ``morphoscope serve``: uploads, a bounded queue of prediction jobs run by
worker threads, and the results of every image kept so that thresholds, measurements and exports
never run the network again.

An instance model's detections are kept as one *base* label image holding every detection the
model returned (highest score first; where masks overlap the higher score keeps the pixel) plus
each object's score and class. Applying a score threshold ``t`` is then a relabelling of that image
(objects scoring below ``t`` removed, the rest renumbered 1..n in score order) that gives exactly
the labels of :meth:`InstancePrediction.to_labels(t)` -- so the browser re-thresholds on its own
and every export matches ``morphoscope predict --score-threshold t``.

Everything lives in a temporary folder that is deleted when the server stops; uploads and jobs
not used for ``keep_minutes`` are deleted before that by a janitor thread.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.errors import ConfigError, InputError, MorphoscopeError

log = logging.getLogger("morphoscope.web")

TASKS = ("instance", "semantic", "classify")


# --------------------------------------------------------------------------------------------
# errors the HTTP layer turns into status codes
# --------------------------------------------------------------------------------------------


class WebError(MorphoscopeError):
    """An error with an HTTP status (the API answers ``{"detail": message}``)."""

    status = 400


class NotFound(WebError):
    status = 404


class TooLarge(WebError):
    status = 413


class Unreadable(WebError):
    status = 422


class QueueFull(WebError):
    status = 503


class Gone(WebError):
    status = 410


class Conflict(WebError):
    status = 409


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass
class ServerConfig:
    """Settings of one server (the options of ``morphoscope serve``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    models: list[str] = field(default_factory=list)  # names, checkpoint files or run folders
    device: str = "auto"
    max_upload_mb: float = 100.0  # one upload request
    max_pixels: int = 4096 * 4096  # one image plane (height x width)
    max_queue: int = 8  # jobs waiting or running
    max_images_per_job: int = 64
    workers: int = 1  # jobs run at the same time
    keep_minutes: float = 60.0  # uploads and results unused this long are deleted
    tmp_dir: Path | None = None
    examples: list[Path] = field(default_factory=list)  # extra folders of example images
    sync_wait_s: float = 60.0  # POST /api/predict waits this long before answering with a job id

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def safe_filename(name: str, default: str = "image") -> str:
    name = Path(str(name).replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or default
    return name[:120]


def as_planes(arr: np.ndarray) -> np.ndarray:
    """Any image array -> ``(P, H, W)`` or ``(P, H, W, C)`` (C <= 4): a stack of 2D planes."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3:
        return arr[None] if arr.shape[-1] in (1, 2, 3, 4) else arr
    if arr.shape[-1] in (3, 4):
        return arr.reshape((-1,) + arr.shape[-3:])
    return arr.reshape((-1,) + arr.shape[-2:])


def peek_plane_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of one plane read from the file header only, or None when unknown."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                if len(shape) == 3 and shape[-1] in (1, 2, 3, 4):
                    return int(shape[0]), int(shape[1])
                return int(shape[-2]), int(shape[-1])
        from PIL import Image

        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except Exception:
        return None


def png_bytes(arr: np.ndarray, compress_level: int = 3) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def tiff_bytes(labels: np.ndarray) -> bytes:
    import tifffile

    dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels.astype(dtype, copy=False), compression="zlib")
    return buf.getvalue()


@dataclass
class Upload:
    """One uploaded image file (kept on disk; planes are read when needed)."""

    id: str
    name: str  # file name as uploaded (made safe)
    path: Path
    size_bytes: int
    height: int
    width: int
    pages: int
    channels: int
    dtype: str
    pixel_size: float | None
    example: str | None = None
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    previews: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    def info(self) -> dict:
        return {"upload_id": self.id, "name": self.name, "size_bytes": self.size_bytes,
                "height": self.height, "width": self.width, "pages": self.pages,
                "channels": self.channels, "dtype": self.dtype, "pixel_size_um": self.pixel_size,
                "example": self.example, "preview_url": f"/api/uploads/{self.id}/preview.png"}


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def _scalar_metrics(metrics: dict) -> dict:
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and np.isfinite(v):
            out[str(k)] = float(v) if isinstance(v, float) else int(v)
    return out


class ModelCatalog:
    """The models a server offers: the shipped ones plus those named with ``--model``.

    Cards are read from checkpoint metadata at start-up; networks are loaded on first use and
    the two most recently used are kept in memory.
    """

    def __init__(self, specs: list[str], device: str = "auto", keep_loaded: int = 2):
        from morphoscope.models.registry import SHIPPED, WEIGHTS_DIR, read_checkpoint, resolve_model_path

        self.device = device
        self.keep_loaded = keep_loaded
        self.entries: dict[str, dict] = {}
        self._bundles: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        seen_paths = set()
        for spec in specs:
            name, path = resolve_model_path(spec)
            if path.stem in ("model_best", "checkpoint_last") and str(spec) not in SHIPPED:
                name = path.parent.name or name
            self._add(name, path, read_checkpoint(path), source="shipped" if str(spec) in SHIPPED else "file")
            seen_paths.add(path.resolve())
        for name, fname in SHIPPED.items():
            path = WEIGHTS_DIR / fname
            if path.is_file() and path.resolve() not in seen_paths:
                try:
                    self._add(name, path, read_checkpoint(path), source="shipped")
                except ConfigError as exc:  # a broken installation should not stop the server
                    log.warning("shipped model %s unusable: %s", name, exc)

    def _add(self, name: str, path: Path, ckpt: dict, *, source: str) -> None:
        model_id = re.sub(r"[^A-Za-z0-9._-]+", "-", name) or "model"
        base, n = model_id, 2
        while model_id in self.entries:
            model_id, n = f"{base}-{n}", n + 1
        cfg = ckpt.get("config", {}) or {}
        extra = ckpt.get("extra", {}) or {}
        task = ckpt["task"]
        self.entries[model_id] = {
            "id": model_id, "name": name, "task": task, "classes": list(ckpt["class_names"]),
            "metrics": _scalar_metrics(ckpt.get("metrics", {})),
            "backbone": (cfg.get("model", {}) or {}).get("backbone"),
            "architecture": (cfg.get("model", {}) or {}).get("architecture"),
            "path": str(path), "source": source,
            "score_threshold": float(extra.get("score_threshold", 0.5)),
            "probability_threshold": float(extra.get("threshold", (cfg.get("postprocess", {}) or {}).get("threshold", 0.5))),
            "class_thresholds": [float(t) for t in extra["thresholds"]] if extra.get("thresholds") is not None else None,
            "description": str(extra.get("description", "")),
            "default": not self.entries,
        }

    @property
    def default_id(self) -> str | None:
        return next(iter(self.entries), None)

    def cards(self) -> list[dict]:
        return [dict(e) for e in self.entries.values()]

    def card(self, model_id: str | None) -> dict:
        if model_id in (None, ""):
            model_id = self.default_id
            if model_id is None:
                raise NotFound("no model is installed: start the server with --model CHECKPOINT")
        if model_id not in self.entries:
            raise NotFound(f"unknown model '{model_id}'; available: {', '.join(self.entries) or 'none'}")
        return dict(self.entries[model_id])

    def load(self, model_id: str):
        from morphoscope.models.registry import build_from_checkpoint, pick_device, read_checkpoint

        card = self.card(model_id)
        with self._lock:
            if card["id"] in self._bundles:
                self._bundles.move_to_end(card["id"])
                return self._bundles[card["id"]]
            path = Path(card["path"])
            bundle = build_from_checkpoint(read_checkpoint(path), name=card["name"], path=path,
                                           device=pick_device(self.device))
            self._bundles[card["id"]] = bundle
            while len(self._bundles) > self.keep_loaded:
                self._bundles.popitem(last=False)
            return bundle


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


def threshold_lut(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Relabelling table of a base label image: objects scoring >= threshold get 1..n in order.

    Scores are compared in float32, as :meth:`InstancePrediction.to_labels` does.
    """
    keep = np.asarray(scores, np.float32) >= np.float32(threshold)
    keep[0] = False
    lut = np.zeros(len(scores), np.int64)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut


@dataclass
class SemanticMaps:
    """What a semantic model said about one plane, kept to re-threshold without the network:
    class probabilities ``(K + 1, H, W)`` (channel 0 = background), the extra boundary/distance
    map or None, and the model's post-processing settings."""

    probs: np.ndarray
    aux: np.ndarray | None
    kind: str = "mask"
    method: str = "watershed"
    seed_threshold: float = 0.5
    min_size: int = 10

    def instances(self, threshold: float):
        """(labels, label_classes, scores) at a foreground probability threshold, as
        ``morphoscope predict`` makes them (:func:`morphoscope.semantic.postprocess.instances_from_probs`)."""
        from morphoscope.semantic.postprocess import instances_from_probs

        aux = None if self.aux is None else self.aux.astype(np.float32)
        return instances_from_probs(self.probs.astype(np.float32), aux, kind=self.kind, method=self.method,
                                    threshold=float(threshold), seed_threshold=self.seed_threshold,
                                    min_size=self.min_size)


@dataclass
class ImageResult:
    """What a model made of one image plane.

    instance: ``labels`` is the base label image (every detection; object ``k`` has score
    ``scores[k]`` and class ``classes[k]``, index 0 = background).
    semantic: ``maps`` (probabilities); labels, classes and scores are made per threshold.
    classify: ``class_probs`` one probability per class, ``predicted`` the class names the
    model decides for (its own per-class thresholds).
    """

    index: int
    name: str
    upload_id: str
    slice: int
    task: str
    height: int
    width: int
    class_names: list[str]
    display_png: bytes
    pixel_size: float | None = None
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    classes: np.ndarray | None = None
    maps: SemanticMaps | None = None
    class_probs: np.ndarray | None = None
    predicted: list[str] | None = None
    table: object = None  # pandas DataFrame of the base objects (instance)
    seconds: float = 0.0
    file_name: str = ""  # the uploaded file's name
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _plane: np.ndarray | None = field(default=None, repr=False)

    def _cached(self, key, make, keep: int = 12):
        """``make()`` once per key (requests are served by several threads)."""
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        with self._cache_lock:
            self._cache[key] = value
            while len(self._cache) > keep:
                self._cache.popitem(last=False)
        return value

    # ---- thresholded arrays --------------------------------------------------------------
    def labels_at(self, threshold: float):
        """(labels, classes, scores) at ``threshold`` (index 0 = background), as
        :func:`morphoscope.prediction.predict.label_arrays` returns them."""
        if self.task == "instance":
            lut = threshold_lut(self.scores, threshold)
            keep = lut > 0
            labels = lut[self.labels].astype(self.labels.dtype, copy=False)
            classes = np.concatenate([[0], self.classes[keep]]).astype(np.int64)
            scores = np.concatenate([[0.0], self.scores[keep]]).astype(np.float32)
            return labels, classes, scores
        if self.task == "semantic":
            def make():
                labels, classes, scores = self.maps.instances(threshold)
                dtype = np.uint16 if labels.max(initial=0) < 65536 else np.uint32
                return labels.astype(dtype), np.asarray(classes, np.int64), np.asarray(scores, np.float32)

            return self._cached(("labels", round(float(threshold), 6)), make)
        raise Conflict(f"a {self.task} model gives no label image")

    def class_map_at(self, threshold: float) -> np.ndarray:
        """Per-pixel class (0 = background) at ``threshold``."""
        labels, classes, _ = self.labels_at(threshold)
        return classes[labels]

    def count_at(self, threshold: float) -> dict[str, int]:
        if self.task == "classify":
            return {}
        _, classes, _ = self.labels_at(threshold)
        counts = np.bincount(classes[1:], minlength=len(self.class_names) + 1)
        return {c: int(counts[k]) for k, c in enumerate(self.class_names, start=1)}

    # ---- measurements --------------------------------------------------------------------
    def measurements_at(self, threshold: float, plane_loader=None, pixel_size=None):
        """Measurement table at ``threshold`` (labels numbered as in the label TIFF)."""
        import pandas as pd

        if self.task == "classify":
            row = {"image": self.name, "class": self.top_class,
                   "probability": float(np.max(self.class_probs)),
                   "predicted": ";".join(self.predicted or [])}
            for c, p in zip(self.class_names, self.class_probs):
                row[f"p_{c}"] = float(p)
            return pd.DataFrame([row])
        pixel_size = self.pixel_size if pixel_size is None else pixel_size
        if self.task == "instance":
            table = self.base_table(plane_loader, pixel_size)
            lut = threshold_lut(self.scores, threshold)
            ids = table["label"].to_numpy()
            t = table[lut[ids] > 0].copy()
            t["label"] = lut[t["label"].to_numpy()]
            t.attrs = dict(table.attrs)
            return t.reset_index(drop=True)

        def make():
            labels, classes, scores = self.labels_at(threshold)
            return measure_instance(labels, self._get_plane(plane_loader), scores, classes, self.class_names,
                                    self.name, pixel_size)

        return self._cached(("table", round(float(threshold), 6), pixel_size), make)

    def base_table(self, plane_loader=None, pixel_size=None):
        """Measurements of every detection (``label`` = base object id)."""
        pixel_size = self.pixel_size if pixel_size is None else pixel_size
        if pixel_size == self.pixel_size and self.table is not None:
            return self.table
        return self._cached(("base_table", pixel_size), lambda: measure_instance(
            self.labels, self._get_plane(plane_loader), self.scores, self.classes, self.class_names, self.name,
            pixel_size))

    def _get_plane(self, plane_loader):
        if self._plane is not None:
            return self._plane
        if plane_loader is None:
            return None
        return plane_loader(self.upload_id, self.slice)

    @property
    def top_class(self) -> str | None:
        if self.class_probs is None:
            return None
        return self.class_names[int(np.argmax(self.class_probs))]

    # ---- browser transport ---------------------------------------------------------------
    def labels_gz(self, threshold: float | None = None) -> tuple[bytes, str]:
        """A label image as gzip-compressed little-endian bytes and its dtype: instance models
        the base image (every detection), semantic models the labels at ``threshold``."""
        if self.task == "instance":
            arr, key = self.labels, ("gz",)
        else:
            arr, key = self.labels_at(threshold)[0], ("gz", round(float(threshold), 6))

        def make():
            dtype = "uint16" if arr.max(initial=0) < 65536 else "uint32"
            raw = np.ascontiguousarray(arr.astype("<u2" if dtype == "uint16" else "<u4"))
            return gzip.compress(raw.tobytes(), compresslevel=1), dtype

        return self._cached(key, make)

    def outputs(self, job_id: str) -> dict:
        base = f"/api/jobs/{job_id}/images/{self.index}"
        out = {"image": f"{base}/image.png", "measurements_csv": f"{base}/measurements.csv"}
        if self.task in ("instance", "semantic"):
            out.update({"labels_tif": f"{base}/labels.tif", "overlay_png": f"{base}/overlay.png",
                        "labels_bin": f"{base}/labels.bin", "objects": f"{base}/objects",
                        "masks": {c: f"{base}/masks/{i}.png" for i, c in enumerate(self.class_names, start=1)}})
        return out

    def summary(self, job_id: str, threshold: float) -> dict:
        d = {"index": self.index, "name": self.name, "upload_id": self.upload_id, "slice": self.slice,
             "task": self.task, "height": self.height, "width": self.width,
             "pixel_size_um": self.pixel_size, "seconds": round(self.seconds, 3),
             "outputs": self.outputs(job_id)}
        if self.task == "instance":
            d["n_detections"] = int(len(self.scores) - 1)
        if self.task in ("instance", "semantic"):
            d["counts"] = self.count_at(threshold)
        if self.task == "classify":
            d["predicted_class"] = self.top_class
            d["predicted"] = list(self.predicted or [])
            d["probabilities"] = {c: float(p) for c, p in zip(self.class_names, self.class_probs)}
        return d


def measure_instance(labels, plane, scores, classes, class_names, name, pixel_size):
    from morphoscope.morphology import measure_labels

    return measure_labels(labels, image=plane, pixel_size=pixel_size, scores=np.asarray(scores, np.float64),
                          classes=np.asarray(classes, np.int64), class_names=class_names, image_name=name)


def instance_result_from_prediction(pred, *, plane, name, class_names, pixel_size=None, index=0,
                                    upload_id="", slice_=0, measure=True) -> ImageResult:
    """An :class:`ImageResult` from raw :class:`InstancePrediction` detections."""
    import dataclasses

    order = np.argsort(-pred.scores, kind="stable")
    if np.any(order != np.arange(len(order))):  # to_labels needs the highest score first
        fields = {"scores": pred.scores[order], "classes": pred.classes[order], "boxes": pred.boxes[order]}
        if hasattr(pred, "crops"):
            fields.update(crops=[pred.crops[i] for i in order], origins=pred.origins[order])
        else:
            fields.update(masks=pred.masks[order])
        pred = dataclasses.replace(pred, **fields)
    labels, index_kept = pred.to_labels(0.0)
    scores = np.concatenate([[0.0], pred.scores[index_kept]]).astype(np.float32)
    classes = np.concatenate([[0], pred.classes[index_kept]]).astype(np.int64)
    return result_from_labels(labels, scores, classes, plane=plane, name=name, class_names=class_names,
                              pixel_size=pixel_size, index=index, upload_id=upload_id, slice_=slice_,
                              measure=measure)


def result_from_labels(labels, scores, classes, *, plane, name, class_names, pixel_size=None, index=0,
                       upload_id="", slice_=0, measure=True, display_png: bytes | None = None) -> ImageResult:
    """An instance :class:`ImageResult` from a base label image whose object ``k`` has score
    ``scores[k]`` and class ``classes[k]`` (objects numbered in descending score order)."""
    from morphoscope.io.images import to_display_rgb

    labels = np.asarray(labels)
    scores = np.asarray(scores, np.float32)
    if len(scores) > 1 and np.any(np.diff(scores[1:]) > 0):
        raise ValueError("objects must be numbered in descending score order")
    res = ImageResult(index=index, name=name, upload_id=upload_id, slice=slice_, task="instance",
                      height=int(labels.shape[0]), width=int(labels.shape[1]), class_names=list(class_names),
                      display_png=display_png if display_png is not None else png_bytes(to_display_rgb(plane)),
                      pixel_size=pixel_size, labels=labels, scores=scores,
                      classes=np.asarray(classes, np.int64))
    if measure:
        res.table = measure_instance(labels, plane, scores, res.classes, res.class_names, name, pixel_size)
    return res


# --------------------------------------------------------------------------------------------
# semantic and classification models
# --------------------------------------------------------------------------------------------


def semantic_maps(bundle, plane: np.ndarray) -> SemanticMaps:
    """Run a semantic model on one plane, keeping its probabilities (as
    :func:`morphoscope.semantic.predict.segment_plane` prepares and runs it)."""
    from morphoscope.config import parse_config
    from morphoscope.io.images import normalize_percentile, to_model_input
    from morphoscope.semantic.infer import predict_plane

    cfg = parse_config(bundle.config)
    cin = cfg.model.in_channels
    nrm = bundle.normalize
    if plane.ndim == 2 or plane.shape[-1] <= 4:
        x = to_model_input(plane, low=nrm.get("low", 1.0), high=nrm.get("high", 99.8), channels=cin)
    else:
        x = np.clip(np.moveaxis(normalize_percentile(plane, low=nrm.get("low", 1.0), high=nrm.get("high", 99.8)),
                                -1, 0), -1.0, 3.0)
    if x.shape[0] != cin:
        raise InputError(f"the image has {x.shape[0]} channels, the model expects {cin}")
    post = cfg.postprocess
    probs, aux = predict_plane(bundle.model, x, cfg.model, cfg.num_classes, tile_size=post.tile_size,
                               overlap=post.tile_overlap, device=bundle.device)
    return SemanticMaps(probs=probs.astype(np.float16), aux=None if aux is None else aux.astype(np.float16),
                        kind=cfg.model.output, method=post.method, seed_threshold=post.seed_threshold,
                        min_size=post.min_size)


def classify_probabilities(bundle, plane: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class probabilities of one image and the classes the model predicts (its thresholds)."""
    from morphoscope.classify.predict import classify_image

    out = classify_image(bundle, plane)
    return np.array([out["probabilities"][c] for c in bundle.class_names], np.float64), list(out["labels"])


def semantic_result(maps: SemanticMaps, *, plane, name, class_names, pixel_size=None, index=0,
                    upload_id="", slice_=0) -> ImageResult:
    from morphoscope.io.images import to_display_rgb

    h, w = maps.probs.shape[1:]
    if maps.probs.shape[0] != len(class_names) + 1:
        raise ValueError(f"semantic probabilities of shape {maps.probs.shape} for {len(class_names)} classes")
    return ImageResult(index=index, name=name, upload_id=upload_id, slice=slice_, task="semantic",
                       height=int(h), width=int(w), class_names=list(class_names),
                       display_png=png_bytes(to_display_rgb(plane)), pixel_size=pixel_size, maps=maps)


def classify_result(probs: np.ndarray, predicted: list[str], *, plane, name, class_names, index=0,
                    upload_id="", slice_=0) -> ImageResult:
    from morphoscope.io.images import to_display_rgb

    probs = np.asarray(probs, np.float64).reshape(-1)
    if len(probs) != len(class_names):
        raise ValueError(f"{len(probs)} class probabilities for {len(class_names)} classes")
    h, w = plane.shape[:2]
    return ImageResult(index=index, name=name, upload_id=upload_id, slice=slice_, task="classify",
                       height=int(h), width=int(w), class_names=list(class_names),
                       display_png=png_bytes(to_display_rgb(plane)), class_probs=probs,
                       predicted=list(predicted))


# --------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------


@dataclass
class Job:
    id: str
    model_id: str
    task: str
    class_names: list[str]
    inputs: list[tuple[str, int]]  # (upload id, slice)
    score_threshold: float
    pixel_size: float | None = None
    status: str = "queued"  # queued, running, done, failed, cancelled
    stage: str = "waiting in the queue"
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    last_used: float = field(default_factory=time.time)
    results: list[ImageResult] = field(default_factory=list)
    current: str | None = None  # the image being worked on
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished_ok(self) -> bool:
        return self.status == "done"

    def status_dict(self, queue_position: int | None = None) -> dict:
        d = {"job_id": self.id, "status": self.status, "stage": self.stage,
             "progress": round(self.progress, 4), "error": self.error, "model": self.model_id,
             "task": self.task, "classes": self.class_names, "score_threshold": self.score_threshold,
             "n_images": len(self.inputs), "created": self.created, "started": self.started,
             "finished": self.finished, "queue_position": queue_position,
             "url": f"/api/jobs/{self.id}", "images": []}
        if self.status == "done":
            d["images"] = [r.summary(self.id, self.score_threshold) for r in self.results]
            d["downloads"] = {
                "measurements_csv": f"/api/jobs/{self.id}/measurements?format=csv",
                "report_html": f"/api/jobs/{self.id}/report.html",
                "outputs_zip": f"/api/jobs/{self.id}/outputs.zip",
            }
            if self.task in ("instance", "semantic"):
                d["downloads"]["predictions_json"] = f"/api/jobs/{self.id}/predictions.json"
        return d


class JobManager:
    """Uploads, the bounded job queue, the worker threads and the janitor of one server."""

    def __init__(self, config: ServerConfig | None = None, *, catalog: ModelCatalog | None = None):
        self.config = config or ServerConfig()
        root = Path(self.config.tmp_dir) if self.config.tmp_dir else None
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="morphoscope-serve-", dir=root))
        (self.root / "uploads").mkdir()
        self.catalog = catalog if catalog is not None else ModelCatalog(self.config.models, self.config.device)
        self.uploads: dict[str, Upload] = {}
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[str] = []  # queued job ids, in order
        self._running: set[str] = set()
        self._plane_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"morphoscope-worker-{i}", daemon=True)
                         for i in range(max(1, self.config.workers))]
        self._threads.append(threading.Thread(target=self._janitor, name="morphoscope-janitor", daemon=True))
        for t in self._threads:
            t.start()

    # ---- uploads ---------------------------------------------------------------------------
    def add_upload(self, filename: str, data, *, example: str | None = None) -> Upload:
        """Store one uploaded file (bytes, a binary file object or a path to copy) and check
        that it is an image within the limits. Raises TooLarge or Unreadable."""
        from morphoscope.io.images import IMAGE_SUFFIXES, read_image

        name = safe_filename(filename)
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise Unreadable(f"{name}: not an image file this server reads "
                             f"(expected {', '.join(IMAGE_SUFFIXES)})")
        uid = uuid.uuid4().hex[:16]
        folder = self.root / "uploads" / uid
        folder.mkdir(parents=True)
        path = folder / name
        limit = self.config.max_upload_bytes
        try:
            size = _store(data, path, limit)
            if size > limit:
                raise TooLarge(f"{name}: the file is {size / 2**20:.1f} MB; this server accepts uploads "
                               f"up to {self.config.max_upload_mb:g} MB (--max-upload-mb)")
            hw = peek_plane_size(path)
            if hw is not None:
                self._check_pixels(name, *hw)
            try:
                arr = read_image(path)
            except InputError as exc:
                raise Unreadable(f"{name}: {exc.message}") from None
            planes = as_planes(arr)
            h, w = planes.shape[1:3]
            self._check_pixels(name, h, w)
            if planes.shape[0] > 1 and planes.ndim == 3 and planes.shape[1] in (1, 2, 3, 4):
                raise Unreadable(f"{name}: cannot tell the image layout of shape {arr.shape}")
            channels = 1 if planes.ndim == 3 else int(planes.shape[-1])
            pixel_size = None
            if suffix in (".tif", ".tiff"):
                try:
                    from morphoscope.morphology import read_pixel_size

                    pixel_size = read_pixel_size(path)
                except Exception:
                    pixel_size = None
            up = Upload(id=uid, name=name, path=path, size_bytes=size, height=int(h), width=int(w),
                        pages=int(planes.shape[0]), channels=channels, dtype=str(arr.dtype),
                        pixel_size=pixel_size, example=example)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._lock:
            self.uploads[uid] = up
            self._remember_planes(uid, planes)
        return up

    def _check_pixels(self, name: str, h: int, w: int) -> None:
        if h * w > self.config.max_pixels:
            raise TooLarge(f"{name}: the image is {w}×{h} = {h * w / 1e6:.1f} megapixels; this server "
                           f"accepts up to {self.config.max_pixels / 1e6:.1f} megapixels per image "
                           "(--max-pixels)")

    def _remember_planes(self, uid: str, planes: np.ndarray) -> None:
        self._plane_cache[uid] = planes
        self._plane_cache.move_to_end(uid)
        while len(self._plane_cache) > 4:
            self._plane_cache.popitem(last=False)

    def get_upload(self, upload_id: str) -> Upload:
        with self._lock:
            up = self.uploads.get(upload_id)
            if up is None:
                raise NotFound(f"unknown upload '{upload_id}' (uploads are deleted "
                               f"{self.config.keep_minutes:g} minutes after their last use)")
            up.last_used = time.time()
            return up

    def planes(self, upload_id: str) -> np.ndarray:
        from morphoscope.io.images import read_image

        up = self.get_upload(upload_id)
        with self._lock:
            if upload_id in self._plane_cache:
                self._plane_cache.move_to_end(upload_id)
                return self._plane_cache[upload_id]
        planes = as_planes(read_image(up.path))
        with self._lock:
            self._remember_planes(upload_id, planes)
        return planes

    def plane(self, upload_id: str, slice_: int = 0) -> np.ndarray:
        planes = self.planes(upload_id)
        if not 0 <= slice_ < planes.shape[0]:
            raise InputError(f"slice {slice_} out of range: the image has {planes.shape[0]} slice(s) (0..{planes.shape[0] - 1})")
        return planes[slice_]

    def preview_png(self, upload_id: str, slice_: int = 0) -> bytes:
        from morphoscope.io.images import to_display_rgb

        up = self.get_upload(upload_id)
        with self._lock:
            cache = up.previews
            if slice_ in cache:
                return cache[slice_]
        try:
            data = png_bytes(to_display_rgb(self.plane(upload_id, slice_)), compress_level=1)
        except InputError as exc:
            raise WebError(exc.message) from None
        with self._lock:
            cache[slice_] = data
            while len(cache) > 8:
                cache.popitem(last=False)
        return data

    def delete_upload(self, upload_id: str) -> None:
        with self._lock:
            up = self.uploads.pop(upload_id, None)
            self._plane_cache.pop(upload_id, None)
        if up is None:
            raise NotFound(f"unknown upload '{upload_id}'")
        shutil.rmtree(up.path.parent, ignore_errors=True)

    # ---- jobs ------------------------------------------------------------------------------
    def submit(self, inputs: list[tuple[str, int]], *, model: str | None = None,
               score_threshold: float | None = None, pixel_size: float | None = None) -> Job:
        """Queue a prediction job. Raises NotFound (model, upload), WebError (bad values) or
        QueueFull (the queue holds ``max_queue`` jobs)."""
        card = self.catalog.card(model)
        if not inputs:
            raise WebError("no images given")
        if len(inputs) > self.config.max_images_per_job:
            raise WebError(f"{len(inputs)} images in one job; the limit is {self.config.max_images_per_job}")
        for uid, sl in inputs:
            up = self.get_upload(uid)
            if not 0 <= int(sl) < up.pages:
                raise WebError(f"{up.name}: slice {sl} out of range (the image has {up.pages} slice(s): 0..{up.pages - 1})")
        if score_threshold is None:
            score_threshold = card["probability_threshold"] if card["task"] == "semantic" else card["score_threshold"]
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise WebError(f"score threshold must be in [0, 1], got {score_threshold}")
        if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
            raise WebError(f"pixel size must be a positive number of µm, got {pixel_size}")
        job = Job(id=uuid.uuid4().hex[:16], model_id=card["id"], task=card["task"], class_names=card["classes"],
                  inputs=[(u, int(s)) for u, s in inputs], score_threshold=float(score_threshold),
                  pixel_size=pixel_size)
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down")
            busy = len(self._pending) + len(self._running)
            if busy >= self.config.max_queue:
                raise QueueFull(f"the server is busy ({busy} jobs waiting or running, the limit is "
                                f"{self.config.max_queue}); try again in a moment")
            self.jobs[job.id] = job
            self._pending.append(job.id)
            self._wake.notify()
        return job

    def add_result_job(self, results: list[ImageResult], *, model_id: str = "external", task: str = "instance",
                       class_names=None, score_threshold: float = 0.5) -> Job:
        """A finished job made of ready results (Python API: show any labels in the web app)."""
        class_names = list(class_names or (results[0].class_names if results else ["object"]))
        job = Job(id=uuid.uuid4().hex[:16], model_id=model_id, task=task, class_names=class_names,
                  inputs=[(r.upload_id, r.slice) for r in results], score_threshold=score_threshold,
                  status="done", stage="done", progress=1.0, started=time.time(), finished=time.time())
        for i, r in enumerate(results):
            r.index = i
        job.results = list(results)
        job.done.set()
        with self._lock:
            self.jobs[job.id] = job
        return job

    def get_job(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise NotFound(f"unknown job '{job_id}' (results are deleted "
                               f"{self.config.keep_minutes:g} minutes after their last use)")
            job.last_used = time.time()
            return job

    def finished_job(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        if job.status in ("queued", "running"):
            raise Conflict(f"job '{job_id}' is {job.status}; its results are not ready yet")
        if job.status != "done":
            raise Conflict(f"job '{job_id}' {job.status}: {job.error or 'no results'}")
        return job

    def queue_position(self, job_id: str) -> int | None:
        with self._lock:
            return self._pending.index(job_id) + 1 if job_id in self._pending else None

    def status(self, job_id: str) -> dict:
        job = self.get_job(job_id)
        return job.status_dict(self.queue_position(job_id))

    def cancel(self, job_id: str) -> Job:
        with self._lock:
            job = self.get_job(job_id)
            if job.id in self._pending:
                self._pending.remove(job.id)
            if job.status in ("queued", "running"):
                job.status, job.stage, job.finished = "cancelled", "cancelled", time.time()
                job.done.set()
            self.jobs.pop(job.id, None)
        return job

    def wait(self, job: Job, timeout: float | None) -> bool:
        return job.done.wait(timeout)

    def busy(self) -> dict:
        with self._lock:
            return {"queued": len(self._pending), "running": len(self._running), "limit": self.config.max_queue}

    # ---- work ------------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait(timeout=1.0)
                if self._closed:
                    return
                job_id = self._pending.pop(0)
                job = self.jobs.get(job_id)
                if job is None or job.status != "queued":
                    continue
                self._running.add(job_id)
                job.status, job.started, job.stage = "running", time.time(), "loading the model"
            try:
                self._run(job)
                if job.status == "running":
                    job.status, job.stage, job.progress = "done", "done", 1.0
            except Exception as exc:  # every failure ends the job, never the server
                job.status, job.stage = "failed", "failed"
                job.error = describe_failure(exc, job)
                if not isinstance(exc, MorphoscopeError):
                    log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            finally:
                job.finished = time.time()
                job.done.set()
                with self._lock:
                    self._running.discard(job.id)

    def _run(self, job: Job) -> None:
        bundle = self.catalog.load(job.model_id)
        n = len(job.inputs)
        for i, (uid, sl) in enumerate(job.inputs):
            if job.status != "running":
                return
            up = self.get_upload(uid)
            name = up.stem if up.pages == 1 else f"{up.stem}_slice{sl}"
            job.current = name
            job.stage = f"running the model on {name}" + (f" ({i + 1} of {n})" if n > 1 else "")
            job.progress = i / n
            plane = self.plane(uid, sl)
            pixel_size = job.pixel_size if job.pixel_size is not None else up.pixel_size
            t0 = time.time()
            if job.task == "instance":
                from morphoscope.prediction.instance import predict_instances

                pred = predict_instances(bundle, plane)
                job.stage = f"measuring {len(pred)} objects in {name}"
                job.progress = (i + 0.8) / n
                res = instance_result_from_prediction(pred, plane=plane, name=name, class_names=bundle.class_names,
                                                      pixel_size=pixel_size, index=i, upload_id=uid, slice_=sl)
                del pred
            elif job.task == "semantic":
                res = semantic_result(semantic_maps(bundle, plane), plane=plane, name=name,
                                      class_names=bundle.class_names, pixel_size=pixel_size, index=i,
                                      upload_id=uid, slice_=sl)
                job.stage = f"finding the objects in {name}"
                job.progress = (i + 0.8) / n
                res.count_at(job.score_threshold)  # the objects at the job's threshold, made now
            elif job.task == "classify":
                probs, predicted = classify_probabilities(bundle, plane)
                res = classify_result(probs, predicted, plane=plane, name=name, class_names=bundle.class_names,
                                      index=i, upload_id=uid, slice_=sl)
            else:
                raise ConfigError(f"this server cannot run models of task '{job.task}'")
            res.seconds = time.time() - t0
            res.file_name = up.name
            job.results.append(res)
        job.progress = 1.0

    def plane_loader(self):
        """A function (upload id, slice) -> plane, for measurements that need the image."""
        def load(uid, sl):
            try:
                return self.plane(uid, sl)
            except NotFound:
                raise Gone("the uploaded image of this result has been deleted; intensity "
                           "measurements need it (upload it again)") from None
        return load

    # ---- cleanup ---------------------------------------------------------------------------
    def cleanup(self, now: float | None = None) -> dict:
        """Delete uploads and finished jobs unused for ``keep_minutes``; returns what went."""
        now = time.time() if now is None else now
        keep = self.config.keep_minutes * 60
        gone_jobs, gone_uploads = [], []
        with self._lock:
            active_uploads = set()
            for job in self.jobs.values():
                if job.status in ("queued", "running"):
                    active_uploads.update(u for u, _ in job.inputs)
            for jid, job in list(self.jobs.items()):
                if job.status not in ("queued", "running") and now - job.last_used > keep:
                    del self.jobs[jid]
                    gone_jobs.append(jid)
            for uid, up in list(self.uploads.items()):
                if uid not in active_uploads and now - up.last_used > keep:
                    del self.uploads[uid]
                    self._plane_cache.pop(uid, None)
                    gone_uploads.append(up)
        for up in gone_uploads:
            shutil.rmtree(up.path.parent, ignore_errors=True)
        return {"jobs": gone_jobs, "uploads": [u.id for u in gone_uploads]}

    def _janitor(self) -> None:
        period = max(1.0, min(60.0, self.config.keep_minutes * 60 / 4))
        while not self._closed:
            time.sleep(min(period, 1.0))
            if self._closed:
                return
            if time.time() - getattr(self, "_last_clean", 0) >= period:
                self._last_clean = time.time()
                try:
                    self.cleanup()
                except Exception:  # pragma: no cover - never let the janitor die
                    log.exception("cleanup failed")

    def close(self) -> None:
        """Stop the workers and delete the temporary folder."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            for job in self.jobs.values():
                if job.status == "queued":
                    job.status, job.stage = "cancelled", "the server stopped"
                    job.done.set()
        shutil.rmtree(self.root, ignore_errors=True)


def _store(data, path: Path, limit: int) -> int:
    """Write ``data`` to ``path``, stopping one byte past ``limit``; returns the bytes seen."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > limit:
            return len(data)
        path.write_bytes(bytes(data))
        return len(data)
    if isinstance(data, (str, Path)):
        size = Path(data).stat().st_size
        if size <= limit:
            shutil.copyfile(data, path)
        return size
    size = 0
    with open(path, "wb") as fh:
        while True:
            chunk = data.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                return size
            fh.write(chunk)
    return size


def describe_failure(exc: BaseException, job: Job) -> str:
    where = job.current
    on = f" on {where}" if where else ""
    if isinstance(exc, MorphoscopeError):
        return str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return (f"the model ran out of memory{on}; try a smaller image (crop it) or start the "
                "server with a lower --max-pixels")
    return f"the model failed{on}: {type(exc).__name__}: {exc}"
