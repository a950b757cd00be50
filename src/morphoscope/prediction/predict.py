"""``morphoscope predict``: images in, the files of docs/outputs.md out, for any trained model.

Inputs are files, folders or glob patterns: 2D images (grey, RGB, 8/16-bit, float), stacks
(Z, T, C; OME-TIFF, ImageJ) and mosaics of any size. Every input goes through the one prediction
engine (:class:`morphoscope.engine.predictor.Predictor`) and the one writer
(:class:`morphoscope.engine.writer.OutputFolder`):

* a bad file is reported by name and skipped; the others are predicted and written, and the run
  ends with :class:`PredictionErrors` listing what failed (``strict`` stops at the first);
* each image's files are written as soon as it is done, so a killed run keeps them and
  ``resume`` finishes the rest;
* under ``torchrun`` every process takes its share of the inputs and process 0 writes the
  run-wide files.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from morphoscope.engine import distributed as dist
from morphoscope.engine.predictor import PlaneInput, Predictor
from morphoscope.engine.writer import InputFile, OutputFolder
from morphoscope.errors import ConfigError, InputError, MorphoscopeError, SkippedInputs
from morphoscope.io.images import find_images

COMMON_OPTIONS = ("block_size", "block_margin", "batch_size")


class PredictionErrors(SkippedInputs):
    """Some inputs could not be predicted; the others were written. ``failed``: (file, message)."""

    def __init__(self, failed: list[tuple[str, str]], *, done: int, out: Path):
        self.out = out
        outcome = f"the other {done} were written to {out}" if done else f"nothing was written to {out}"
        super().__init__(failed, done=done, action="predicted", outcome=outcome)


def open_input(item: InputFile, *, bundle, inference, axes: str | None = None
               ) -> tuple[InputFile, list[PlaneInput]]:
    """An input's layout and its 2D planes (in stored order of the T and Z axes). Files are
    opened lazily: a plane's windows are decoded as the engine asks for them."""
    from morphoscope.io.source import open_image

    files = item.extra["files"]
    image = bundle.task.read_group(bundle, item.name, files) if len(files) > 1 else None
    if image is not None:
        return item, [PlaneInput(item.name, image, path=files[0])]
    path = files[0]
    source = open_image(path, axes=axes)
    meta = source.meta
    plane_axes = meta.plane_axes
    layout = InputFile(name=item.name, path=path, plane_axes=plane_axes,
                       plane_shape=tuple(meta.shape[meta.axes.index(a)] for a in plane_axes),
                       axes=meta.axes.replace("C", ""), pixel_size=meta.pixel_size, z_spacing=meta.z_spacing,
                       time_interval=meta.time_interval, ome=meta.format == "ome-tiff", file_name=path.name,
                       extra={**item.extra, "source": source})
    indices = source.planes()
    stats = None
    if inference.per_stack and len(indices) > 1:  # one intensity range for the whole stack
        per = max(1, 4_000_000 // len(indices))
        sample = np.concatenate([source.sample(i, max_pixels=per).reshape(-1) for i in indices])
        stats = inference.statistics(sample)
    planes = [PlaneInput(item.name, source, index=idx, pixel_size=meta.pixel_size, path=path, stats=stats)
              for idx in indices]
    return layout, planes


def task_options(bundle, options: dict) -> dict:
    """Drop unset options and refuse those the model's task does not take, by name."""
    given = {k: v for k, v in options.items() if v is not None}
    allowed = set(COMMON_OPTIONS) | set(bundle.task.predict_options())
    unknown = sorted(set(given) - allowed)
    if unknown:
        takes = ", ".join(sorted(bundle.task.predict_options())) or "none"
        raise ConfigError(f"{', '.join(o.replace('_', '-') for o in unknown)} does not apply to "
                          f"'{bundle.task.name}' models (their options: {takes})")
    return given


def predict(inputs, out: str | Path, *, model=None, device: str = "auto", **kwargs) -> Path:
    """Predict every image of ``inputs`` (files, folders, globs) with ``model`` (a shipped name,
    checkpoint file, run folder or loaded bundle; default: the shipped ``nuclei`` model) into the
    folder ``out``; returns ``out``.

    Keyword arguments are those of :func:`predict_groups`: ``overwrite``, ``resume``, ``strict``,
    ``measure``, ``pixel_size`` (µm, overrides the files' metadata; also sets the scale of a model
    that records its training pixel size), ``diameter`` (the objects' median diameter in the
    inputs, pixels: each image is rescaled to the model's object size; ``"auto"``, the default for
    a model that records its object size, estimates it per image; ``"off"`` keeps the input's
    scale), ``axes`` (of stacks whose metadata does not give them), ``scale`` and the model's
    prediction options
    (``score_threshold``, ``threshold``, ``block_size``, ...; see ``morphoscope predict --help``).
    """
    paths = find_images(inputs)
    bundle = resolve_bundle(model, device=device)
    return predict_groups(bundle, bundle.task.input_groups(bundle, paths), out, **kwargs)


def resolve_bundle(model, *, device: str = "auto"):
    """A loaded model from a bundle, a shipped name, a checkpoint or a run folder; under torchrun
    each process takes its own GPU."""
    from morphoscope.engine.bundle import ModelBundle
    from morphoscope.tasks import load_model

    if isinstance(model, ModelBundle):
        return model
    _, world, local = dist.init()
    if world > 1 and device in ("auto", "cuda") and _cuda():
        device = f"cuda:{local}"
    return load_model(model, device=device)


def predict_groups(bundle, groups, out: str | Path, *, overwrite: bool = False, resume: bool = False,
                   strict: bool = False, measure: bool = False, pixel_size: float | None = None,
                   axes: str | None = None, scale: float = 1.0, diameter: float | str | None = None,
                   progress: bool = True, on_result=None, exports=(), z_spacing: float | None = None,
                   **options) -> Path:
    """Predict the inputs ``groups`` (``(name, files)``: one image, stack or group of channel
    files each) with the loaded ``bundle`` into ``out``. ``on_result(item, results, readers)`` is
    called for every finished input (e.g. to score raw detections at many thresholds);
    ``exports`` names extra formats to write (:mod:`morphoscope.formats.exports`). ``diameter``
    and ``pixel_size`` set the scale as in :func:`predict`."""
    if resume and overwrite:
        raise ConfigError("give --resume or --overwrite, not both")
    if pixel_size is not None and not (np.isfinite(pixel_size) and 0 < pixel_size < 1e6):
        raise InputError(f"pixel size must be a positive number of µm, got {pixel_size}")
    if z_spacing is not None and not (np.isfinite(z_spacing) and 0 < z_spacing < 1e6):
        raise InputError(f"Z spacing must be a positive number of µm, got {z_spacing}")
    rank, world, _ = dist.init()
    predictor = Predictor(bundle, scale=scale, diameter=diameter, pixel_size=pixel_size,
                          progress=progress and dist.is_main(), **task_options(bundle, options))
    kind = bundle.task.result_kind
    out = Path(out)
    folder = OutputFolder(out, class_names=bundle.class_names, info=_info(bundle, predictor), overwrite=overwrite,
                          resume=resume, measure=measure, pixel_size=pixel_size, exports=exports)
    items = [InputFile(name=name, path=Path(files[0]), file_name=Path(files[0]).name,
                       extra={"files": [Path(f) for f in files]}) for name, files in groups]
    if dist.is_main():
        todo = folder.prepare(items, kind)
    dist.barrier()
    if not dist.is_main():
        todo = [it for it in items if not (resume and folder.done(it.name))]
    mine = todo[rank::world]
    failed = _predict_files(predictor, folder, mine, bundle=bundle, axes=axes, strict=strict, z_spacing=z_spacing,
                            progress=progress and dist.is_main(), on_result=on_result)
    failed = dist.gather_lists(failed)
    dist.barrier()
    if dist.is_main():
        summary = folder.finish([it.name for it in items])
        for name, warns in summary["warnings"].items():
            for w in warns:
                warnings.warn(f"{name}: {w}", stacklevel=2)
    dist.barrier()
    if failed:
        raise PredictionErrors(failed, done=len(items) - len(failed), out=out)
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _info(bundle, predictor) -> dict:
    from morphoscope.models.checkpoint import versions

    return {"model": bundle.name, "model_file": bundle.path.name if bundle.path else None,
            "task": bundle.task.name, "device": str(bundle.device), "settings": predictor.inference.settings(),
            "score_threshold": predictor.inference.threshold if predictor.inference.threshold_kind == "score" else None,
            "model_metrics": bundle.metrics, "versions": versions()}


def _merge_stack(predictor: Predictor, folder: OutputFolder, item: InputFile, results):
    """An input's plane results after the task's :meth:`~morphoscope.engine.task.Inference.merge_stack`
    on each time point (3D objects through Z, or the planes unchanged)."""
    from morphoscope.engine.volume import merge_stacks

    size = folder.pixel_size or item.pixel_size  # --pixel-size over the file's
    ratio = item.z_spacing / size if item.z_spacing and size else None
    return merge_stacks(predictor.inference, results, item.plane_axes, ratio)


def _write_and_close(folder: OutputFolder, item: InputFile, results, readers) -> None:
    try:
        folder.write(item, results, readers)
    finally:
        source = item.extra.get("source")
        if source is not None:
            source.close()


def _predict_files(predictor: Predictor, folder: OutputFolder, items: list[InputFile], *, bundle, axes,
                   strict, progress, on_result=None, z_spacing=None) -> list[tuple[str, str]]:
    """Predict and write ``items``; returns the failures (file name, message)."""
    failed: list[tuple[str, str]] = []
    failed_names: set[str] = set()
    opened: dict[str, tuple[InputFile, list[PlaneInput]]] = {}
    lock = threading.Lock()

    def planes():
        for it in items:
            try:
                item, plist = open_input(it, bundle=bundle, inference=predictor.inference, axes=axes)
                if z_spacing is not None and "Z" in item.plane_axes:
                    item.z_spacing = float(z_spacing)  # the user's value over the file's
            except MorphoscopeError as exc:
                with lock:
                    opened[it.name] = (it, [])
                if strict:
                    raise
                yield PlaneInput(it.name, np.zeros((0, 0)), path=it.path, key=("error", it.name, exc))
                continue
            with lock:
                opened[it.name] = (item, plist)
            for i, pl in enumerate(plist):
                pl.key = (it.name, i, len(plist))
                yield pl

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="predict", unit="image", dynamic_ncols=True)
    pending: dict[str, list] = {}
    futures = []
    # writing overlaps the next image's compute; the bar ends its line even when an error stops
    # the run, so the error is printed on a line of its own
    with ThreadPoolExecutor(max_workers=1) as pool, contextlib.nullcontext() if bar is None else bar:
        for pl, res in predictor.run(planes()):
            if pl.key and pl.key[0] == "error":
                res = pl.key[2]
            name = pl.name
            if name in failed_names:  # another plane of a file that already failed
                continue
            if isinstance(res, BaseException):
                if strict or not isinstance(res, MorphoscopeError):
                    raise res
                failed_names.add(name)
                failed.append((str(pl.path.name if pl.path else name), res.message))
                pending.pop(name, None)
                with lock:
                    item_failed, _ = opened.pop(name, (None, None))
                source = item_failed.extra.get("source") if item_failed is not None else None
                if source is not None:  # its other planes are skipped: the file can be closed now
                    source.close()
                if bar is not None:
                    bar.update()
                continue
            _, i, n = pl.key
            pending.setdefault(name, [None] * n)[i] = (res, pl)
            if all(v is not None for v in pending[name]):
                item, _ = opened[name]
                done = pending.pop(name)
                results = [r for r, _ in done]
                results = _merge_stack(predictor, folder, item, results)  # the task's 3D hook, per T
                readers = [p for _, p in done]  # pixels are read by the writer, lazily for huge planes
                if on_result is not None:
                    on_result(item, results, readers)
                futures.append(pool.submit(_write_and_close, folder, item, results, readers))
                with lock:
                    opened.pop(name, None)
                if bar is not None:
                    bar.update()
            for f in [f for f in futures if f.done()]:
                f.result()  # an error while writing stops the run
                futures.remove(f)
        for f in futures:
            f.result()
    if bar is not None:
        bar.close()
    return failed
