"""Classification metrics, all computed with scikit-learn's implementations.

For ``N`` images and ``K`` classes, from the true labels, the predicted probabilities and the
decisions (multi-label: probability >= the class's threshold; single-label: the most probable
class):

``per_class``      precision, recall, F1 and support (true images) of each class, plus ROC-AUC
                   where the class is both present and absent among the true labels (else None)
                   and the number of images predicted to have it;
``micro_f1``       F1 of all (image, class) decisions pooled;
``macro_f1``       mean of the per-class F1 over all K classes (a class never present nor
                   predicted counts 0, scikit-learn's ``zero_division=0``);
``macro_f1_present`` the same mean over the classes present in the true labels only;
``exact_match``    share of images whose whole label set is right (subset accuracy);
``hamming_loss``   share of wrong (image, class) decisions (single-label: 1 - accuracy);
``mean_roc_auc``   mean per-class ROC-AUC over the classes where it is defined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_indicator(y_true, k: int) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim == 1:  # class indices
        out = np.zeros((len(y), k), np.int64)
        out[np.arange(len(y)), y.astype(np.int64)] = 1
        return out
    return (y > 0).astype(np.int64)


def decide(y_score: np.ndarray, thresholds=None, *, multi_label: bool = True,
           default_threshold: float = 0.5) -> np.ndarray:
    """0/1 decisions ``(N, K)``: multi-label ``score >= threshold`` per class, else argmax."""
    y_score = np.asarray(y_score, np.float64)
    if not multi_label:
        out = np.zeros(y_score.shape, np.int64)
        if len(y_score):
            out[np.arange(len(y_score)), y_score.argmax(1)] = 1
        return out
    thr = np.full(y_score.shape[1], default_threshold) if thresholds is None else np.asarray(thresholds, np.float64)
    return (y_score >= thr[None, :]).astype(np.int64)


def classification_metrics(y_true, y_score, *, thresholds: Sequence[float] | None = None,
                           y_pred=None, class_names: Sequence[str] | None = None,
                           multi_label: bool = True, default_threshold: float = 0.5) -> dict:
    """Metrics of one set of predictions (module docstring). ``y_true``: ``(N, K)`` 0/1 (or
    ``(N,)`` class indices, single-label); ``y_score``: ``(N, K)`` probabilities; ``y_pred``:
    ``(N, K)`` 0/1 decisions, default from ``thresholds`` (multi-label) or argmax."""
    from sklearn.metrics import (accuracy_score, f1_score, hamming_loss,
                                 precision_recall_fscore_support, roc_auc_score)

    y_score = np.asarray(y_score, np.float64)
    n, k = y_score.shape
    yt = _as_indicator(y_true, k)
    if yt.shape != (n, k):
        raise ValueError(f"true labels have shape {yt.shape}, scores {y_score.shape}")
    yp = decide(y_score, thresholds, multi_label=multi_label, default_threshold=default_threshold) \
        if y_pred is None else _as_indicator(y_pred, k)
    names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
    labels = list(range(k))
    if multi_label:
        p, r, f, s = precision_recall_fscore_support(yt, yp, average=None, labels=labels, zero_division=0)
        micro = f1_score(yt, yp, average="micro", zero_division=0)
        macro = f1_score(yt, yp, average="macro", zero_division=0)
        present = [c for c in labels if yt[:, c].any()]
        macro_present = f1_score(yt, yp, average="macro", labels=present, zero_division=0) if present else 0.0
        exact = accuracy_score(yt, yp)
        hamming = hamming_loss(yt, yp)
    else:
        ti, pi = yt.argmax(1), yp.argmax(1)
        p, r, f, s = precision_recall_fscore_support(ti, pi, average=None, labels=labels, zero_division=0)
        micro = f1_score(ti, pi, average="micro", labels=labels, zero_division=0)
        macro = f1_score(ti, pi, average="macro", labels=labels, zero_division=0)
        present = [c for c in labels if (ti == c).any()]
        macro_present = f1_score(ti, pi, average="macro", labels=present, zero_division=0) if present else 0.0
        exact = accuracy_score(ti, pi)
        hamming = hamming_loss(ti, pi)
    per_class, aucs = {}, []
    thr = None if thresholds is None else list(thresholds)
    for c in labels:
        auc = None
        if 0 < yt[:, c].sum() < n:
            auc = float(roc_auc_score(yt[:, c], y_score[:, c]))
            aucs.append(auc)
        per_class[names[c]] = {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]),
                               "support": int(s[c]), "predicted": int(yp[:, c].sum()), "roc_auc": auc}
        if multi_label:
            per_class[names[c]]["threshold"] = (float(thr[c]) if thr is not None
                                                else default_threshold if y_pred is None else None)
    return {"images": int(n), "classes": int(k), "multi_label": bool(multi_label),
            "micro_f1": float(micro), "macro_f1": float(macro), "macro_f1_present": float(macro_present),
            "classes_present": len(present), "exact_match": float(exact), "hamming_loss": float(hamming),
            "mean_roc_auc": float(np.mean(aucs)) if aucs else None, "roc_auc_classes": len(aucs),
            "per_class": per_class}


INFO_JSON = "classification_info.json"
SUMMARY_KEYS = ("micro_f1", "macro_f1", "macro_f1_present", "exact_match", "hamming_loss", "mean_roc_auc")


def summary(metrics: dict) -> dict:
    """The scalar quantities of :func:`classification_metrics`."""
    return {key: metrics[key] for key in SUMMARY_KEYS}


def tune_thresholds(y_true, y_score, *, default: float = 0.5) -> tuple[list[float], list[bool]]:
    """Per-class threshold maximising F1 on ``(y_true, y_score)`` (scikit-learn's
    ``precision_recall_curve``). The threshold is put halfway between the chosen score and the
    next lower one, so the decisions on these images are the optimal ones but the boundary is not
    at a training example. Classes without a positive image keep ``default``. Returns
    ``(thresholds, tuned)``."""
    from sklearn.metrics import precision_recall_curve

    y_score = np.asarray(y_score, np.float64)
    yt = _as_indicator(y_true, y_score.shape[1])
    thresholds, tuned = [], []
    for c in range(y_score.shape[1]):
        if not yt[:, c].any():
            thresholds.append(float(default))
            tuned.append(False)
            continue
        prec, rec, thr = precision_recall_curve(yt[:, c], y_score[:, c])
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)[:-1]
        i = int(np.argmax(f1))  # first maximum: the lowest threshold reaching the best F1
        lower = np.max(y_score[:, c][y_score[:, c] < thr[i]], initial=-np.inf)
        t = (thr[i] + lower) / 2 if np.isfinite(lower) else thr[i] / 2
        thresholds.append(float(t))
        tuned.append(True)
    return thresholds, tuned


def format_metrics(m: dict, *, title: str = "") -> str:
    """Plain-text table of :func:`classification_metrics`."""
    def f(v):
        return "    -" if v is None else f"{v:.3f}"

    lines = [title] if title else []
    lines.append(f"{m['images']} images, {m['classes']} classes ({m['classes_present']} present); "
                 f"{'multi-label' if m['multi_label'] else 'single-label'}")
    lines.append("  ".join(f"{k} {f(m[k])}" for k in SUMMARY_KEYS))
    w = max(10, *(len(n) for n in m["per_class"]))
    lines.append(f"{'class':<{w}} {'prec':>6} {'recall':>6} {'F1':>6} {'AUC':>6} {'true':>5} {'pred':>5}"
                 + (f" {'thr':>5}" if m["multi_label"] else ""))
    for name, c in m["per_class"].items():
        lines.append(f"{name:<{w}} {c['precision']:>6.3f} {c['recall']:>6.3f} {c['f1']:>6.3f} "
                     f"{f(c['roc_auc']):>6} {c['support']:>5} {c['predicted']:>5}"
                     + (f" {f(c['threshold']):>5}" if m["multi_label"] else ""))
    return "\n".join(lines)


def read_classifications_csv(path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """``(names, class_names, probabilities (N, K), decisions (N, K))`` of a
    ``classifications.csv`` written by ``morphoscope predict``."""
    from pathlib import Path

    import pandas as pd

    from morphoscope.errors import InputError

    path = Path(path)
    if path.is_dir():
        path = path / "classifications.csv"
    if not path.is_file():
        raise InputError("no classifications.csv (the output of 'morphoscope predict' with a "
                         "classification model)", path=path)
    df = pd.read_csv(path, dtype={"image": str, "labels": str}, keep_default_na=False)
    prob_cols = [c for c in df.columns if c.startswith("prob_")]
    if "image" not in df.columns or "labels" not in df.columns or not prob_cols:
        raise InputError("not a classifications.csv: needs image, prob_<class> and labels columns", path=path)
    class_names = [c[len("prob_"):] for c in prob_cols]
    probs = df[prob_cols].to_numpy(np.float64)
    pred = np.zeros(probs.shape, np.int64)
    for i, cell in enumerate(df["labels"]):
        for tok in str(cell).split():
            pred[i, int(tok)] = 1
    return list(df["image"]), class_names, probs, pred


def evaluate_classifications(pred, gt, *, channels=None, images=None) -> dict:
    """Score a ``classifications.csv`` (or its folder) against a labelled dataset ``gt`` (CSV
    or class folders, :func:`~morphoscope.tasks.classify.data.load_classification_dataset`; per-channel
    file names from ``channels`` or the model's, recorded in ``classification_info.json``). Rows
    are paired by image name; every GT image needs a row. Returns :func:`classification_metrics`
    plus ``"gt"`` and ``"pred"``."""
    from pathlib import Path

    from morphoscope.tasks.classify.data import load_classification_dataset
    from morphoscope.errors import InputError

    names, class_names, probs, decisions = read_classifications_csv(pred)
    info_path = Path(pred) / INFO_JSON if Path(pred).is_dir() else Path(pred).with_name(INFO_JSON)
    info = {}
    if info_path.is_file():
        import json

        info = json.loads(info_path.read_text())
    if channels is None:
        channels = info.get("channels")
    ds = load_classification_dataset(gt, class_names=class_names, channels=channels, images=images)
    row = {n: i for i, n in enumerate(names)}
    order, missing = [], []
    for s in ds.samples:
        key = s.id if s.id in row else s.id.rsplit("/", 1)[-1]
        if key not in row:
            missing.append(s.id)
        else:
            order.append(row[key])
    if missing:
        raise InputError(f"{len(missing)} GT image(s) have no row in the predictions: "
                         f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""), path=pred)
    if "multi_label" in info:
        multi = bool(info["multi_label"])
    else:  # single-label rows have one label each and probabilities summing to 1
        multi = bool((decisions.sum(1) != 1).any()) or not np.allclose(probs.sum(1), 1.0, atol=1e-3)
    out = classification_metrics(ds.label_matrix(), probs[order], y_pred=decisions[order],
                                 class_names=class_names, multi_label=multi)
    out["gt"], out["pred"] = str(gt), str(pred)
    return out
