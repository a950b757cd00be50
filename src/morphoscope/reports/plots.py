"""Figures of measurement tables and detection scores (matplotlib, no display needed).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`figure_png` turns one into
PNG bytes. Colours are fixed per class (and hatch-free line styles per group) so that figures of
one report can be compared with each other.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

from morphoscope.morphology.definitions import BY_NAME, base_name

# Points drawn per class in violin plots and scatter matrices (histograms use every value).
MAX_POINTS = 20_000
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
SCATTER_DEFAULT = ("area", "circularity", "eccentricity", "solidity", "aspect_ratio")


def _figure(*args, **kwargs):
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def figure_png(fig, *, dpi: int = 100) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # fixed margins: "tight" layouts cost seconds
    return buf.getvalue()


def column_label(column: str) -> str:
    """Axis label of a table column: the measurement name with its unit."""
    name = base_name(column) or column
    unit = column[len(name):].lstrip("_")
    nice = name.replace("_", " ")
    units = {"px2": "px²", "um2": "µm²", "px": "px", "um": "µm", "deg": "degrees"}
    if unit in units:
        return f"{nice} ({units[unit]})"
    if unit.startswith("ch"):
        return f"{nice} (channel {unit[2:]})"
    return nice


def class_colours(classes: Sequence[str]) -> dict[str, str]:
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}


def _finite(values) -> np.ndarray:
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    return v[np.isfinite(v)]


def _subsample(v: np.ndarray, n: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    if len(v) <= n:
        return v
    return np.random.default_rng(seed).choice(v, n, replace=False)


def _bins(v: np.ndarray, n: int = 40) -> np.ndarray:
    if len(v) == 0:
        return np.linspace(0, 1, n + 1)
    lo, hi = np.percentile(v, [0.5, 99.5]) if len(v) > 200 else (v.min(), v.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def _groups_of(table: pd.DataFrame, group: str | None) -> list:
    if group is None or group not in table:
        return [None]
    return sorted(table[group].dropna().astype(str).unique()) or [None]


def distribution_figure(
    table: pd.DataFrame,
    column: str,
    *,
    by: str = "class",
    group: str | None = "group",
):
    """Histogram (left) and violin with box plot (right) of one measurement column, per class
    and, when the table has a ``group`` column with several values, per group.

    Histograms are normalised to a density so that groups of different sizes compare; the bins
    span the 0.5-99.5 percentiles of all values (values outside are counted in the end bins).
    Non-finite values are left out (and their number shown in the title).
    """
    classes = sorted(table[by].astype(str).unique()) if by in table and len(table) else []
    groups = _groups_of(table, group)
    colours = class_colours(classes)
    styles = ["-", "--", ":", "-."]
    allv = _finite(table[column]) if len(table) else np.zeros(0)
    n_bad = int(len(table) - len(allv))
    fig = _figure(figsize=(11, 3.8))
    ax_h, ax_v = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    fig.subplots_adjust(left=0.075, right=0.99, bottom=0.2, top=0.88, wspace=0.22)
    bins = _bins(allv)
    positions, data, labels, colors = [], [], [], []
    for ci, cls in enumerate(classes):
        for gi, grp in enumerate(groups):
            sel = table[by].astype(str) == cls
            if grp is not None:
                sel &= table[group].astype(str) == grp
            v = _finite(table.loc[sel, column])
            if len(v) == 0:
                continue
            name = cls if grp is None else f"{cls} / {grp}"
            ax_h.hist(np.clip(v, bins[0], bins[-1]), bins=bins, density=True, histtype="step",
                      linewidth=1.6, color=colours[cls], linestyle=styles[gi % len(styles)],
                      label=f"{name} (n={len(v)})")
            positions.append(ci * (len(groups) + 1) + gi)
            data.append(_subsample(v))
            labels.append(name)
            colors.append(colours[cls])
    ax_h.set_xlabel(column_label(column))
    ax_h.set_ylabel("density")
    if data:
        ax_h.legend(fontsize=8, frameon=False)
        parts = ax_v.violinplot(data, positions=positions, showextrema=False, widths=0.8)
        for body, c in zip(parts["bodies"], colors):
            body.set_facecolor(c)
            body.set_edgecolor(c)
            body.set_alpha(0.35)
        ax_v.boxplot(data, positions=positions, widths=0.25, showfliers=False,
                     medianprops={"color": "black"})
        ax_v.set_xticks(positions)
        ax_v.set_xticklabels(labels, rotation=20 if len(labels) > 3 else 0, ha="right"
                             if len(labels) > 3 else "center", fontsize=8)
    else:
        for ax in (ax_h, ax_v):
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center",
                    transform=ax.transAxes)
    ax_v.set_ylabel(column_label(column))
    title = column_label(column)
    if n_bad:
        title += f"  ({n_bad} objects without a finite value left out)"
    fig.suptitle(title, fontsize=11)
    return fig


def scatter_matrix_figure(
    table: pd.DataFrame, columns: Sequence[str] | None = None, *, by: str = "class",
    max_points: int = 5_000,
):
    """Pairwise scatter plots of the main shape descriptors (lower triangle; histograms on the
    diagonal), coloured by class; at most ``max_points`` objects per class are drawn (chosen at
    random). Default descriptors: area, circularity, eccentricity, solidity, aspect ratio."""
    if columns is None:
        columns = [c for c in table.columns if base_name(c) in SCATTER_DEFAULT]
        order = {n: i for i, n in enumerate(SCATTER_DEFAULT)}
        columns = sorted(columns, key=lambda c: order[base_name(c)])
    k = len(columns)
    classes = sorted(table[by].astype(str).unique()) if len(table) else []
    colours = class_colours(classes)
    fig = _figure(figsize=(2.2 * k + 0.6, 2.2 * k + 0.4))
    rng = np.random.default_rng(0)
    sample = []
    for cls in classes:
        sub = table[table[by].astype(str) == cls]
        if len(sub) > max_points:
            sub = sub.iloc[np.sort(rng.choice(len(sub), max_points, replace=False))]
        values = {c: pd.to_numeric(sub[c], errors="coerce").to_numpy(float) for c in columns}
        sample.append((cls, values))
    grid = fig.add_gridspec(k, k, left=0.1, right=0.99, bottom=0.08, top=0.95, wspace=0.08,
                            hspace=0.08)
    limits = {}
    for c in columns:
        v = _finite(table[c]) if len(table) else np.zeros(0)
        limits[c] = _bins(v, 30)
    for i, yc in enumerate(columns):
        for j, xc in enumerate(columns[: i + 1]):
            ax = fig.add_subplot(grid[i, j])
            bins = limits[xc]
            if i == j:
                for cls, vals in sample:
                    v = vals[xc][np.isfinite(vals[xc])]
                    ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, histtype="step",
                            color=colours[cls], density=True)
                ax.tick_params(left=False, labelleft=False)
            else:
                for cls, vals in sample:
                    x, y = vals[xc], vals[yc]
                    ok = np.isfinite(x) & np.isfinite(y)
                    ax.scatter(x[ok], y[ok], s=3, alpha=0.4, color=colours[cls],
                               rasterized=True, linewidths=0)
                ax.set_ylim(limits[yc][0], limits[yc][-1])
                if j == 0:
                    ax.set_ylabel(column_label(yc), fontsize=8)
                else:
                    ax.tick_params(labelleft=False)
            ax.set_xlim(bins[0], bins[-1])
            if i == k - 1:
                ax.set_xlabel(column_label(xc), fontsize=8)
            else:
                ax.tick_params(labelbottom=False)
            ax.tick_params(labelsize=7)
    if len(classes) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", color=colours[c], label=c)
                   for c in classes]
        fig.legend(handles=handles, loc="upper right", frameon=False, fontsize=9)
    return fig


def score_histogram_figure(table: pd.DataFrame, *, by: str = "class", bins: int = 40):
    """Histogram of detection scores per class (one panel per class, shared score axis)."""
    classes = sorted(table[by].astype(str).unique()) if len(table) else []
    colours = class_colours(classes)
    n = max(len(classes), 1)
    fig = _figure(figsize=(min(4 * n, 12), 3.2))
    axes = np.atleast_1d(fig.subplots(1, n, sharex=True, squeeze=False)[0])
    fig.subplots_adjust(left=0.1 if n == 1 else 0.06, right=0.98, bottom=0.17, top=0.88,
                        wspace=0.25)
    edges = np.linspace(0, 1, bins + 1)
    all_scores = _finite(table["score"]) if len(table) else np.zeros(0)
    if len(all_scores) and (all_scores.min() < 0 or all_scores.max() > 1):
        edges = _bins(all_scores, bins)
    for ax, cls in zip(axes, classes):
        v = _finite(table.loc[table[by].astype(str) == cls, "score"])
        ax.hist(v, bins=edges, color=colours[cls], alpha=0.8)
        ax.set_title(f"{cls} (n={len(v)})", fontsize=10)
        ax.set_xlabel("score")
    axes[0].set_ylabel("objects")
    if not classes:
        axes[0].text(0.5, 0.5, "no objects", ha="center", va="center",
                     transform=axes[0].transAxes)
    return fig


def _prf_axes(ax, x, curve: dict, best_index: int, xlabel: str):
    for key, colour in (("precision", "#1f77b4"), ("recall", "#2ca02c"), ("f1", "#d62728")):
        ax.plot(x, curve[key], color=colour, label=key if key != "f1" else "F1", linewidth=1.8)
    bx, bf = x[best_index], curve["f1"][best_index]
    ax.axvline(bx, color="#555555", linestyle="--", linewidth=1)
    ax.plot([bx], [bf], "o", color="#d62728")
    lo, hi = float(np.min(x)), float(np.max(x))
    right = hi > lo and (bx - lo) / (hi - lo) > 0.6
    ax.annotate(f"best F1 {bf:.3f}\nat {bx:.2f}", (bx, bf),
                xytext=(-8 if right else 8, 10 if bf < 0.85 else -34),
                textcoords="offset points", fontsize=9, ha="right" if right else "left")
    ax.set_xlabel(xlabel)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(frameon=True, framealpha=0.9, fontsize=9, loc="best")


def pr_vs_score_figure(curve: dict):
    """Precision, recall and F1 against the score threshold (objects with score >= threshold
    are kept), with the threshold that maximises F1 marked. ``curve`` comes from
    :func:`morphoscope.reports.scores.score_threshold_curve`."""
    fig = _figure(figsize=(6.5, 4))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.91)
    x = np.asarray(curve["thresholds"])
    _prf_axes(ax, x, curve, int(curve["best_index"]),
              f"score threshold (matching at IoU >= {curve['iou']:.2f})")
    ax.set_title("Precision / recall / F1 vs score threshold", fontsize=11)
    return fig


def pr_vs_iou_figure(curve: dict):
    """Precision, recall and F1 against the IoU threshold of the matching, with the threshold
    that maximises F1 marked. ``curve`` comes from
    :func:`morphoscope.reports.scores.iou_threshold_curve`."""
    fig = _figure(figsize=(6.5, 4))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.91)
    x = np.asarray(curve["thresholds"])
    _prf_axes(ax, x, curve, int(curve["best_index"]), "IoU threshold")
    ax.set_title("Precision / recall / F1 vs IoU threshold", fontsize=11)
    return fig


def per_image_figure(rows: Sequence[dict]):
    """Per-image accuracy: each image's F1 at IoU 0.5 and DSB score, images ranked from worst to
    best (left, with the mean over images dashed), and against the image's GT object count
    (right). ``rows`` are the per-image rows of :func:`morphoscope.metrics.evaluate`."""
    fig = _figure(figsize=(11, 3.8))
    rank_ax, count_ax = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.9, wspace=0.2)
    series = [("f1@0.5", "F1 at IoU 0.5", "#1f77b4"), ("dsb_score", "DSB score", "#d62728")]
    n_gt = np.array([r["n_gt"] for r in rows], float)
    for key, label, colour in series:
        v = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
        if not np.isfinite(v).any():
            continue
        ranked = np.sort(v[np.isfinite(v)])
        x = np.arange(1, len(ranked) + 1)
        rank_ax.plot(x, ranked, marker="o", markersize=3, linewidth=1.2, color=colour,
                     label=f"{label} (mean {ranked.mean():.3f})")
        rank_ax.axhline(ranked.mean(), color=colour, linestyle="--", linewidth=0.8)
        count_ax.scatter(n_gt, v, s=14, color=colour, alpha=0.7, label=label)
    for ax in (rank_ax, count_ax):
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    rank_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    rank_ax.set_xlabel("images, ranked from worst to best")
    rank_ax.set_title(f"Per image ({len(rows)} images)", fontsize=11)
    rank_ax.legend(frameon=True, framealpha=0.9, fontsize=9, loc="lower right")
    count_ax.set_xlabel("GT objects in the image")
    count_ax.set_title("Per image against the number of GT objects", fontsize=11)
    count_ax.legend(frameon=True, framealpha=0.9, fontsize=9, loc="lower right")
    return fig


def measurement_description(column: str) -> str:
    """One-line definition of the measurement in ``column`` (for captions)."""
    name = base_name(column)
    if name is None:
        return ""
    m = BY_NAME[name]
    return f"{m.formula}. Range: {m.range}."
