"""Per-image matching scores, their mean over images, and the DSB score.

:func:`~morphoscope.metrics.matching.matching_stats` pools TP, FP and FN over all images before
taking ratios, so an image with many objects weighs more. The 2018 Data Science Bowl, StarDist
(``matching_dataset(..., by_image=True)``) and Cellpose report instead the mean over images of
each image's own ratio; both are given side by side by :func:`morphoscope.metrics.evaluate`.

Per image and IoU threshold ``t`` (matching as in :mod:`.matching`: one-to-one pairs with
IoU >= t): TP, FP, FN, precision, recall, F1 and ``ap`` = TP / (TP + FP + FN).

**DSB score** of one image: the mean of its ``ap`` over the ten IoU thresholds 0.5, 0.55, ...,
0.95; of a set of images: the mean of the images' DSB scores (the score of the 2018 Data Science
Bowl, "mean average precision at different IoU thresholds").

**Empty images.** An image with no GT object and no predicted object takes the perfect value (1)
for precision, recall, F1 and ``ap`` at every threshold, so its DSB score is 1: it was answered
correctly, and a set of one such image scores the same pooled and per image (the convention of
:mod:`.matching`). StarDist's ``matching``
returns 0 for every ratio whenever TP = 0, so such an image scores 0 there; Cellpose's
``average_precision`` gives NaN (0/0). The Kaggle statement of the DSB metric leaves the case
undefined, and it never arises on DSB2018 (every stage-1 image has nuclei). Results therefore
count these images (``images_without_objects``): StarDist's per-image mean of a quantity equals
ours minus ``images_without_objects / images``. Any other 0/0 is 0 in all three (an image with GT
objects and no prediction scores 0, and so does an image without GT objects but with
predictions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from morphoscope.metrics.matching import THRESHOLDS, Matching, _stats, threshold_key

#: The quantities of each threshold in a per-image row, named ``"{quantity}@{threshold}"``.
ROW_QUANTITIES = ("tp", "fp", "fn", "precision", "recall", "f1", "ap")
#: The quantities averaged over images.
MEAN_QUANTITIES = ("precision", "recall", "f1", "ap")
#: IoU thresholds of the DSB score.
DSB_THRESHOLDS: tuple[float, ...] = THRESHOLDS
_DSB_KEYS = tuple(threshold_key(t) for t in DSB_THRESHOLDS)


def column(quantity: str, threshold: float | str) -> str:
    """Column name of ``quantity`` at IoU ``threshold`` in a per-image row: ``"f1@0.5"``."""
    key = threshold if isinstance(threshold, str) else threshold_key(threshold)
    return f"{quantity}@{key}"


def image_row(matching: Matching, *, image: str,
              thresholds: Sequence[float] | None = None) -> dict:
    """One image's row: ``image``, ``n_gt``, ``n_pred``, ``"{quantity}@{threshold}"`` for each
    quantity of :data:`ROW_QUANTITIES` at each threshold of the matching (or only at
    ``thresholds``, which the matching must cover), and ``dsb_score`` (None unless the row covers
    all of IoU 0.5:0.05:0.95)."""
    keys = (list(matching.by_threshold) if thresholds is None
            else [threshold_key(t) for t in thresholds])
    row: dict = {"image": str(image), "n_gt": int(matching.n_gt), "n_pred": int(matching.n_pred)}
    for key in keys:
        tm = matching[key]
        stats = _stats(tm.tp, tm.fp, tm.fn, float(tm.ious.sum()))
        for q in ROW_QUANTITIES:
            row[column(q, key)] = stats[q]
    if all(k in keys for k in _DSB_KEYS):
        row["dsb_score"] = float(np.mean([row[column("ap", k)] for k in _DSB_KEYS]))
    else:
        row["dsb_score"] = None
    return row


def image_rows(matchings: Sequence[Matching], names: Sequence[str], *,
               thresholds: Sequence[float] | None = None) -> list[dict]:
    """:func:`image_row` of each matching, named by ``names``."""
    if len(matchings) != len(names):
        raise ValueError(f"{len(matchings)} matchings but {len(names)} image names")
    return [image_row(m, image=n, thresholds=thresholds) for m, n in zip(matchings, names)]


def thresholds_of(rows: Sequence[Mapping]) -> list[str]:
    """The threshold keys present in per-image rows, in column order."""
    if not rows:
        return []
    return [c.split("@", 1)[1] for c in rows[0] if c.startswith("ap@")]


def per_image_summary(rows: Sequence[Mapping]) -> dict:
    """Mean over the images of ``rows`` (from :func:`image_row`).

    Returns ``{"per_image_mean": {threshold: {precision, recall, f1, ap}}, "dsb_score",
    "images", "images_without_objects"}``; means are None for no rows, ``dsb_score`` also when
    the rows lack a threshold of 0.5:0.05:0.95. Works on any subset of rows (e.g. one imaging
    modality).
    """
    n = len(rows)
    mean = {}
    for key in thresholds_of(rows):
        mean[key] = {q: float(np.mean([r[column(q, key)] for r in rows])) for q in MEAN_QUANTITIES}
    dsb = [r.get("dsb_score") for r in rows]
    return {
        "per_image_mean": mean,
        "dsb_score": float(np.mean(dsb)) if n and all(v is not None for v in dsb) else None,
        "images": n,
        "images_without_objects": sum(1 for r in rows if r["n_gt"] == 0 and r["n_pred"] == 0),
    }


def per_image_table(rows: Sequence[Mapping]):
    """Per-image rows as a :class:`pandas.DataFrame` (one row per image, the columns of
    :func:`image_row`)."""
    import pandas as pd

    return pd.DataFrame(list(rows))
