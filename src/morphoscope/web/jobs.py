"""Server-side state of ``morphoscope serve``: uploads, a bounded queue of prediction jobs run by
worker threads, and the results of every image kept so that thresholds, measurements and exports
never run the network again.

Every model runs through the one prediction engine (:class:`morphoscope.engine.predictor.Predictor`,
one per job) and its result is kept whole; outputs are made from it as ``morphoscope predict``
makes them (labels by :func:`morphoscope.engine.writer.label_arrays`, measurements by
:func:`morphoscope.morphology.measure_labels`, COCO RLE by ``Objects.rle``). What is served
follows what a result holds (its ``kind``: objects or classes; its ``threshold_kind``: score or
probability), never the task that made it. For score thresholds the objects are kept as one *base*
label image of every object (highest score first; where masks overlap the higher score keeps the
pixel): the labels at a score ``t`` are a relabelling of it (objects scoring below ``t`` removed,
the rest renumbered 1..n in score order), exactly the labels of ``result.objects_at(t)``, so the
browser re-thresholds on its own.

Everything lives in a temporary folder that is deleted when the server stops; uploads and jobs
not used for ``keep_minutes`` are deleted before that by a janitor thread.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import re
import shutil
import tempfile
import threading
import time
import traceback
import unicodedata
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.engine.objects import Objects
from morphoscope.engine.result import ImageResult as EngineResult
from morphoscope.engine.writer import label_arrays, scale_record
from morphoscope.errors import ConfigError, InputError, MorphoscopeError

log = logging.getLogger("morphoscope.web")


# --------------------------------------------------------------------------------------------
# errors the HTTP layer turns into status codes
# --------------------------------------------------------------------------------------------


class WebError(MorphoscopeError):
    """An error with an HTTP status (the API answers ``{"detail": message}``)."""

    status = 400


class NotFound(WebError):
    status = 404


class Forbidden(WebError):
    status = 403


class TooLarge(WebError):
    status = 413


class Invalid(WebError):
    """A value the request gave that cannot be used: answered as FastAPI answers validation
    errors (422, ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``)."""

    status = 422

    def __init__(self, message: str, *, loc: tuple = ("body",), type: str = "value_error"):
        super().__init__(message)
        self.loc, self.type = tuple(loc), type


Unreadable = Invalid  # a file that is not a readable image


class QueueFull(WebError):
    """Try again later (the job queue, a client's quota or the server's space is full)."""

    status = 429


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
    max_image_mb: float = 1024.0  # one upload decoded: planes x height x width x channels x bytes
    quota_mb: float = 2048.0  # decoded size of the uploads one client (address) keeps at once
    max_total_mb: float = 8192.0  # decoded size of all uploads the server keeps at once
    plane_cache_mb: float = 512.0  # decoded planes kept in memory
    token: str | None = None  # when set, every request must carry it
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

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 2**20)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


MAX_NAME_BYTES = 200  # a file name's stem in UTF-8: outputs add suffixes, file systems stop at 255
PIXEL_SIZE_RANGE = (1e-4, 1e3)  # µm per pixel: electron microscopy to whole-slide overviews
DIAMETER_RANGE = (2.0, 2000.0)  # object diameters (pixels) a model can be rescaled to


def display_name(name: str, default: str = "image") -> str:
    """A client's file name as shown and downloaded: its last path part, NFC, without control or
    format characters; any script kept. Stems longer than ``MAX_NAME_BYTES`` (UTF-8) are cut."""
    name = unicodedata.normalize("NFC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name.strip(".") == "":
        return default
    stem, suffix = (name[: -len(Path(name).suffix)], Path(name).suffix) if Path(name).suffix else (name, "")
    if len(stem.encode()) > MAX_NAME_BYTES:
        stem = stem.encode()[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip()
    return (stem or default) + suffix


def plausible_pixel_size(value) -> bool:
    lo, hi = PIXEL_SIZE_RANGE
    return value is not None and math.isfinite(value) and lo <= value <= hi


def as_planes(arr: np.ndarray) -> np.ndarray:
    """Any image array -> ``(P, H, W)`` or ``(P, H, W, C)`` (C <= 4): a stack of 2D planes."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3:
        return arr[None] if arr.shape[-1] in (1, 2, 3, 4) else arr
    if arr.shape[-1] in (3, 4):
        return arr.reshape((-1,) + arr.shape[-3:])
    return arr.reshape((-1,) + arr.shape[-2:])


@dataclass(frozen=True)
class ImageLayout:
    """What an upload holds, from its header alone: the decoded size is known before decoding."""

    axes: str  # as morphoscope.io.metadata names them (TZCYX letters)
    planes: int  # T x Z positions: the "slices" of the page
    height: int
    width: int
    channels: int
    dtype: str
    nbytes: int  # all planes decoded
    pixel_size: float | None


def read_layout(path: Path) -> ImageLayout:
    """The header of an image file (:func:`morphoscope.io.metadata.read_metadata`, which reads no
    pixels). A TIFF stack whose metadata does not say what its pages are is taken as a stack of
    planes: the page has no ``--axes`` to ask for. Raises InputError."""
    from morphoscope.io.metadata import read_metadata

    try:
        meta = read_metadata(path)
    except InputError:
        axes = _stack_axes(path)
        if axes is None:
            raise
        meta = read_metadata(path, axes=axes)
    shape = dict(zip(meta.axes, meta.shape))
    pixel_size = meta.pixel_size
    if pixel_size is not None and meta.pixel_size_y is not None and abs(pixel_size - meta.pixel_size_y) > 1e-3 * pixel_size:
        pixel_size = None  # not square: measurements would be wrong; the user types one
    return ImageLayout(axes=meta.axes, planes=math.prod(shape.get(a, 1) for a in "TZ"),
                       height=int(shape["Y"]), width=int(shape["X"]), channels=int(shape.get("C", 1)),
                       dtype=str(np.dtype(meta.dtype)), nbytes=int(meta.nbytes),
                       pixel_size=pixel_size if plausible_pixel_size(pixel_size) else None)


def _stack_axes(path: Path) -> str | None:
    """Axes for a TIFF whose pages are not described: every dimension but Y, X and contiguous
    samples is a plane (Z innermost, then T); None when that does not fit."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes if tif.series else ""
    except Exception:
        return None
    out, free = list(axes), ["Z", "T"]
    for i in reversed(range(len(axes))):
        if axes[i] in "YX":
            continue
        if axes[i] == "S" and i == len(axes) - 1:
            out[i] = "C"
        elif free:
            out[i] = free.pop(0)
        else:
            return None
    return "".join(out) if "Y" in out and "X" in out else None


def read_plane(path: Path, axes: str, index: int) -> np.ndarray:
    """Plane ``index`` (T/Z positions in stored order) of an image, decoded alone."""
    from morphoscope.io.source import ImageSource

    with ImageSource(path, axes=axes) as src:
        plane = src.read(src.planes()[index])
    # a view would keep the whole decoded image alive (ImageSource decodes small files whole)
    return plane.copy() if plane.base is not None else plane


def png_bytes(arr: np.ndarray, compress_level: int = 3) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


@dataclass
class Upload:
    """One uploaded image file (kept on disk under a safe name; planes are read when needed)."""

    id: str
    name: str  # the client's file name, as shown and downloaded (display_name)
    path: Path  # where it is stored: <upload id>/image<suffix>
    size_bytes: int
    height: int
    width: int
    pages: int
    channels: int
    dtype: str
    pixel_size: float | None
    example: str | None = None
    axes: str = "YX"
    decoded_bytes: int = 0
    owner: str | None = None  # the session that uploaded it (None: made by the server itself)
    client: str | None = None  # the address it came from (quotas)
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


def short_data_path(value) -> str | None:
    """A data location as its last two path parts ("bbbc039/training"): what it is, never where
    it lies on the server."""
    if not value:
        return None
    if isinstance(value, (list, tuple)):
        parts = [short_data_path(v) for v in value]
        return ", ".join(p for p in parts if p) or None
    if isinstance(value, dict):
        return short_data_path(value.get("path") or value.get("root") or value.get("images"))
    parts = [p for p in Path(str(value)).parts if p not in ("/", "\\", "..", ".")]
    return "/".join(parts[-2:]) or None


def read_card_file(path: Path) -> dict:
    """A model card written for people beside the checkpoint (``NAME.card.json`` or
    ``model_card.json``), or {}."""
    import json

    for cand in (path.with_suffix(".card.json"), path.parent / "model_card.json"):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                return data
    return {}


def describe_model(ckpt: dict, card_file: dict) -> tuple[str, str | None, str | None]:
    """(description, training data, validation data) for the card shown to users: the card's
    words when the model has them, else what the checkpoint says it was trained on."""
    cfg = ckpt.get("config", {}) or {}
    data = cfg.get("data", {}) or {}
    card = {**(ckpt.get("card") or {}), **card_file}
    trained_on = card.get("trained_on") or card.get("training_data") or short_data_path(data.get("train"))
    metrics = ckpt.get("metrics", {}) or {}
    validated_on = card.get("validated_on") or short_data_path(metrics.get("dataset") or data.get("val"))
    description = str(card.get("description") or (ckpt.get("extra", {}) or {}).get("description") or "").strip()
    if not description:
        model = cfg.get("model", {}) or {}
        what = {"objects": "Finds and outlines each", "classes": "Sorts images into"}.get(
            result_kind(ckpt.get("task")), "A model of")
        classes = ", ".join(map(str, ckpt.get("class_names") or [])) or "objects"
        arch = " / ".join(str(v) for v in (model.get("architecture"), model.get("backbone") or model.get("encoder")) if v)
        description = f"{what} {classes}" + (f" ({arch})" if arch else "") + "."
        if trained_on:
            description += f" Trained on images from {trained_on}"
            if metrics.get("images") and validated_on:
                description += f", validated on {metrics['images']} images from {validated_on}"
            description += ": it works best on images like those."
        else:
            description += " This model does not record what it was trained on."
    return description, (str(trained_on) if trained_on else None), (str(validated_on) if validated_on else None)


def result_kind(task_name) -> str | None:
    """What the results of a task's models hold ("objects" or "classes"; the task registry says),
    or None for a task this installation does not know."""
    from morphoscope.tasks import get_task

    try:
        return get_task(str(task_name)).result_kind
    except ConfigError:
        return None


def model_traits(ckpt: dict) -> dict:
    """What a model's results will hold, from its checkpoint alone (no network is built):
    ``kind`` ("objects" or "classes"), ``threshold_kind`` ("score", "probability" or None) and the
    default ``threshold``, as the prediction engine sets them for that model, and the object
    ``diameter`` (pixels) it rescales images to (None: it predicts at the image's scale)."""
    from morphoscope.engine.bundle import ModelBundle
    from morphoscope.tasks import get_task, parse_config

    traits = {"kind": result_kind(ckpt.get("task")) or "objects", "threshold_kind": None, "threshold": None,
              "diameter": None}
    try:
        task = get_task(str(ckpt.get("task")))
        bundle = ModelBundle(name="card", task=task, model=None, class_names=list(ckpt["class_names"]),
                             cfg=parse_config(ckpt["config"]),
                             normalize=dict(ckpt.get("normalize") or {"low": 1.0, "high": 99.8}),
                             extra=dict(ckpt.get("extra") or {}), card=dict(ckpt.get("card") or {}))
        inference = task.inference(bundle)
    except Exception as exc:  # told once the model is loaded; the card must not stop the server
        log.warning("cannot tell the thresholds of a %s model before loading it: %s", ckpt.get("task"), exc)
        return traits
    threshold = inference.threshold
    traits.update(threshold_kind=inference.threshold_kind,
                  threshold=float(threshold) if threshold is not None else None,
                  diameter=float(inference.diameter) if inference.diameter else None)
    return traits


class ModelCatalog:
    """The models a server offers: the shipped ones plus those named with ``--model``.

    Cards are read from checkpoint metadata at start-up; networks are loaded on first use and
    the two most recently used are kept in memory. Cards name the model's file, never its folder.
    """

    def __init__(self, specs: list[str], device: str = "auto", keep_loaded: int = 2):
        from morphoscope.models.checkpoint import SHIPPED, WEIGHTS_DIR, read_checkpoint, resolve_model_path

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
        for name in SHIPPED:
            try:
                _, path = resolve_model_path(name)
            except ConfigError:
                continue
            if path.resolve() not in seen_paths:
                try:
                    self._add(name, path, read_checkpoint(path), source="shipped")
                except ConfigError as exc:  # a broken installation should not stop the server
                    log.warning("shipped model %s unusable: %s", name, exc.message)
        self.paths = [Path(e["_path"]) for e in self.entries.values()] + [WEIGHTS_DIR]

    def _add(self, name: str, path: Path, ckpt: dict, *, source: str) -> None:
        model_id = re.sub(r"[^A-Za-z0-9._-]+", "-", name) or "model"
        base, n = model_id, 2
        while model_id in self.entries:
            model_id, n = f"{base}-{n}", n + 1
        cfg = ckpt.get("config", {}) or {}
        extra = ckpt.get("extra", {}) or {}
        task = ckpt["task"]
        description, trained_on, validated_on = describe_model(ckpt, read_card_file(path))
        model_cfg = cfg.get("model", {}) or {}
        self.entries[model_id] = {
            "id": model_id, "name": name, "task": task, **model_traits(ckpt), "classes": list(ckpt["class_names"]),
            "metrics": _scalar_metrics(ckpt.get("metrics", {})),
            "backbone": model_cfg.get("backbone") or model_cfg.get("encoder"),
            "architecture": model_cfg.get("architecture"),
            "file": path.name if source == "shipped" or path.parent.name in ("", ".") else f"{path.parent.name}/{path.name}",
            "source": source,
            "class_thresholds": [float(t) for t in extra["thresholds"]] if extra.get("thresholds") is not None else None,
            "description": description, "trained_on": trained_on, "validated_on": validated_on,
            "default": not self.entries,
            "_path": str(path),  # the server's own; never sent
        }

    @property
    def default_id(self) -> str | None:
        return next(iter(self.entries), None)

    def cards(self) -> list[dict]:
        return [_public(e) for e in self.entries.values()]

    def card(self, model_id: str | None) -> dict:
        if model_id in (None, ""):
            model_id = self.default_id
            if model_id is None:
                raise NotFound("no model is installed: start the server with --model CHECKPOINT")
        if model_id not in self.entries:
            raise NotFound(f"unknown model '{model_id}'; available: {', '.join(self.entries) or 'none'}")
        return _public(self.entries[model_id])

    def load(self, model_id: str):
        from morphoscope.models.checkpoint import pick_device, read_checkpoint
        from morphoscope.tasks import bundle_from_checkpoint

        card = self.card(model_id)
        with self._lock:
            if card["id"] in self._bundles:
                self._bundles.move_to_end(card["id"])
                return self._bundles[card["id"]]
            path = Path(self.entries[card["id"]]["_path"])
            bundle = bundle_from_checkpoint(read_checkpoint(path), name=card["name"], path=path,
                                            device=pick_device(self.device))
            self._bundles[card["id"]] = bundle
            while len(self._bundles) > self.keep_loaded:
                self._bundles.popitem(last=False)
            return bundle


def _public(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


def threshold_lut(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Relabelling table of a base label image (object ``k`` scoring ``scores[k]``, numbered by
    descending score): objects scoring >= threshold get 1..n in order, the others 0.

    Scores are compared in float32, as :meth:`morphoscope.engine.objects.Objects.above` does.
    """
    keep = np.asarray(scores, np.float32) >= np.float32(threshold)
    keep[0] = False
    lut = np.zeros(len(scores), np.int64)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut


@dataclass(frozen=True)
class Labelled:
    """The objects of one image at one threshold, as ``morphoscope predict`` writes them
    (:func:`morphoscope.engine.writer.label_arrays`): the label image, each label's class and score
    (index 0 = background), and the objects themselves, object ``k - 1`` being label ``k`` (whole
    masks, which may overlap: what predictions.json encodes)."""

    labels: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    objects: Objects

    @classmethod
    def of(cls, objects: Objects, *, by_class: bool = False) -> Labelled:
        labels, classes, scores, index = label_arrays(objects, by_class=by_class)
        return cls(labels, classes, scores, objects.select(index))


def measure_plane(labelled: Labelled, plane, *, name: str, class_names, pixel_size) -> object:
    """The measurement table of one labelled plane, by the writer's own function (same
    columns, same numbers as ``morphoscope predict --measure``)."""
    from morphoscope.engine.writer import measure_objects

    return measure_objects(labelled.labels, labelled.objects, plane, labelled.classes, labelled.scores,
                           class_names=list(class_names), pixel_size=pixel_size, image_name=name)


@dataclass
class ImageResult:
    """One image of a job: what the prediction engine made of it (``result``, a
    :class:`morphoscope.engine.result.ImageResult`) and what the server needs to serve it.

    Everything here follows what the result holds, never the task that made it:

    * ``kind == "classes"``: class scores of the whole image (``result.class_scores``) and the
      classes the model decides for (``result.decided``); no objects, labels or masks.
    * ``kind == "objects"`` with ``threshold_kind == "score"``: ``result.objects`` is the raw set,
      so one *base* label image of every object (highest score first) gives the labels at any
      score ``t`` by relabelling (:func:`threshold_lut`): exactly the labels of
      ``result.objects_at(t)``. The page thresholds that base image itself.
    * ``kind == "objects"`` otherwise (``"probability"``): the objects at ``t`` are re-made from the
      kept maps by ``result.objects_at(t)``, here, once per threshold.
    """

    index: int
    name: str
    upload_id: str
    slice: int
    result: EngineResult
    display_png: bytes
    task: str = ""  # the model's task: said to people, never branched on
    seconds: float = 0.0
    file_name: str = ""  # the uploaded file's name
    #: the plane's pixels, kept only for results made without an upload (from Python)
    plane: np.ndarray | None = field(default=None, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _pinned: dict = field(default_factory=dict, repr=False)  # the base labels and table: never evicted
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---- what the result holds ---------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.result.kind

    @property
    def threshold_kind(self) -> str | None:
        return self.result.threshold_kind if self.kind == "objects" else None

    @property
    def live_threshold(self) -> bool:
        """Objects thresholded by score: any threshold is a relabelling of the base image, done
        by the page itself."""
        return self.threshold_kind == "score"

    @property
    def class_names(self) -> list[str]:
        return self.result.class_names

    @property
    def height(self) -> int:
        return int(self.result.shape[0])

    @property
    def width(self) -> int:
        return int(self.result.shape[1])

    @property
    def pixel_size(self) -> float | None:
        return self.result.pixel_size

    @property
    def warnings(self) -> list[str]:
        """What may make this result wrong, in sentences (the engine's, shown over the image)."""
        return self.result.warnings

    def _cached(self, key, make, keep: int = 12):
        """``make()`` once per key (requests are served by several threads)."""
        with self._cache_lock:
            if key in self._pinned:
                return self._pinned[key]
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        with self._cache_lock:
            self._cache[key] = value
            while len(self._cache) > keep:
                self._cache.popitem(last=False)
        return value

    def _pinned_value(self, key, make):
        with self._cache_lock:
            if key in self._pinned:
                return self._pinned[key]
        value = make()
        with self._cache_lock:
            return self._pinned.setdefault(key, value)

    def _objects_only(self) -> None:
        if self.kind != "objects":
            raise Conflict(f"{self.name}: this model classifies whole images; it gives no objects, labels or masks")

    # ---- objects at a threshold --------------------------------------------------------------
    def base(self) -> Labelled:
        """Every object of a score-thresholded result in one label image (highest score first)."""
        self._objects_only()
        found = self.result.objects
        return self._pinned_value("base", lambda: Labelled.of(found if found is not None else Objects.empty(self.result.shape),
                                                                 by_class=len(self.class_names) > 1))

    def labelled(self, threshold: float) -> Labelled:
        """The objects at ``threshold``: the labels, classes, scores and objects that
        ``morphoscope predict`` writes at that threshold."""
        self._objects_only()
        if self.live_threshold:
            def make():
                base = self.base()
                lut = threshold_lut(base.scores, threshold)
                keep = lut > 0
                return Labelled(lut[base.labels].astype(base.labels.dtype, copy=False),
                                np.concatenate([[0], base.classes[keep]]).astype(np.int64),
                                np.concatenate([[0.0], base.scores[keep]]).astype(np.float32),
                                base.objects.select(np.flatnonzero(keep[1:])))
        else:
            def make():
                return Labelled.of(self.result.objects_at(threshold if self.threshold_kind else None),
                                   by_class=len(self.class_names) > 1)
        return self._cached(("labelled", float(threshold)), make)

    def class_map_at(self, threshold: float) -> np.ndarray:
        """Per-pixel class (0 = background) at ``threshold``."""
        lab = self.labelled(threshold)
        return lab.classes[lab.labels]

    def count_at(self, threshold: float) -> dict[str, int]:
        """Objects per class at ``threshold``, as many as the label image holds."""
        if self.kind != "objects":
            return {}
        lab = self.labelled(threshold)
        counts = np.bincount(lab.classes[1:], minlength=len(self.class_names) + 1)
        return {c: int(counts[k]) for k, c in enumerate(self.class_names, start=1)}

    def prepare(self, threshold: float, plane: np.ndarray) -> None:
        """Make now, while the plane is at hand, what the page asks for first: the base labels
        and every object's measurements (score thresholds), or the objects and measurements at
        the job's threshold."""
        if self.kind != "objects":
            return
        if self.live_threshold:
            self.base_table(plane=plane)
        else:
            self.measurements_at(threshold, plane=plane)

    # ---- measurements ------------------------------------------------------------------------
    def measurements_at(self, threshold: float, plane_loader=None, pixel_size=None, *, plane=None):
        """Measurement table at ``threshold`` (labels numbered as in the label TIFF); one row per
        image for a classification."""
        import pandas as pd

        if self.kind != "objects":
            scores = np.asarray(self.result.class_scores, np.float64)
            row = {"image": self.name, "class": self.top_class, "probability": float(np.max(scores)),
                   "predicted": ";".join(self.result.decided or [])}
            for c, p in zip(self.class_names, scores):
                row[f"p_{c}"] = float(p)
            return pd.DataFrame([row])
        pixel_size = self.pixel_size if pixel_size is None else pixel_size
        if self.live_threshold:  # an object's measurements do not depend on the threshold
            table = self.base_table(plane_loader, pixel_size, plane=plane)
            lut = threshold_lut(self.base().scores, threshold)
            t = table[lut[table["label"].to_numpy()] > 0].copy()
            t["label"] = lut[t["label"].to_numpy()]
            t.attrs = dict(table.attrs)
            return t.reset_index(drop=True)
        return self._cached(("table", float(threshold), pixel_size), lambda: measure_plane(
            self.labelled(threshold), self._get_plane(plane_loader, plane), name=self.name,
            class_names=self.class_names, pixel_size=pixel_size))

    def base_table(self, plane_loader=None, pixel_size=None, *, plane=None):
        """Measurements of every object of the base label image (``label`` = its number there)."""
        pixel_size = self.pixel_size if pixel_size is None else pixel_size

        def make():
            return measure_plane(self.base(), self._get_plane(plane_loader, plane), name=self.name,
                                 class_names=self.class_names, pixel_size=pixel_size)

        if pixel_size == self.pixel_size:
            return self._pinned_value(("base_table", pixel_size), make)
        return self._cached(("base_table", pixel_size), make)

    def _get_plane(self, plane_loader, plane=None):
        if plane is not None:
            return plane
        if self.plane is not None:
            return self.plane
        if plane_loader is None:
            return None
        return plane_loader(self.upload_id, self.slice)

    @property
    def top_class(self) -> str | None:
        if self.result.class_scores is None:
            return None
        return self.class_names[int(np.argmax(self.result.class_scores))]

    # ---- browser transport -------------------------------------------------------------------
    def labels_gz(self, threshold: float | None = None) -> tuple[bytes, str]:
        """A label image as gzip-compressed little-endian bytes and its dtype: the base image
        (every object) for score thresholds, else the labels at ``threshold``."""
        arr = self.base().labels if self.live_threshold else self.labelled(threshold).labels
        key = ("gz",) if self.live_threshold else ("gz", float(threshold))

        def make():
            dtype = "uint16" if arr.max(initial=0) < 65536 else "uint32"
            raw = np.ascontiguousarray(arr.astype("<u2" if dtype == "uint16" else "<u4"))
            return gzip.compress(raw.tobytes(), compresslevel=1), dtype

        return self._cached(key, make)

    def outputs(self, job_id: str) -> dict:
        base = f"/api/jobs/{job_id}/images/{self.index}"
        out = {"image": f"{base}/image.png", "measurements_csv": f"{base}/measurements.csv"}
        if self.kind == "objects":
            out.update({"labels_tif": f"{base}/labels.tif", "overlay_png": f"{base}/overlay.png",
                        "labels_bin": f"{base}/labels.bin", "objects": f"{base}/objects",
                        "masks": {c: f"{base}/masks/{i}.png" for i, c in enumerate(self.class_names, start=1)}})
        return out

    def summary(self, job_id: str, threshold: float) -> dict:
        d = {"index": self.index, "name": self.name, "upload_id": self.upload_id, "slice": self.slice,
             "task": self.task, "kind": self.kind, "threshold_kind": self.threshold_kind,
             "height": self.height, "width": self.width, "pixel_size_um": self.pixel_size,
             "seconds": round(self.seconds, 3), "warnings": list(self.warnings), "outputs": self.outputs(job_id),
             "scale": scale_record(self.result)}
        if self.live_threshold:
            d["n_detections"] = len(self.base().objects)
        if self.kind == "objects":
            d["counts"] = self.count_at(threshold)
        else:
            d["predicted_class"] = self.top_class
            d["predicted"] = list(self.result.decided or [])
            d["probabilities"] = {c: float(p) for c, p in zip(self.class_names, self.result.class_scores)}
        return d


def result_of(found: EngineResult, *, plane: np.ndarray, index: int = 0, upload_id: str = "", slice_: int = 0,
              task: str = "", file_name: str = "", keep_plane: bool = True,
              display_png: bytes | None = None) -> ImageResult:
    """The server's :class:`ImageResult` of an engine result of ``plane`` (its ``name`` is the
    result's). ``keep_plane``: keep the pixels for measurements (results without an upload)."""
    from morphoscope.io.images import to_display_rgb

    return ImageResult(index=index, name=found.name, upload_id=upload_id, slice=slice_, result=found,
                       display_png=display_png if display_png is not None else png_bytes(to_display_rgb(plane)),
                       task=task, file_name=file_name, plane=np.asarray(plane) if keep_plane else None)


def result_from_labels(labels, scores, classes, *, plane, name, class_names, pixel_size=None, index=0,
                       upload_id="", slice_=0, display_png: bytes | None = None) -> ImageResult:
    """A result made without a model, from a label image whose object ``k`` has score
    ``scores[k]`` and class ``classes[k]`` (index 0 = background): to show labels made elsewhere
    in the web app (:meth:`JobManager.add_result_job`). Objects are thresholded by score."""
    labels = np.asarray(labels)
    objects = Objects.from_labels(labels, classes=np.asarray(classes, np.int64), scores=np.asarray(scores, np.float32))
    found = EngineResult(name=name, shape=tuple(labels.shape), class_names=list(class_names), objects=objects,
                         threshold_kind="score", threshold=0.5, pixel_size=pixel_size)
    return result_of(found, plane=plane, index=index, upload_id=upload_id, slice_=slice_, display_png=display_png)


# --------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------


@dataclass
class Job:
    id: str
    model_id: str
    task: str  # the model's task: said to people, never branched on
    class_names: list[str]
    inputs: list[tuple[str, int]]  # (upload id, slice)
    score_threshold: float  # the job's threshold, of the kind threshold_kind (unused for classes)
    kind: str = "objects"  # what the model's results hold: "objects" or "classes"
    threshold_kind: str | None = "score"  # what the threshold thresholds: "score", "probability" or None
    pixel_size: float | None = None
    diameter: float | None = None  # the objects' diameter in the images (px); None: estimated (models with one)
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
    owner: str | None = None  # the session that made it (None: made from Python, shown to all)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished_ok(self) -> bool:
        return self.status == "done"

    def status_dict(self, queue_position: int | None = None) -> dict:
        d = {"job_id": self.id, "status": self.status, "stage": self.stage,
             "progress": round(self.progress, 4), "error": self.error, "model": self.model_id,
             "task": self.task, "kind": self.kind, "threshold_kind": self.threshold_kind,
             "classes": self.class_names, "score_threshold": self.score_threshold,
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
            if self.kind == "objects":
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
        (self.root / "exports").mkdir()
        self.catalog = catalog if catalog is not None else ModelCatalog(self.config.models, self.config.device)
        self.uploads: dict[str, Upload] = {}
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[str] = []  # queued job ids, in order
        self._running: set[str] = set()
        self._plane_cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._closed = False
        from morphoscope.web.security import PathScrubber

        self.scrub = PathScrubber([self.root, self.config.tmp_dir, tempfile.gettempdir(), Path.home(),
                                   Path(__file__).resolve().parents[3], *getattr(self.catalog, "paths", ())])
        self._threads = [threading.Thread(target=self._worker, name=f"morphoscope-worker-{i}", daemon=True)
                         for i in range(max(1, self.config.workers))]
        self._threads.append(threading.Thread(target=self._janitor, name="morphoscope-janitor", daemon=True))
        for t in self._threads:
            t.start()

    @staticmethod
    def _visible(resource_owner: str | None, owner: str | None) -> bool:
        """owner None: the server itself (no check); resource_owner None: made from Python, shared."""
        return owner is None or resource_owner is None or resource_owner == owner

    # ---- uploads ---------------------------------------------------------------------------
    def reserve_upload(self, filename: str) -> tuple[str, Path, str]:
        """A new upload's id, the path to store its file at and its display name. Raises
        Invalid for a file type this server does not read (before any byte is stored)."""
        from morphoscope.io.images import IMAGE_SUFFIXES

        name = display_name(filename)
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise Invalid(f"{name}: not an image file this server reads (expected "
                          f"{', '.join(IMAGE_SUFFIXES)})", loc=("body", "files"))
        uid = uuid.uuid4().hex[:16]
        folder = self.root / "uploads" / uid
        folder.mkdir(parents=True)
        return uid, folder / f"image{suffix}", name

    def discard_upload_file(self, path: Path) -> None:
        shutil.rmtree(Path(path).parent, ignore_errors=True)

    def too_large(self, name: str, size: int) -> TooLarge:
        return TooLarge(f"{name}: the file is larger than {self.config.max_upload_mb:g} MB"
                        if size <= self.config.max_upload_bytes + 1 else
                        f"{name}: the file is {size / 2**20:.1f} MB; this server accepts uploads up to "
                        f"{self.config.max_upload_mb:g} MB (--max-upload-mb)")

    def add_upload(self, filename: str, data, *, example: str | None = None, owner: str | None = None,
                   client: str | None = None) -> Upload:
        """Store one file (bytes, a binary file object or a path to copy) and check it
        (:meth:`register_upload`). Raises TooLarge, Invalid or QueueFull (quota)."""
        uid, path, name = self.reserve_upload(filename)
        try:
            size = _store(data, path, self.config.max_upload_bytes)
            if size > self.config.max_upload_bytes:
                raise TooLarge(f"{name}: the file is {size / 2**20:.1f} MB; this server accepts uploads "
                               f"up to {self.config.max_upload_mb:g} MB (--max-upload-mb)")
        except BaseException:
            self.discard_upload_file(path)
            raise
        return self.register_upload(uid, path, name, example=example, owner=owner, client=client)

    def register_upload(self, uid: str, path: Path, name: str, *, example: str | None = None,
                        owner: str | None = None, client: str | None = None) -> Upload:
        """Check a stored file from its header (plane size, decoded size, quotas) before decoding
        anything, then decode the plane shown first; keep it, or delete it and raise."""
        c = self.config
        try:
            size = path.stat().st_size
            if size > c.max_upload_bytes:
                raise self.too_large(name, size)
            try:
                lay = read_layout(path)
            except InputError as exc:
                raise Invalid(f"{name}: {self._scrub_file(exc.message, path, name)}", loc=("body", "files")) from None
            self._check_pixels(name, lay.height, lay.width)
            if lay.nbytes > c.max_image_bytes:
                raise TooLarge(f"{name}: the image decodes to {lay.nbytes / 2**20:,.0f} MB ({lay.planes} "
                               f"plane(s) of {lay.width}×{lay.height}, {lay.channels} channel(s), {lay.dtype}); "
                               f"this server accepts up to {c.max_image_mb:g} MB decoded per image (--max-image-mb)")
            cost = max(lay.nbytes, size)
            with self._lock:
                mine = sum(max(u.decoded_bytes, u.size_bytes) for u in self.uploads.values()
                           if client is not None and u.client == client)
                everyone = sum(max(u.decoded_bytes, u.size_bytes) for u in self.uploads.values())
                if client is not None and mine + cost > c.quota_mb * 2**20:
                    raise QueueFull(f"{name}: your images on this server would take {(mine + cost) / 2**20:,.0f} MB "
                                    f"decoded; each computer may keep up to {c.quota_mb:g} MB (--quota-mb). Remove "
                                    f"images you are done with, or wait: unused ones go after {c.keep_minutes:g} min")
                if everyone + cost > c.max_total_mb * 2**20:
                    raise QueueFull(f"{name}: the server holds as many images as it may ({c.max_total_mb:g} MB "
                                    "decoded, --max-total-mb); try again when others' have been removed")
                up = Upload(id=uid, name=name, path=path, size_bytes=size, height=lay.height, width=lay.width,
                            pages=lay.planes, channels=lay.channels, dtype=lay.dtype, pixel_size=lay.pixel_size,
                            example=example, axes=lay.axes, decoded_bytes=lay.nbytes, owner=owner, client=client)
                self.uploads[uid] = up  # counted from now on; removed again if it cannot be decoded
            try:
                self.plane(uid, lay.planes // 2)  # the plane the page shows first: is it readable?
            except BaseException:
                with self._lock:
                    self.uploads.pop(uid, None)
                raise
        except BaseException:
            self.discard_upload_file(path)
            raise
        return up

    def _scrub_file(self, message: str, path: Path, name: str) -> str:
        return self.scrub(str(message).replace(str(path), name))

    def _check_pixels(self, name: str, h: int, w: int) -> None:
        if h * w > self.config.max_pixels:
            raise TooLarge(f"{name}: the image is {w}×{h} = {h * w / 1e6:.1f} megapixels; this server "
                           f"accepts up to {self.config.max_pixels / 1e6:.1f} megapixels per image "
                           "(--max-pixels)")

    def get_upload(self, upload_id: str, owner: str | None = None) -> Upload:
        with self._lock:
            up = self.uploads.get(upload_id)
            if up is None or not self._visible(up.owner, owner):
                raise NotFound(f"unknown upload '{upload_id}' (uploads are deleted "
                               f"{self.config.keep_minutes:g} minutes after their last use)")
            up.last_used = time.time()
            return up

    def uploads_of(self, owner: str | None) -> list[Upload]:
        with self._lock:
            return [u for u in self.uploads.values() if self._visible(u.owner, owner)]

    def plane(self, upload_id: str, slice_: int = 0, *, owner: str | None = None) -> np.ndarray:
        """One plane of an upload, decoded alone; the last few are kept (``--plane-cache``)."""
        up = self.get_upload(upload_id, owner)
        if not 0 <= slice_ < up.pages:
            raise Invalid(f"slice {slice_} out of range: the image has {up.pages} slice(s) (0..{up.pages - 1})",
                          loc=("query", "slice"))
        key = (upload_id, int(slice_))
        with self._lock:
            if key in self._plane_cache:
                self._plane_cache.move_to_end(key)
                return self._plane_cache[key]
        try:
            plane = read_plane(up.path, up.axes, int(slice_))
        except InputError as exc:
            raise Invalid(f"{up.name}: {self._scrub_file(exc.message, up.path, up.name)}",
                          loc=("path", "upload_id")) from None
        with self._lock:
            self._plane_cache[key] = plane
            budget = self.config.plane_cache_mb * 2**20
            while len(self._plane_cache) > 1 and sum(p.nbytes for p in self._plane_cache.values()) > budget:
                self._plane_cache.popitem(last=False)
        return plane

    def cached_plane_bytes(self) -> int:
        with self._lock:
            return sum(p.nbytes for p in self._plane_cache.values())

    def preview_png(self, upload_id: str, slice_: int = 0, *, owner: str | None = None) -> bytes:
        from morphoscope.io.images import to_display_rgb

        up = self.get_upload(upload_id, owner)
        with self._lock:
            cache = up.previews
            if slice_ in cache:
                return cache[slice_]
        plane = self.plane(upload_id, slice_, owner=owner)
        if plane.ndim == 3 and plane.shape[-1] not in (1, 3, 4):
            plane = plane[..., 0]  # more channels than colours: show the first
        data = png_bytes(to_display_rgb(plane), compress_level=1)
        with self._lock:
            cache[slice_] = data
            while len(cache) > 8:
                cache.popitem(last=False)
        return data

    def delete_upload(self, upload_id: str, owner: str | None = None) -> None:
        with self._lock:
            up = self.uploads.get(upload_id)
            if up is None or not self._visible(up.owner, owner):
                raise NotFound(f"unknown upload '{upload_id}'")
            if owner is not None and up.owner is None:
                raise Forbidden("this image was added by the server itself; it cannot be deleted from here")
            del self.uploads[upload_id]
            for key in [k for k in self._plane_cache if k[0] == upload_id]:
                del self._plane_cache[key]
        shutil.rmtree(up.path.parent, ignore_errors=True)

    # ---- jobs ------------------------------------------------------------------------------
    def submit(self, inputs: list[tuple[str, int]], *, model: str | None = None,
               score_threshold: float | None = None, pixel_size: float | None = None,
               diameter: float | None = None, owner: str | None = None) -> Job:
        """Queue a prediction job. Raises NotFound (model, upload), Invalid (bad values) or
        QueueFull (the queue holds ``max_queue`` jobs)."""
        card = self.catalog.card(model)
        if not inputs:
            raise Invalid("no images given", loc=("body", "inputs"))
        if len(inputs) > self.config.max_images_per_job:
            raise Invalid(f"{len(inputs)} images in one job; the limit is {self.config.max_images_per_job}",
                          loc=("body", "inputs"))
        for i, (uid, sl) in enumerate(inputs):
            up = self.get_upload(uid, owner)
            if not 0 <= int(sl) < up.pages:
                raise Invalid(f"{up.name}: slice {sl} out of range (the image has {up.pages} slice(s): "
                              f"0..{up.pages - 1})", loc=("body", "inputs", i, "slice"))
        if score_threshold is None:  # the model's own, as morphoscope predict uses it
            score_threshold = card["threshold"] if card.get("threshold") is not None else 0.5
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise Invalid(f"threshold must be in [0, 1], got {score_threshold}", loc=("body", "score_threshold"))
        if pixel_size is not None and not plausible_pixel_size(pixel_size):
            lo, hi = PIXEL_SIZE_RANGE
            raise Invalid(f"pixel size must be between {lo:g} and {hi:g} µm, got {pixel_size}",
                          loc=("body", "pixel_size"))
        if diameter is not None:
            if card.get("diameter") is None:
                raise Invalid(f"model '{card['id']}' predicts at the image's own scale (it records no object "
                              "diameter); leave the diameter empty", loc=("body", "diameter"))
            if not (np.isfinite(diameter) and DIAMETER_RANGE[0] <= diameter <= DIAMETER_RANGE[1]):
                lo, hi = DIAMETER_RANGE
                raise Invalid(f"object diameter must be between {lo:g} and {hi:g} pixels, got {diameter}",
                              loc=("body", "diameter"))
        job = Job(id=uuid.uuid4().hex[:16], model_id=card["id"], task=card["task"], class_names=card["classes"],
                  inputs=[(u, int(s)) for u, s in inputs], score_threshold=float(score_threshold),
                  kind=card.get("kind", "objects"), threshold_kind=card.get("threshold_kind"),
                  pixel_size=pixel_size, diameter=diameter, owner=owner)
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

    def add_result_job(self, results: list[ImageResult], *, model_id: str = "external", task: str | None = None,
                       class_names=None, score_threshold: float = 0.5, owner: str | None = None) -> Job:
        """A finished job made of ready results (Python API: show any labels in the web app, e.g.
        :func:`result_from_labels` or :func:`result_of` an engine result). Without ``owner``
        every session sees it (none can delete it)."""
        class_names = list(class_names or (results[0].class_names if results else ["object"]))
        first = results[0] if results else None
        job = Job(id=uuid.uuid4().hex[:16], model_id=model_id, task=task or (first.task if first else "") or "external",
                  class_names=class_names, inputs=[(r.upload_id, r.slice) for r in results],
                  score_threshold=score_threshold, kind=first.kind if first else "objects",
                  threshold_kind=first.threshold_kind if first else "score",
                  status="done", stage="done", progress=1.0, started=time.time(), finished=time.time(),
                  owner=owner)
        for i, r in enumerate(results):
            r.index = i
        job.results = list(results)
        job.done.set()
        with self._lock:
            self.jobs[job.id] = job
        return job

    def get_job(self, job_id: str, owner: str | None = None) -> Job:
        """The job, when ``owner`` may see it (others get NotFound, as for a job that never was)."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or not self._visible(job.owner, owner):
                raise NotFound(f"unknown job '{job_id}' (results are deleted "
                               f"{self.config.keep_minutes:g} minutes after their last use)")
            job.last_used = time.time()
            return job

    def jobs_of(self, owner: str | None) -> list[Job]:
        with self._lock:
            return [j for j in self.jobs.values() if self._visible(j.owner, owner)]

    def finished_job(self, job_id: str, owner: str | None = None) -> Job:
        job = self.get_job(job_id, owner)
        if job.status in ("queued", "running"):
            raise Conflict(f"job '{job_id}' is {job.status}; its results are not ready yet")
        if job.status != "done":
            raise Conflict(f"job '{job_id}' {job.status}: {self.scrub(job.error) or 'no results'}")
        return job

    def queue_position(self, job_id: str) -> int | None:
        with self._lock:
            return self._pending.index(job_id) + 1 if job_id in self._pending else None

    def status(self, job_id: str, owner: str | None = None) -> dict:
        job = self.get_job(job_id, owner)
        d = job.status_dict(self.queue_position(job_id))
        d["error"] = self.scrub(d["error"])
        return d

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        with self._lock:
            job = self.get_job(job_id, owner)
            if owner is not None and job.owner is None:
                raise Forbidden("this job was added by the server itself; it cannot be deleted from here")
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
        """Every image of the job through one :class:`Predictor` (as ``morphoscope predict`` runs
        them: the model's own settings, and its maps kept so that a probability threshold can
        move without the network)."""
        from morphoscope.engine.predictor import Predictor

        bundle = self.catalog.load(job.model_id)
        predictor = Predictor(bundle, keep_maps=True, diameter=job.diameter)
        job.kind, job.threshold_kind = bundle.task.result_kind, predictor.inference.threshold_kind
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
            found = predictor.predict(plane, name=name, pixel_size=pixel_size)
            res = result_of(found, plane=plane, index=i, upload_id=uid, slice_=sl, task=job.task, file_name=up.name,
                            keep_plane=False)
            if res.kind == "objects":
                job.stage = f"measuring the objects in {name}"
                job.progress = (i + 0.8) / n
                res.prepare(job.score_threshold, plane)
            res.seconds = time.time() - t0
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
                    for key in [k for k in self._plane_cache if k[0] == uid]:
                        del self._plane_cache[key]
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
