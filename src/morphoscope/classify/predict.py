"""Prediction with a classification model: ``classifications.csv``, one row per image.

Columns: ``image`` (name; with per-channel files ``X_green.png`` the name is ``X``), ``file``,
``prob_<class name>`` for every class (sigmoid probabilities for multi-label models, softmax for
single-label ones), ``labels`` (the predicted class ids, space-separated: the ``Target`` format
of the training CSV) and ``label_names`` (``;``-separated). A multi-label model predicts a class
when its probability reaches the class's threshold stored in the checkpoint (tuned on the
validation images for the best F1); a single-label model predicts the most probable class.
``classification_info.json`` beside it records the model, thresholds and classes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from morphoscope.classify.data import group_prediction_files, prepare_input, read_sample_image
from morphoscope.classify.metrics import INFO_JSON, decide
from morphoscope.errors import InputError
from morphoscope.io.atomic import atomic_write, check_writable, prepare_output_dir

CSV_NAME = "classifications.csv"


def model_settings(bundle) -> dict:
    """What prediction needs to know about a classification bundle's inputs and outputs."""
    cfg = bundle.config
    norm = bundle.normalize
    k = len(bundle.class_names)
    multi = cfg["model"].get("head", "multi_label") == "multi_label"
    thr = bundle.extra.get("thresholds")
    if multi and thr is None:
        thr = [cfg.get("train", {}).get("default_threshold", 0.5)] * k
    return {"in_channels": cfg["model"]["in_channels"], "image_size": cfg["data"]["image_size"],
            "intensity": norm.get("intensity", cfg["data"].get("intensity", "dtype")),
            "mean": norm["mean"], "std": norm["std"], "channels": cfg["data"].get("channels"),
            "multi_label": multi, "thresholds": thr if multi else None}


@torch.inference_mode()
def predict_probabilities(bundle, images, *, batch_size: int = 8) -> np.ndarray:
    """Probabilities ``(N, K)`` of native ``(H, W, C)`` images (an iterable; read lazily)."""
    st = model_settings(bundle)
    model = bundle.model
    model.eval()
    out, batch = [], []

    def flush():
        x = torch.stack(batch).to(bundle.device)
        logits = model(x).float()
        p = torch.sigmoid(logits) if st["multi_label"] else torch.softmax(logits, dim=1)
        out.append(p.cpu().numpy())
        batch.clear()

    for img in images:
        batch.append(prepare_input(img, intensity=st["intensity"], image_size=st["image_size"],
                                   mean=st["mean"], std=st["std"]))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return np.concatenate(out) if out else np.zeros((0, len(bundle.class_names)), np.float32)


def classify_image(bundle, image: np.ndarray) -> dict:
    """One image (native dtype; ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)``) ->
    ``{"probabilities": {class name: probability}, "labels": [predicted class names]}`` (web app,
    API). Grey stored as RGB is accepted by a grey model; other channel mismatches raise
    :class:`InputError`."""
    from morphoscope.classify.data import _channels_last, fit_channels

    st = model_settings(bundle)
    img = fit_channels(_channels_last(np.asarray(image), None), st["in_channels"], None)
    probs = predict_probabilities(bundle, [img])[0]
    pred = decide(probs[None], st["thresholds"], multi_label=st["multi_label"])[0]
    return {"probabilities": {n: float(p) for n, p in zip(bundle.class_names, probs)},
            "labels": [n for n, d in zip(bundle.class_names, pred) if d]}


def predict_samples(bundle, samples, *, batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """Probabilities of ``samples`` (each ``(name, files)``), reading each image once."""
    st = model_settings(bundle)

    def images():
        it = samples
        if progress:
            from tqdm import tqdm

            it = tqdm(samples, desc="classify", unit="image")
        for name, files in it:
            yield read_sample_image(files, st["in_channels"], f"image '{name}'")

    return predict_probabilities(bundle, images(), batch_size=batch_size)


def write_classifications(out: Path, names, files, probs: np.ndarray, bundle, *,
                          overwrite: bool = False) -> Path:
    """``classifications.csv`` and ``classification_info.json`` in ``out`` (atomically)."""
    import pandas as pd

    from morphoscope import __version__

    st = model_settings(bundle)
    pred = decide(probs, st["thresholds"], multi_label=st["multi_label"])
    cols = {"image": list(names), "file": [str(f) for f in files]}
    for k, n in enumerate(bundle.class_names):
        cols[f"prob_{n}"] = np.round(probs[:, k], 6)
    cols["labels"] = [" ".join(str(k) for k in np.flatnonzero(row)) for row in pred]
    cols["label_names"] = [";".join(bundle.class_names[k] for k in np.flatnonzero(row)) for row in pred]
    out = prepare_output_dir(out)
    with atomic_write(out / CSV_NAME, overwrite=overwrite, mode="w") as fh:
        pd.DataFrame(cols).to_csv(fh, index=False)
    info = {"model": bundle.name, "model_path": str(bundle.path) if bundle.path else None,
            "task": "classify", "multi_label": st["multi_label"], "class_names": bundle.class_names,
            "channels": st["channels"],
            "thresholds": st["thresholds"], "images": len(cols["image"]), "device": str(bundle.device),
            "model_metrics": bundle.metrics, "morphoscope": __version__}
    with atomic_write(out / INFO_JSON, overwrite=overwrite, mode="w") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    return out / CSV_NAME


def predict(paths, out, *, bundle, overwrite: bool = False, measure: bool = False,
            pixel_size: float | None = None, progress: bool = True, batch_size: int = 8,
            **_ignored) -> Path:
    """Classify the image files ``paths`` with ``bundle`` into ``out/classifications.csv``;
    returns ``out``. Called by :func:`morphoscope.prediction.predict.predict`."""
    out = Path(out)
    if measure:
        warnings.warn("--measure applies to instance segmentation models; a classification model "
                      "gives one row per image (classifications.csv)", stacklevel=2)
    st = model_settings(bundle)
    groups = group_prediction_files([Path(p) for p in paths], st["channels"])
    if not groups:
        raise InputError("no images to classify")
    check_writable([out / CSV_NAME, out / INFO_JSON], overwrite=overwrite)
    probs = predict_samples(bundle, groups, batch_size=batch_size, progress=progress)
    write_classifications(out, [g[0] for g in groups], [g[1][0] for g in groups], probs, bundle,
                          overwrite=overwrite)
    return out
