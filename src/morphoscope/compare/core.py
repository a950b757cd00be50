"""``morphoscope compare``: several trained models, the same images, the same metrics, one table.

Outputs in ``out`` (docs/compare.md): ``comparison.md`` / ``.csv`` / ``.json`` (the side-by-side
table, bootstrap intervals and pairwise differences), plots, and one prediction folder per model
(``predictions/<model>/``) that the numbers were computed from.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from morphoscope.compare.bootstrap import paired_bootstrap, resample_weights
from morphoscope.errors import InputError
from morphoscope.io.atomic import atomic_write, check_writable

OUTPUT_FILES = ("comparison.md", "comparison.csv", "comparison.json", "differences.csv")

# rows shown in the Markdown table, per family, in order: (key, label)
SEG_ROWS = [("f1@0.5", "F1 @ IoU 0.5"), ("precision@0.5", "precision @ 0.5"), ("recall@0.5", "recall @ 0.5"),
            ("fnr@0.5", "false-negative rate @ 0.5"), ("ap@0.5", "TP/(TP+FP+FN) @ 0.5"),
            ("f1@0.75", "F1 @ IoU 0.75"), ("ap@0.75", "TP/(TP+FP+FN) @ 0.75"),
            ("ap@0.5:0.95", "TP/(TP+FP+FN) @ 0.5:0.95"), ("pixel_iou", "pixel IoU"), ("pixel_dice", "pixel Dice"),
            ("coco_mask_AP", "COCO mask AP"), ("coco_mask_AP50", "COCO mask AP50"),
            ("coco_mask_AP75", "COCO mask AP75"), ("coco_mask_AR", "COCO mask AR"), ("coco_box_AP", "COCO box AP"),
            ("tp@0.5", "TP @ 0.5"), ("fp@0.5", "FP @ 0.5"), ("fn@0.5", "FN @ 0.5"),
            ("objects_gt", "GT objects"), ("objects_pred", "predicted objects")]
CLS_ROWS = [("micro_f1", "micro F1"), ("macro_f1", "macro F1 (all classes)"),
            ("macro_f1_present", "macro F1 (classes present)"), ("exact_match", "exact match"),
            ("hamming_loss", "Hamming loss"), ("mean_roc_auc", "mean ROC-AUC"), ("images", "images")]


def _model_names(models, names) -> list[str]:
    if names is not None:
        if len(names) != len(models):
            raise InputError(f"{len(names)} names for {len(models)} models")
        out = list(names)
    else:
        out = []
        for m in models:
            p = Path(str(m))
            n = p.name if p.is_dir() else (p.parent.name if p.stem in ("model_best", "checkpoint_last") and p.parent.name
                                          else p.stem)
            out.append(n or str(m))
    seen: dict[str, int] = {}
    unique = []
    for n in out:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return unique


def compare(models, gt, *, out=None, names=None, score_threshold: float = 0.5, n_boot: int = 2000,
            ci: float = 0.95, seed: int = 0, device: str = "auto", overwrite: bool = False,
            plots: bool = True, progress: bool = False) -> dict:
    """Evaluate ``models`` (shipped names, checkpoint files, run folders or loaded bundles) on the
    annotated ``gt`` and compare them (module docstring). Returns the result that
    ``comparison.json`` holds: ``{"task", "gt", "models": {name: {"table", "evaluation", ...}},
    "bootstrap", "rows", ...}``. Without ``out`` nothing is kept on disk."""
    from morphoscope.engine.bundle import ModelBundle
    from morphoscope.tasks import load_model

    models = list(models)
    if not models:
        raise InputError("compare needs at least one model")
    if not 0 < ci < 1:
        raise InputError(f"confidence level must be between 0 and 1, got {ci}")
    if n_boot < 100:
        raise InputError(f"use at least 100 bootstrap replicates, got {n_boot}")
    if not 0.0 <= score_threshold <= 1.0:
        raise InputError(f"score threshold must be in [0, 1], got {score_threshold}")
    gt = Path(gt)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        check_writable([out_dir / f for f in OUTPUT_FILES], overwrite=overwrite)
    labels = _model_names([(m.path or m.name) if isinstance(m, ModelBundle) else m for m in models], names)
    bundles = []
    for m, label in zip(models, labels):
        b = m if isinstance(m, ModelBundle) else load_model(m, device=device)
        b.name = label
        bundles.append(b)
    kinds = {b.task.result_kind for b in bundles}
    if kinds == {"objects"}:
        family = "segmentation"
    elif kinds == {"classes"}:
        family = "classification"
    else:
        raise InputError("cannot compare models of different kinds: "
                         + ", ".join(f"{b.name} ({b.task.name})" for b in bundles))

    tmp = None
    work = out_dir if out_dir is not None else Path(tmp := tempfile.mkdtemp(prefix="morphoscope-compare-"))
    try:
        pred_root = work / "predictions"
        if family == "segmentation":
            result = _compare_segmentation(bundles, gt, pred_root, score_threshold=score_threshold,
                                           n_boot=n_boot, ci=ci, seed=seed, progress=progress)
        else:
            result = _compare_classify(bundles, gt, pred_root, n_boot=n_boot, ci=ci, seed=seed, progress=progress)
        result.update({"gt": str(gt), "score_threshold": score_threshold if family == "segmentation" else None,
                       "model_paths": {b.name: str(b.path) if b.path else None for b in bundles}})
        if out_dir is not None:
            write_outputs(result, out_dir, overwrite=overwrite, plots=plots)
        else:
            for m in result["models"].values():
                m.pop("predictions", None)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _warn_few(n: int) -> None:
    if n < 10:
        warnings.warn(f"only {n} image(s): the bootstrap intervals are rough; compare on more images "
                      "before trusting a difference", stacklevel=3)


def _compare_segmentation(bundles, gt: Path, pred_root: Path, *, score_threshold, n_boot, ci, seed, progress) -> dict:
    from morphoscope.compare import segmentation as seg
    from morphoscope.formats.dataset import load_instance_dataset

    dataset = load_instance_dataset(gt)
    if not dataset.samples:
        raise InputError("the GT dataset has no images", path=gt)
    _warn_few(len(dataset.samples))
    results = [seg.evaluate_model(b, dataset, gt, pred_root / b.name, score_threshold=score_threshold,
                                  progress=progress) for b in bundles]
    k = len(dataset.class_names)
    boot = paired_bootstrap({r.name: r.per_image for r in results}, seg.statistics(k),
                            n_boot=n_boot, ci=ci, seed=seed)
    w = resample_weights(len(dataset.samples), n_boot, seed)
    models = {}
    for r in results:
        entry = {"task": r.task, "table": r.table, "evaluation": r.evaluation,
                 "predictions": str(r.pred_dir),
                 "curves": {"iou": seg.iou_curves(r.per_image, w, ci)},
                 "per_class": {"pixel": seg.per_class_pixel(r.per_image, list(dataset.class_names)),
                               "coco_mask_AP": (r.evaluation["coco"].get("segm") or {}).get("per_class", {}),
                               "coco_box_AP": (r.evaluation["coco"].get("bbox") or {}).get("per_class", {})},
                 "per_image": {"images": [s.name for s in dataset.samples],
                               "tp_fp_fn@0.5": r.per_image[:, :3].astype(int).tolist()}}
        if r.score_counts is not None:
            entry["curves"]["score"] = seg.score_curves(r.score_counts, w, ci)
        models[r.name] = entry
    return {"task": "segmentation", "tasks": {r.name: r.task for r in results}, "images": len(dataset.samples),
            "class_names": list(dataset.class_names), "rows": SEG_ROWS, "models": models, "bootstrap": boot}


def _compare_classify(bundles, gt: Path, pred_root: Path, *, n_boot, ci, seed, progress) -> dict:
    from morphoscope.compare import classification as cls

    dataset = cls.load_gt(gt, bundles[0])
    _warn_few(len(dataset.samples))
    for b in bundles[1:]:
        if list(b.class_names) != list(bundles[0].class_names):
            raise InputError(f"models '{bundles[0].name}' and '{b.name}' have different classes")
    results = [cls.evaluate_model(b, dataset, gt, pred_root / b.name, progress=progress) for b in bundles]
    boot = paired_bootstrap({r.name: r.per_image for r in results}, cls.statistics(len(dataset.class_names)),
                            n_boot=n_boot, ci=ci, seed=seed)
    models = {r.name: {"task": r.task, "table": r.table, "evaluation": r.evaluation,
                       "predictions": str(r.pred_dir),
                       "per_class": {"f1": {n: c["f1"] for n, c in r.evaluation["per_class"].items()},
                                     "support": {n: c["support"] for n, c in r.evaluation["per_class"].items()}}}
              for r in results}
    return {"task": "classification", "tasks": {r.name: r.task for r in results}, "images": len(dataset.samples),
            "class_names": list(dataset.class_names), "rows": CLS_ROWS, "models": models, "bootstrap": boot}


# ------------------------------------------------------------------------------------------ output


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float) and v.is_integer() and abs(v) >= 10:
        return str(int(v))
    return f"{v:.{digits}f}"


def format_markdown(result: dict) -> str:
    """The side-by-side table and the pairwise differences as Markdown."""
    names = list(result["models"])
    boot = result["bootstrap"]
    pct = round(100 * boot["ci"])
    lines = [f"# Model comparison on {result['images']} images of `{result['gt']}`", ""]
    if result["task"] == "segmentation":
        lines.append(f"Objects are kept at score >= {result['score_threshold']}; matching counts a GT object "
                     "found when one predicted object overlaps it with IoU >= the threshold.")
    lines += [f"Values in brackets: {pct}% bootstrap interval over images ({boot['n_boot']} replicates).", ""]
    lines.append("| metric | " + " | ".join(f"{n} ({result['tasks'][n]})" for n in names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for key, label in result["rows"]:
        vals = [result["models"][n]["table"].get(key) for n in names]
        if all(v is None for v in vals) and key not in boot["models"][names[0]]:
            continue
        cells = []
        for n, v in zip(names, vals):
            b = boot["models"][n].get(key)
            cell = _fmt(v)
            if b and b["low"] is not None:
                cell += f" [{_fmt(b['low'])}, {_fmt(b['high'])}]"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if len(names) > 1:
        lines += ["", f"## Differences (paired bootstrap over images, {pct}% interval)", "",
                  "`*` marks a difference larger than image-to-image variation (the interval excludes 0).", "",
                  "| metric | models | difference | interval | | better |", "|---|---|---|---|---|---|"]
        labels = dict(result["rows"])
        for d in boot["differences"]:
            lines.append(f"| {labels.get(d['metric'], d['metric'])} | {d['b']} − {d['a']} | "
                         f"{'+' if (d['diff'] or 0) >= 0 else ''}{_fmt(d['diff'])} | "
                         f"[{_fmt(d['low'])}, {_fmt(d['high'])}] | {'*' if d['significant'] else ''} | "
                         f"{d['better'] or ''} |")
    if result["task"] == "classification":
        lines += ["", "## F1 per class", "", "| class | support | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        first = result["models"][names[0]]["per_class"]
        for c in result["class_names"]:
            lines.append(f"| {c} | {first['support'][c]} | "
                         + " | ".join(_fmt(result["models"][n]["per_class"]["f1"][c]) for n in names) + " |")
    elif len(result["class_names"]) > 1:
        lines += ["", "## Per class (COCO mask AP / pixel IoU)", "", "| class | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        for c in result["class_names"]:
            cells = []
            for n in names:
                pc = result["models"][n]["per_class"]
                cells.append(f"{_fmt(pc['coco_mask_AP'].get(c))} / {_fmt(pc['pixel'][c]['iou'])}")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def write_outputs(result: dict, out: Path, *, overwrite: bool = False, plots: bool = True) -> None:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    names = list(result["models"])
    boot = result["bootstrap"]
    rows = []
    for key, label in result["rows"]:
        row = {"metric": key, "label": label}
        for n in names:
            row[n] = result["models"][n]["table"].get(key)
            b = boot["models"][n].get(key)
            row[f"{n}_low"] = b["low"] if b else None
            row[f"{n}_high"] = b["high"] if b else None
        rows.append(row)
    with atomic_write(out / "comparison.csv", overwrite=overwrite, mode="w") as fh:
        pd.DataFrame(rows).to_csv(fh, index=False)
    with atomic_write(out / "differences.csv", overwrite=overwrite, mode="w") as fh:
        pd.DataFrame(boot["differences"], columns=["metric", "a", "b", "diff", "low", "high", "significant",
                                                   "better"]).to_csv(fh, index=False)
    with atomic_write(out / "comparison.md", overwrite=overwrite, mode="w") as fh:
        fh.write(format_markdown(result))
    if plots:
        from morphoscope.compare.plots import write_plots

        result["plots"] = write_plots(result, out)
    with atomic_write(out / "comparison.json", overwrite=overwrite, mode="w") as fh:
        json.dump(result, fh, indent=1, default=_json_default)
        fh.write("\n")
