"""``morphoscope evaluate --model``: predict the images of an annotated dataset with a model
through the prediction engine, then score the predictions as ``evaluate --pred`` does."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from morphoscope.prediction.predict import predict_groups, resolve_bundle


def evaluate_model(model, gt: str | Path, *, out: str | Path | None = None, device: str = "auto",
                   overwrite: bool = False, progress: bool = True, max_detections: int = 1000,
                   **options) -> dict:
    """Score ``model`` (a shipped name, checkpoint, run folder or loaded bundle) on the annotated
    ``gt``. Predictions go to ``out`` (kept) or a temporary folder (removed). ``options`` are
    the model's prediction settings (``score_threshold``, ``threshold``, ...). Returns the
    result of :func:`morphoscope.metrics.evaluate.evaluate` (segmentation models) or of
    ``evaluate_classifications`` (classifiers), with ``"kind"`` saying which."""
    bundle = resolve_bundle(model, device=device)
    gt = Path(gt)
    tmp = None
    pred = Path(out) if out is not None else Path(tmp := tempfile.mkdtemp(prefix="morphoscope-evaluate-"))
    try:
        if bundle.task.result_kind == "classes":
            from morphoscope.tasks.classify.data import load_classification_dataset
            from morphoscope.tasks.classify.metrics import evaluate_classifications

            channels = getattr(bundle.cfg.data, "channels", None)
            dataset = load_classification_dataset(gt, class_names=list(bundle.class_names), channels=channels)
            predict_groups(bundle, [(s.id, s.files) for s in dataset.samples], pred,
                           overwrite=overwrite or tmp is not None, progress=progress, **options)
            result = evaluate_classifications(pred, gt, channels=channels)
        else:
            from morphoscope.formats import load_instance_dataset
            from morphoscope.metrics.evaluate import evaluate

            dataset = load_instance_dataset(gt)
            predict_groups(bundle, [(s.name, [s.image_path]) for s in dataset.samples], pred,
                           overwrite=overwrite or tmp is not None, progress=progress, **options)
            result = evaluate(pred, gt, max_detections=max_detections)
        result["kind"] = bundle.task.result_kind
        result["model"] = bundle.name
        if tmp is not None:
            result["pred"] = "(temporary)"
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
