"""Plots of a comparison (matplotlib, no display needed). Each returns the file it wrote."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from morphoscope.io.atomic import atomic_write

TITLES = {"f1": "F1", "precision": "precision", "recall": "recall", "fnr": "false-negative rate"}


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())
    return path.name


def _curve_plot(result: dict, which: str, xlabel: str, path: Path, ci_pct: int) -> str | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    models = {n: m["curves"][which] for n, m in result["models"].items() if which in m.get("curves", {})}
    if not models:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharex=True)
    for ax, q in zip(axes, ("f1", "precision", "recall", "fnr")):
        for n, c in models.items():
            line, = ax.plot(c["x"], c[q]["value"], marker="o", ms=3, label=n)
            ax.fill_between(c["x"], c[q]["low"], c[q]["high"], color=line.get_color(), alpha=0.18, lw=0)
        ax.set_title(TITLES[q])
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"shaded: {ci_pct}% bootstrap interval over images", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.16, top=0.84, wspace=0.22)
    return _save(fig, path)


def _bars(values: dict[str, dict[str, float | None]], classes: list[str], title: str, ylabel: str,
          path: Path, *, horizontal: bool = False) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(values)
    n, k = len(names), len(classes)
    width = 0.8 / max(n, 1)
    pos = np.arange(k)
    if horizontal:
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * k * max(1, n / 2)))
        for i, m in enumerate(names):
            ax.barh(pos + i * width, [values[m].get(c) or 0.0 for c in classes], height=width, label=m)
        ax.set_yticks(pos + width * (n - 1) / 2, classes, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
        ax.set_xlim(0, 1)
    else:
        fig, ax = plt.subplots(figsize=(max(4, 1.2 + 0.9 * k), 3.6))
        for i, m in enumerate(names):
            ax.bar(pos + i * width, [values[m].get(c) or 0.0 for c in classes], width=width, label=m)
        ax.set_xticks(pos + width * (n - 1) / 2, classes, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x" if horizontal else "y")
    fig.tight_layout()
    return _save(fig, path)


def write_plots(result: dict, out: Path) -> list[str]:
    written = []
    pct = round(100 * result["bootstrap"]["ci"])
    classes = result["class_names"]
    if result["task"] == "segmentation":
        for which, xlabel, fname in (("iou", "IoU threshold", "vs_iou_threshold.png"),
                                     ("score", "score threshold (IoU 0.5)", "vs_score_threshold.png")):
            f = _curve_plot(result, which, xlabel, out / fname, pct)
            if f:
                written.append(f)
        ap = {n: m["per_class"]["coco_mask_AP"] or {classes[0]: m["table"].get("coco_mask_AP")}
              for n, m in result["models"].items()}
        written.append(_bars(ap, classes, "COCO mask AP per class", "AP", out / "coco_ap_per_class.png"))
        pix = {n: {c: v["iou"] for c, v in m["per_class"]["pixel"].items()} for n, m in result["models"].items()}
        written.append(_bars(pix, classes, "pixel IoU per class", "IoU", out / "pixel_iou_per_class.png"))
    else:
        f1 = {n: m["per_class"]["f1"] for n, m in result["models"].items()}
        support = next(iter(result["models"].values()))["per_class"]["support"]
        labels = [f"{c} ({support[c]})" for c in classes]
        f1 = {n: {lab: v[c] for lab, c in zip(labels, classes)} for n, v in f1.items()}
        written.append(_bars(f1, labels, "F1 per class (true images in brackets)", "F1",
                             out / "per_class_f1.png", horizontal=True))
    return written
