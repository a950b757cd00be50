"""``morphoscope predict`` for semantic models: probabilities -> mask -> instances -> files.

Per input ``NAME`` (docs/outputs.md, docs/semantic.md):

``NAME_labels.tif``   instance labels (uint16; uint32 past 65,535), same axes as the input minus C,
                      pixel size / Z spacing / time interval kept (ImageJ hyperstack, or OME-TIFF
                      when the input was OME). In a stack each 2D plane is segmented on its own and
                      labels are unique across the whole stack.
``NAME_overlay.png``  outlines on the image (for a stack: its middle plane).
``NAME_<class>.png``  0/255 mask per class (for a stack: ``NAME_<class>.tif`` with the stack's axes).
``NAME_prob.tif``     float32 foreground probability per class (``postprocess.write_prob`` or
                      ``write_prob=True``), axes of the input with C = class when K > 1.
``predictions.json``  COCO results; an object's ``score`` is its mean foreground probability. For a
                      stack there is one ``images`` entry per plane, with ``plane`` {axis: index}.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.io.atomic import check_writable, prepare_output_dir
from morphoscope.io.images import normalize_percentile, to_model_input
from morphoscope.io.stacks import Stack, read_stack, write_like
from morphoscope.prediction.writer import (coco_annotations_from_labels, overlay, safe_class_name,
                                           write_predictions_json)


def _model_cfg(bundle):
    from morphoscope.config import parse_config

    return parse_config(bundle.config)


def segment_plane(bundle, cfg, img: np.ndarray, *, threshold: float, method: str | None = None,
                  norm_range: tuple[float, float] | None = None):
    """One 2D plane (Y, X[, C]) -> (labels, label_classes, scores, probs)."""
    from morphoscope.semantic.infer import predict_plane
    from morphoscope.semantic.postprocess import instances_from_probs

    cin = cfg.model.in_channels
    nrm = bundle.normalize
    if norm_range is not None:
        lo, hi = norm_range
        x = (img.astype(np.float32) - lo) / max(hi - lo, 1e-6)
        x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
        if x.shape[0] == 1 and cin > 1:
            x = np.repeat(x, cin, 0)
        x = np.clip(x, -1.0, 3.0)
    elif img.ndim == 2 or img.shape[-1] <= 4:
        x = to_model_input(img, low=nrm.get("low", 1.0), high=nrm.get("high", 99.8), channels=cin)
    else:
        x = np.clip(np.moveaxis(normalize_percentile(img, low=nrm.get("low", 1.0), high=nrm.get("high", 99.8)), -1, 0),
                    -1.0, 3.0)
    if x.shape[0] != cin:
        raise InputError(f"image has {x.shape[0]} channels, the model expects {cin}")
    post = cfg.postprocess
    probs, aux = predict_plane(bundle.model, x, cfg.model, cfg.num_classes, tile_size=post.tile_size,
                               overlap=post.tile_overlap, device=bundle.device)
    labels, classes, scores = instances_from_probs(
        probs, aux, kind=cfg.model.output, method=method or post.method, threshold=threshold,
        seed_threshold=post.seed_threshold, min_size=post.min_size)
    return labels, classes, scores, probs


def predict(paths, out: str | Path, *, bundle, overwrite: bool = False, measure: bool = False,
            pixel_size: float | None = None, progress: bool = True, threshold: float | None = None,
            axes: str | None = None, method: str | None = None, write_prob: bool | None = None,
            seed_threshold: float | None = None, min_size: int | None = None) -> Path:
    """Predict ``paths`` (image or stack files) with a semantic ``bundle`` into ``out``.

    ``threshold`` (foreground probability) defaults to the checkpoint's; ``axes`` gives the axes
    of stacks whose metadata does not; ``method`` is ``watershed`` or ``components``;
    ``seed_threshold`` and ``min_size`` override the checkpoint's post-processing.
    """
    cfg = _model_cfg(bundle)
    over = {k: v for k, v in (("seed_threshold", seed_threshold), ("min_size", min_size)) if v is not None}
    if over:
        if not 0 < over.get("seed_threshold", 0.5) < 1 or over.get("min_size", 0) < 0:
            raise InputError(f"invalid post-processing setting(s) {over}")
        cfg = cfg.model_copy(update={"postprocess": cfg.postprocess.model_copy(update=over)})
    threshold = float(bundle.extra.get("threshold", cfg.postprocess.threshold) if threshold is None else threshold)
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    if method not in (None, "watershed", "components"):
        raise InputError(f"unknown instance method '{method}' (watershed or components)")
    write_prob = cfg.postprocess.write_prob if write_prob is None else write_prob
    paths = [Path(p) for p in paths]
    names = [p.stem for p in paths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"several input images share the name(s) {', '.join(dupes[:5])}; outputs would collide")
    out = Path(out)
    # read every header first: a stack without axes fails before any work is done
    stacks = [read_stack(p, axes=axes) for p in paths]
    targets = [out / "predictions.json"] + ([out / "measurements.csv"] if measure else [])
    for name, st in zip(names, stacks):
        ext = ".png" if st.is_2d else ".tif"
        targets += [out / f"{name}_labels.tif", out / f"{name}_overlay.png"]
        targets += [out / f"{name}_{safe_class_name(c)}{ext}" for c in bundle.class_names]
        if write_prob:
            targets.append(out / f"{name}_prob.tif")
    check_writable(targets, overwrite=overwrite)
    prepare_output_dir(out)

    images_meta, anns, tables, seconds = [], [], [], []
    iterator = list(zip(paths, stacks))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="predict", unit="image")
    for path, st in iterator:
        if st.data.size == 0:
            raise InputError("image is empty", path=path)
        px = pixel_size if pixel_size is not None else st.pixel_size
        norm_range = None
        if bundle.normalize.get("per") == "stack" and not st.is_2d:
            norm_range = tuple(float(v) for v in np.percentile(
                st.data, [bundle.normalize.get("low", 1.0), bundle.normalize.get("high", 99.8)]))
        lab_axes = st.axes.replace("C", "")
        pa = st.plane_axes
        hw = (st.data.shape[st.axes.index("Y")], st.data.shape[st.axes.index("X")])
        lab_can = np.zeros(st.plane_shape + hw, np.uint32)
        prob_can = None
        offset = 0
        plane_imgs = {}
        cls_all = [0]
        for idx, img in st.planes():
            t0 = time.perf_counter()
            labels, classes, scores, probs = segment_plane(bundle, cfg, img, threshold=threshold, method=method,
                                                           norm_range=norm_range)
            seconds.append(time.perf_counter() - t0)
            key = tuple(idx[a] for a in pa)
            n = int(labels.max(initial=0))
            shifted = np.where(labels > 0, labels.astype(np.uint32) + offset, 0).astype(np.uint32)
            lab_can[key] = shifted
            cls_all += list(classes[1:])
            if write_prob:
                if prob_can is None:
                    prob_can = np.zeros(st.plane_shape + (probs.shape[0] - 1,) + probs.shape[1:], np.float32)
                prob_can[key] = 1.0 - probs[0] if probs.shape[0] == 2 else probs[1:]
            image_id = len(images_meta) + 1
            meta = {"id": image_id, "file_name": path.name, "height": int(labels.shape[0]),
                    "width": int(labels.shape[1])}
            if pa:
                meta["plane"] = {a: int(i) for a, i in idx.items()}
                meta["axes"] = st.axes
            images_meta.append(meta)
            cls_shift = np.concatenate([[0], np.zeros(offset, np.int64), classes[1:]])
            sc_shift = np.concatenate([[0.0], np.zeros(offset, np.float32), scores[1:]]).astype(np.float32)
            if n:
                anns += coco_annotations_from_labels(shifted.astype(np.int64), cls_shift, sc_shift,
                                                     image_id=image_id, start_id=len(anns) + 1)
            if measure:
                tables.append(_measure(shifted, img, cls_shift, sc_shift, bundle.class_names,
                                       path.stem, px, idx))
            plane_imgs[key] = img
            offset += n
        label_classes = np.asarray(cls_all, np.int64)
        dtype = np.uint16 if offset <= np.iinfo(np.uint16).max else np.uint32
        labels_out = _from_canonical(lab_can.astype(dtype), pa, lab_axes)
        like = Stack(st.data, st.axes, pixel_size=px, z_spacing=st.z_spacing, time_interval=st.time_interval,
                     ome=st.ome)
        name = path.stem
        if st.is_2d:
            write_like(out / f"{name}_labels.tif", labels_out, lab_axes, like, overwrite=overwrite)
            img2d = plane_imgs[()]
            from morphoscope.io.images import write_png

            write_png(out / f"{name}_overlay.png", overlay(img2d, labels_out.astype(np.int64), label_classes),
                      overwrite=overwrite)
            per_pixel = label_classes[labels_out.astype(np.int64)]
            for k, cname in enumerate(bundle.class_names, start=1):
                write_png(out / f"{name}_{safe_class_name(cname)}.png",
                          ((per_pixel == k) & (labels_out > 0)).astype(np.uint8) * 255, overwrite=overwrite)
        else:
            write_like(out / f"{name}_labels.tif", labels_out, lab_axes, like, overwrite=overwrite)
            keys = list(plane_imgs)
            mid = keys[len(keys) // 2]
            from morphoscope.io.images import write_png

            write_png(out / f"{name}_overlay.png",
                      overlay(plane_imgs[mid], lab_can[mid].astype(np.int64), label_classes), overwrite=overwrite)
            per_pixel = label_classes[lab_can.astype(np.int64)]
            for k, cname in enumerate(bundle.class_names, start=1):
                m = ((per_pixel == k) & (lab_can > 0)).astype(np.uint8) * 255
                write_like(out / f"{name}_{safe_class_name(cname)}.tif", _from_canonical(m, pa, lab_axes),
                           lab_axes, like, overwrite=overwrite)
        if write_prob:
            if prob_can.shape[len(pa)] == 1:
                write_like(out / f"{name}_prob.tif", _from_canonical(prob_can[..., 0, :, :], pa, lab_axes),
                           lab_axes, like, overwrite=overwrite)
            else:
                p_axes = pa + "CYX"
                write_like(out / f"{name}_prob.tif", prob_can, p_axes, like, overwrite=overwrite)
    from morphoscope import __version__

    info = {"model": bundle.name, "model_path": str(bundle.path) if bundle.path else None, "task": "semantic",
            "threshold": threshold, "method": method or cfg.postprocess.method,
            "seed_threshold": cfg.postprocess.seed_threshold, "min_size": cfg.postprocess.min_size,
            "device": str(bundle.device),
            "model_metrics": bundle.metrics, "morphoscope": __version__,
            "seconds_per_plane": float(np.mean(seconds)) if seconds else None}
    write_predictions_json(out / "predictions.json", images_meta, anns, bundle.class_names, info,
                           overwrite=overwrite)
    if measure:
        from morphoscope.morphology import concat_tables, write_table

        write_table(concat_tables(tables), out / "measurements.csv", overwrite=overwrite)
    return out


def _from_canonical(arr: np.ndarray, plane_axes: str, axes: str) -> np.ndarray:
    """``(*planes, Y, X)`` in plane_axes order -> the stored order ``axes`` (no C)."""
    can_axes = plane_axes + "YX"
    return np.ascontiguousarray(np.transpose(arr, [can_axes.index(a) for a in axes]))


def _measure(labels, image, classes, scores, class_names, name, pixel_size, idx):
    from morphoscope.morphology import measure_labels

    present = np.unique(labels)
    present = present[present > 0]
    table = measure_labels(labels.astype(np.int64), image=image, pixel_size=pixel_size, image_name=name,
                           scores={int(k): float(scores[k]) for k in present},
                           classes={int(k): int(classes[k]) for k in present}, class_names=class_names)
    for a, i in idx.items():
        table.insert(1, a.lower(), int(i))
    return table
