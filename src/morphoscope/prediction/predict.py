"""``morphoscope predict``: images in, instance labels, masks, overlays and COCO JSON out.

The work is split so that later scaling changes nothing visible: :func:`predict_instances` takes
one image to raw detections (the place for GPU batching and tiling), :meth:`InstancePrediction.to_labels`
applies the score threshold, and the writer turns labels into files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.io.atomic import check_writable, prepare_output_dir
from morphoscope.io.images import find_images, read_image
from morphoscope.prediction.instance import InstancePrediction, predict_instances
from morphoscope.prediction.writer import (coco_annotations_from_labels, output_paths,
                                           write_instance_outputs, write_predictions_json)


def label_arrays(pred: InstancePrediction, score_threshold: float):
    """Labels plus per-label class and score arrays (index 0 = background)."""
    labels, index = pred.to_labels(score_threshold)
    classes = np.concatenate([[0], pred.classes[index]]).astype(np.int64)
    scores = np.concatenate([[0.0], pred.scores[index]]).astype(np.float32)
    return labels, classes, scores


def read_2d_image(path: Path) -> np.ndarray:
    img = read_image(path)
    if img.ndim == 3 and img.shape[-1] not in (1, 2, 3, 4):
        # a stack: instance models take one plane; the first is used and the user told so
        import warnings

        warnings.warn(f"{path}: multi-page image {img.shape}; predicting its first plane only", stacklevel=2)
        img = img[0]
    if img.ndim not in (2, 3):
        raise InputError(f"cannot predict on an image of shape {img.shape}", path=path)
    return img


def predict(inputs, out: str | Path, *, model=None, score_threshold: float = 0.5, device: str = "auto",
            overwrite: bool = False, measure: bool = False, pixel_size: float | None = None,
            progress: bool = True, threshold: float | None = None, axes: str | None = None) -> Path:
    """Predict every image of ``inputs`` (files, folders, globs) with ``model`` (a name, file, run
    folder or loaded :class:`ModelBundle`; default: the shipped ``nuclei`` model) into ``out``.

    Writes the files of docs/outputs.md and, with ``measure``, ``measurements.csv`` (one row per
    object). Returns the output folder. Existing outputs are refused unless ``overwrite``.
    ``threshold`` (probability) and ``axes`` (of stacks) apply to semantic models.
    """
    from morphoscope.models.registry import ModelBundle, load_model

    if not 0.0 <= score_threshold <= 1.0:
        raise InputError(f"score threshold must be in [0, 1], got {score_threshold}")
    paths = find_images(inputs)
    bundle = model if isinstance(model, ModelBundle) else load_model(model, device=device)
    out = Path(out)
    if bundle.task != "instance":
        import importlib

        mod = importlib.import_module(f"morphoscope.{'semantic' if bundle.task == 'semantic' else 'classify'}.predict")
        extra = {k: v for k, v in (("threshold", threshold), ("axes", axes)) if v is not None}
        return mod.predict(paths, out, bundle=bundle, overwrite=overwrite, measure=measure,
                           pixel_size=pixel_size, progress=progress, **extra)
    names = [p.stem for p in paths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"several input images share the name(s) {', '.join(dupes[:5])}; outputs would collide")
    targets = [q for n in names for q in output_paths(out, n, bundle.class_names)] + [out / "predictions.json"]
    if measure:
        targets.append(out / "measurements.csv")
    check_writable(targets, overwrite=overwrite)
    prepare_output_dir(out)

    images_meta, anns, tables = [], [], []
    iterator = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc="predict", unit="image")
    for image_id, path in enumerate(iterator, start=1):
        img = read_2d_image(path)
        pred = predict_instances(bundle, img)
        labels, classes, scores = label_arrays(pred, score_threshold)
        write_instance_outputs(out, path.stem, img, labels, classes, bundle.class_names, overwrite=overwrite)
        images_meta.append({"id": image_id, "file_name": path.name, "height": int(img.shape[0]),
                            "width": int(img.shape[1])})
        anns += coco_annotations_from_labels(labels, classes, scores, image_id=image_id, start_id=len(anns) + 1)
        if measure:
            tables.append(_measure(labels, img, classes, scores, bundle.class_names, path, pixel_size))
    info = {"model": bundle.name, "model_path": str(bundle.path) if bundle.path else None,
            "task": bundle.task, "score_threshold": score_threshold, "device": str(bundle.device),
            "model_metrics": bundle.metrics}
    from morphoscope import __version__

    info["morphoscope"] = __version__
    write_predictions_json(out / "predictions.json", images_meta, anns, bundle.class_names, info,
                           overwrite=overwrite)
    if measure:
        from morphoscope.morphology import concat_tables, write_table

        write_table(concat_tables(tables), out / "measurements.csv", overwrite=overwrite)
    return out


def _measure(labels, image, classes, scores, class_names, path, pixel_size):
    from morphoscope.morphology import measure_labels

    n = int(labels.max(initial=0))
    return measure_labels(labels, image=image, pixel_size=pixel_size, image_name=path.stem,
                          scores={k: float(scores[k]) for k in range(1, n + 1)},
                          classes={k: int(classes[k]) for k in range(1, n + 1)}, class_names=class_names)
