"""The prediction engine: planes -> blocks -> batches -> device -> merge -> one result type.

One :class:`Predictor` serves every caller (``predict``, ``evaluate --model``, ``compare``,
``demo``, ``tune``, training validation and the web app), so the same image gives the same
result whichever way it comes in.

* A background thread reads each plane's windows (lazily, from a file if the plane is large),
  normalises them with statistics taken once per plane, and queues them; the network works on
  batches of windows meanwhile, across planes and images.
* Objects are merged by block ownership (:mod:`.tiling`): any image size in bounded memory, no
  object cut or doubled at a block border, no cap on objects per image.
* Non-finite pixels are replaced (and the result says so), planes smaller than the model can take
  are refused with the minimum size, and a plane can be rescaled (``scale``) so its objects have
  the size the model was trained on; the objects come back on the input's grid.
* Scale from the objects' size: a model that records its object diameter
  (:attr:`Inference.diameter`) is given the objects' diameter in the input (``diameter``, or per
  plane :attr:`PlaneInput.diameter`), or a pixel size when the model records its own, or else
  estimates it: a first pass at the input's scale, :meth:`Inference.object_diameter` of its
  objects, and another pass at the model's scale when the estimate is more than
  :data:`AUTO_TOLERANCE` away (otherwise the first pass is the result); each pass refines the
  estimate, up to :data:`AUTO_PASSES` passes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from morphoscope.engine.objects import Objects
from morphoscope.engine.result import ImageResult
from morphoscope.engine.tiling import Block, MergeReport, block_grid, merge_blocks
from morphoscope.errors import InputError

SAMPLE_PIXELS = 4_000_000
#: the automatic scale keeps the first pass when the estimated diameter is within this fraction of
#: the model's (the models are trained with a scale jitter wider than this)
AUTO_TOLERANCE = 0.15
#: passes of the automatic scale at most (the first at the input's scale)
AUTO_PASSES = 3
#: automatic and diameter-given scales are kept within these factors, and a rescaled plane within
#: MAX_SCALED_PIXELS
SCALE_LIMITS = (0.125, 8.0)
MAX_SCALED_PIXELS = 100_000_000


@dataclass
class PlaneInput:
    """One 2D plane to predict: an array ``(Y, X[, C])`` or a lazy image source and a plane
    index. ``key`` is the caller's own bookkeeping, handed back with the result."""

    name: str
    source: Any
    index: dict = field(default_factory=dict)
    pixel_size: float | None = None
    path: Any = None
    key: Any = None
    #: normalisation statistics to use instead of the plane's own (e.g. a whole stack's)
    stats: dict | None = None
    #: the objects' diameter in this plane (pixels), when known: the plane is rescaled to the
    #: model's diameter (overrides the predictor's scale)
    diameter: float | None = None

    @property
    def lazy(self) -> bool:
        return not isinstance(self.source, np.ndarray)

    @property
    def shape(self) -> tuple[int, int]:
        if not self.lazy:
            return tuple(self.source.shape[:2])
        meta = self.source.meta
        return (meta.shape[meta.axes.index("Y")], meta.shape[meta.axes.index("X")])

    def read(self, region: tuple[slice, slice] | None = None) -> np.ndarray:
        if not self.lazy:
            return self.source if region is None else self.source[region]
        return self.source.read(self.index, region=region)

    def sample(self, max_pixels: int = SAMPLE_PIXELS) -> np.ndarray:
        if not self.lazy:
            x = self.source
            step = int(np.ceil(np.sqrt(x.shape[0] * x.shape[1] / max_pixels))) if x.shape[0] * x.shape[1] > max_pixels else 1
            return x[::step, ::step]
        return self.source.sample(self.index, max_pixels=max_pixels)


@dataclass
class _Plane:
    item: PlaneInput
    blocks: list[Block]
    shape: tuple[int, int]  # of the (rescaled) plane the blocks cut
    scale: float = 1.0
    scale_info: dict = field(default_factory=dict)  # how the scale was set (result settings)
    estimate: bool = False  # estimate the objects' diameter (automatic scale)
    outputs: dict = field(default_factory=dict)
    ended: bool = False
    error: BaseException | None = None
    warnings: list[str] = field(default_factory=list)
    started: float = 0.0
    bar: Any = None

    @property
    def complete(self) -> bool:
        return self.error is not None or (self.ended and len(self.outputs) == len(self.blocks))


class Predictor:
    """Run ``bundle`` (a loaded model) on planes. ``options`` go to the task's
    :meth:`~morphoscope.engine.task.Task.inference` (thresholds, block size, batch size, ...).

    Scale (first that applies): ``scale`` (not 1) resizes each plane by that factor; ``diameter``
    (pixels: the objects' median diameter in the inputs) rescales them to the model's diameter;
    ``pixel_size`` (µm) to the model's pixel size when the model records one; ``diameter="auto"``
    (the default for a model that records its diameter) estimates the diameter per plane;
    ``diameter="off"`` keeps the input's scale."""

    def __init__(self, bundle, *, scale: float = 1.0, diameter: float | str | None = None,
                 pixel_size: float | None = None, progress: bool = False, prefetch: int = 8, **options):
        if not (np.isfinite(scale) and scale > 0):
            raise InputError(f"scale must be a positive number, got {scale}")
        self.bundle = bundle
        self.inference = bundle.task.inference(bundle, **options)
        inf = self.inference
        if int(inf.batch_size) < 1 or (inf.tiled and (int(inf.block_size) < 32 or int(inf.block_margin) < 0
                                                       or inf.block_size <= 2 * inf.block_margin)):
            raise InputError(f"invalid prediction windows: block size {inf.block_size} (at least 32 and more "
                             f"than twice the margin), margin {inf.block_margin} (0 or more), batch size "
                             f"{inf.batch_size} (1 or more)")
        self.progress = progress
        self.prefetch = prefetch
        self.auto, self.scale, self.scale_info = self._resolve_scale(float(scale), diameter, pixel_size)

    def _resolve_scale(self, scale: float, diameter, pixel_size) -> tuple[bool, float, dict]:
        """(automatic?, fixed scale, how it was set)."""
        model_d = self.inference.diameter
        if isinstance(diameter, str):
            key = diameter.strip().lower()
            if key in ("auto", "off", "none", ""):
                diameter = None if key == "auto" else "off"
            else:
                try:
                    diameter = float(key)
                except ValueError:
                    raise InputError(f"diameter must be a number of pixels, 'auto' or 'off', got '{diameter}'") from None
        if scale != 1.0:
            return False, scale, {"scale_from": "scale"}
        if diameter == "off":
            return False, 1.0, {"scale_from": "off"}
        if diameter is not None:
            d = float(diameter)
            if not (np.isfinite(d) and d > 0):
                raise InputError(f"diameter must be a positive number of pixels, got {diameter}")
            if model_d is None:
                raise InputError("this model does not record the object diameter it was trained at, so it "
                                 "cannot be rescaled to a given diameter (use a model that does, e.g. 'nuclei')")
            return False, _limit(model_d / d), {"scale_from": "diameter", "diameter": d}
        if pixel_size is not None and self.inference.pixel_size:
            if not (np.isfinite(pixel_size) and pixel_size > 0):
                raise InputError(f"pixel size must be a positive number of µm, got {pixel_size}")
            return False, _limit(float(pixel_size) / self.inference.pixel_size), {
                "scale_from": "pixel_size", "pixel_size": float(pixel_size)}
        if model_d is not None:
            return True, 1.0, {"scale_from": "estimate"}
        return False, 1.0, {}

    # ---- public -------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, *, name: str = "image", pixel_size: float | None = None) -> ImageResult:
        """One in-memory plane ``(Y, X[, C])`` -> its result (errors are raised)."""
        for _, res in self.run([PlaneInput(name, np.asarray(image), pixel_size=pixel_size)]):
            if isinstance(res, BaseException):
                raise res
            return res
        raise RuntimeError("no result")  # pragma: no cover

    def run(self, inputs: Iterable[PlaneInput]) -> Iterator[tuple[PlaneInput, ImageResult | BaseException]]:
        """Results in input order. A plane that cannot be read or is unsuitable yields its
        exception (an :class:`InputError` naming the file) instead of stopping the others."""
        if not self.auto:
            yield from self._stream(inputs, self._fixed_scale)
            return
        for item, res in self._stream(inputs, self._fixed_scale, estimate=True):
            if isinstance(res, BaseException) or item.diameter:
                yield item, res
                continue
            yield item, self._second_pass(item, res)

    def _fixed_scale(self, item: PlaneInput) -> tuple[float, dict]:
        if item.diameter:
            if self.inference.diameter is None:
                raise InputError("this model does not record the object diameter it was trained at, so it "
                                 "cannot be rescaled to a given diameter", path=item.path or item.name)
            return _limit(self.inference.diameter / float(item.diameter)), {"scale_from": "diameter",
                                                                           "diameter": float(item.diameter)}
        return self.scale, dict(self.scale_info)

    def _second_pass(self, item: PlaneInput, first: ImageResult) -> ImageResult:
        """The automatic scale: keep a pass whose estimate is close to the model's diameter, else
        predict again at the scale it gives (an estimate is most accurate near the model's own
        size, so each pass refines it), at most :data:`AUTO_PASSES` passes in all."""
        res, scale = first, first.settings.get("scale", 1.0)
        if res.settings.get("diameter") is None:
            res.warnings.append("the object size could not be estimated (no objects found at the input's "
                                "scale); predicted at the input's scale: give the diameter if objects are missed")
            return res
        for _ in range(AUTO_PASSES - 1):
            d = res.settings.get("diameter")
            if d is None:
                return res
            wanted = self.inference.diameter / d
            s = _limit(wanted, item.shape)
            if abs(np.log(s / scale)) <= np.log1p(AUTO_TOLERANCE):
                return res
            for _, new in self._stream([item], lambda it, s=s: (s, {"scale_from": "estimate"}), estimate=True):
                break
            if isinstance(new, BaseException):
                return new
            if s != wanted:
                new.warnings.append(f"estimated object diameter {d:.1f} px needs a scale of {wanted:.3g}; limited "
                                    f"to {s:.3g}")
            if new.settings.get("diameter") is None:
                new.settings["diameter"] = d
            res, scale = new, s
        return res

    def _stream(self, inputs: Iterable[PlaneInput], scale_of, *, estimate: bool = False
                ) -> Iterator[tuple[PlaneInput, ImageResult | BaseException]]:
        q: queue.Queue = queue.Queue(maxsize=max(2, self.prefetch))
        stop = threading.Event()
        reader = threading.Thread(target=self._read_all, args=(inputs, q, stop, scale_of, estimate), daemon=True)
        reader.start()
        planes: list[_Plane] = []
        pending: list[tuple[_Plane, Block, np.ndarray]] = []
        bs = max(1, int(self.inference.batch_size))
        try:
            while True:
                kind, *payload = q.get()
                if kind == "plane":
                    planes.append(payload[0])
                elif kind == "block":
                    pending.append(tuple(payload))
                    if len(pending) >= bs:
                        self._run_batch(pending)
                        pending = []
                elif kind == "end":
                    payload[0].ended = True
                elif kind == "error":
                    payload[0].error = payload[1]
                elif kind == "fatal":
                    raise payload[0]
                if kind == "done":
                    if pending:
                        self._run_batch(pending)
                        pending = []
                while planes and (planes[0].complete or kind == "done"):
                    p = planes.pop(0)
                    yield p.item, self._finish(p)
                if kind == "done":
                    return
        finally:
            stop.set()
            while reader.is_alive():  # unblock the reader if it waits on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    reader.join(timeout=0.05)

    # ---- reading (background thread) ----------------------------------------------------------
    def _read_all(self, inputs, q: queue.Queue, stop: threading.Event, scale_of, estimate: bool) -> None:
        def put(item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in inputs:
                if stop.is_set():
                    return
                plane = None
                try:
                    plane, source, stats = self._open(item, scale_of, estimate)
                    if not put(("plane", plane)):
                        return
                    for block in plane.blocks:
                        window = source(block.window)
                        x = self.inference.prepare(self._finite(window, stats, plane), stats)
                        if not put(("block", plane, block, x)):
                            return
                    put(("end", plane))
                except Exception as exc:  # reported with the plane; the other planes go on
                    if plane is None:
                        plane = _Plane(item, [], (0, 0))
                        if not put(("plane", plane)):
                            return
                    put(("error", plane, exc))
            put(("done",))
        except BaseException as exc:  # the input iterator itself failed
            put(("fatal", exc))

    def _open(self, item: PlaneInput, scale_of, estimate: bool):
        """Plane statistics, the block grid and a window reader for one plane."""
        inf = self.inference
        h, w = item.shape
        if min(h, w) < inf.min_side:
            raise InputError(f"image is {h}x{w} pixels; the model needs at least {inf.min_side}x"
                             f"{inf.min_side}", path=item.path or item.name)
        warnings: list[str] = []
        sample = item.sample()
        median = None
        if np.issubdtype(sample.dtype, np.floating):
            finite = np.isfinite(sample)
            if not finite.all():
                if not finite.any():
                    raise InputError("image has no finite pixel values (all NaN or infinite)",
                                     path=item.path or item.name)
                share = 1 - finite.mean()
                shown = f"{share:.1%}" if share >= 0.001 else "less than 0.1%"  # never "0.0%"
                warnings.append(f"{shown} of the pixels are NaN or infinite; they were replaced by "
                                "the image's median value before prediction")
                fill = float(np.median(sample[finite]))
                sample = np.where(finite, sample, fill)
            else:
                fill = None
                median = float(np.median(sample))  # for non-finite pixels the sample missed
        else:
            fill = None
        stats = dict(item.stats) if item.stats is not None else inf.statistics(sample)
        stats["_fill"] = fill
        stats["_median"] = median
        scale, scale_info = scale_of(item)
        if scale != 1.0:
            from skimage.transform import rescale

            whole = item.read()
            whole = self._finite(whole, stats, None)
            scaled = rescale(whole.astype(np.float32), scale, order=1, preserve_range=True,
                             anti_aliasing=scale < 1, channel_axis=2 if whole.ndim == 3 else None)
            shape = scaled.shape[:2]
            if min(shape) < inf.min_side:
                raise InputError(f"image rescaled by {scale:g} is {shape[0]}x{shape[1]} pixels; the "
                                 f"model needs at least {inf.min_side}x{inf.min_side}", path=item.path or item.name)

            def source(region, _a=scaled):
                return _a[region]
        else:
            shape = (h, w)

            def source(region):
                return item.read(region)
        if inf.keep_maps:
            from morphoscope.io.memory import check_fits

            channels = len(self.bundle.class_names) + 2
            check_fits(channels * shape[0] * shape[1] * 2, f"keeping the probability maps of a {shape[0]}x{shape[1]} plane",
                       path=item.path or item.name, advice="predict without keep_maps")
        if inf.tiled:
            blocks = block_grid(shape, size=inf.block_size, margin=inf.block_margin, align=inf.block_align)
        else:
            blocks = [Block(0, (slice(0, shape[0]), slice(0, shape[1])), (slice(0, shape[0]), slice(0, shape[1])))]
        plane = _Plane(item, blocks, tuple(int(s) for s in shape), scale=scale, scale_info=scale_info,
                       estimate=estimate, warnings=warnings, started=time.time())
        if self.progress and len(blocks) > 1:
            from tqdm import tqdm

            plane.bar = tqdm(total=len(blocks), desc=f"  {item.name} blocks", unit="block", leave=False,
                             mininterval=1)
        return plane, source, stats

    @staticmethod
    def _finite(window: np.ndarray, stats: dict, plane) -> np.ndarray:
        """Non-finite pixels replaced by the plane's median (every window is checked: the
        plane's sample can miss a few NaN pixels of a huge image)."""
        if not np.issubdtype(window.dtype, np.floating):
            return window
        bad = ~np.isfinite(window)
        if bad.any():
            fill = stats.get("_fill")
            if fill is None:
                fill = stats.get("_median") or 0.0
                if plane is not None and not any("NaN or infinite" in w for w in plane.warnings):
                    plane.warnings.append("some pixels are NaN or infinite; they were replaced by the image's "
                                          "median value before prediction")
            window = np.where(bad, np.asarray(fill, window.dtype), window)
        return window

    # ---- compute (main thread) ----------------------------------------------------------------
    def _run_batch(self, pending) -> None:
        outs = self.inference.run([x for _, _, x in pending])
        for (plane, block, _), out in zip(pending, outs):
            plane.outputs[block.index] = out
            if plane.bar is not None:
                plane.bar.update()

    def _finish(self, plane: _Plane) -> ImageResult | BaseException:
        if plane.bar is not None:
            plane.bar.close()
        if plane.error is not None:
            return plane.error
        inf = self.inference
        item = plane.item
        outs = [plane.outputs[b.index] for b in plane.blocks]
        warnings = list(plane.warnings)
        objects = maps = class_scores = None
        if any(o.objects is not None for o in outs):
            report = MergeReport()
            objects = merge_blocks([(b, o.objects) for b, o in zip(plane.blocks, outs) if o.objects is not None],
                                   plane.shape, report=report)
            if report.cut:
                warnings.append(f"{report.cut} object(s) were larger than the block margin "
                                f"({inf.block_margin} px) and may be cut; raise the block margin")
            if any(o.capped for o in outs):
                warnings.append("the model reached its limit of detections per window; objects may be "
                                "missing: use a smaller block size")
        if any(o.maps is not None for o in outs):
            maps = _stitch_maps(plane.blocks, outs, plane.shape)
        if outs and outs[0].class_scores is not None:
            class_scores = outs[0].class_scores
        summaries = [o.summary for o in outs if o.summary is not None]
        scale_info = dict(plane.scale_info)
        if plane.estimate:
            d = inf.object_diameter(objects, summaries)
            if d is not None and np.isfinite(d) and d > 0:
                scale_info["diameter"] = float(d) / plane.scale  # in the input's pixels
        if plane.shape != tuple(item.shape):  # rescaled: back to the input's grid
            if objects is not None:
                objects = objects.rescaled(item.shape)
            maps = None
        extra = inf.finish(objects, maps, class_scores, **({"summaries": summaries} if summaries else {}))
        return ImageResult(
            name=item.name, shape=tuple(item.shape), class_names=list(self.bundle.class_names),
            plane=dict(item.index), objects=objects, class_scores=class_scores, maps=maps,
            threshold_kind=inf.threshold_kind, threshold=inf.threshold,
            remake=inf.remake if maps is not None else None, pixel_size=item.pixel_size,
            warnings=warnings + list(extra.pop("warnings", [])), seconds=time.time() - plane.started,
            settings={**inf.settings(), "scale": plane.scale, **scale_info}, **extra)


def _limit(scale: float, shape=None) -> float:
    """``scale`` kept within :data:`SCALE_LIMITS` (and the rescaled plane within
    :data:`MAX_SCALED_PIXELS` when ``shape`` is given)."""
    s = float(min(max(scale, SCALE_LIMITS[0]), SCALE_LIMITS[1]))
    if shape is not None and s > 1:
        s = max(1.0, min(s, float(np.sqrt(MAX_SCALED_PIXELS / max(1, shape[0] * shape[1])))))
    return s


def _stitch_maps(blocks: list[Block], outs, shape) -> np.ndarray:
    """Each block's maps over its core, assembled into the whole plane."""
    first = next(o.maps for o in outs if o.maps is not None)
    full = np.zeros((first.shape[0], *shape), first.dtype)
    for b, o in zip(blocks, outs):
        src = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(b.core, b.window))
        full[(slice(None), *b.core)] = o.maps[(slice(None), *src)]
    return full


def predict_image(bundle, image: np.ndarray, **options) -> ImageResult:
    """Shortcut: one in-memory plane through a :class:`Predictor`."""
    return Predictor(bundle, **options).predict(image)


__all__ = ["Objects", "PlaneInput", "Predictor", "predict_image"]
