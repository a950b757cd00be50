"""One self-contained HTML report of a prediction folder: settings, summary tables, measurement
distributions, scatter matrix, score histograms, an overlay gallery and, with ground truth,
precision/recall/F1 curves, pooled and per-image matching tables and the DSB score. Every image
is embedded (base64 ``data:`` URIs) and there is no script or external resource, so the file
opens offline in any browser and can be mailed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from morphoscope.errors import InputError

SECTIONS = ("settings", "summary", "distributions", "scatter", "scores", "gallery", "metrics",
            "definitions")
GALLERY_WIDTH = 640
DEFAULT_DISTRIBUTIONS = (
    "area", "perimeter", "circularity", "eccentricity", "aspect_ratio", "solidity",
    "anisotropy", "axis_major_length", "axis_minor_length", "equivalent_diameter",
    "feret_diameter_max", "feret_diameter_min", "extent", "orientation", "intensity_mean",
    "intensity_median", "intensity_integrated",
)
SUMMARY_MEASUREMENTS = ("area", "perimeter", "circularity", "eccentricity", "aspect_ratio",
                        "solidity", "anisotropy", "feret_diameter_max", "intensity_mean")

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.45}
header{background:#243447;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px 0;font-size:24px}
header p{margin:0;color:#c9d6e3;font-size:14px}
nav{background:#e9eef3;padding:8px 32px;font-size:14px;position:sticky;top:0;z-index:1}
nav a{margin-right:16px;color:#243447;text-decoration:none;font-weight:600}
main{padding:8px 32px 40px 32px;max-width:1400px}
section{background:#fff;border:1px solid #dde3e9;border-radius:6px;padding:12px 20px;
margin:18px 0}
h2{font-size:20px;margin:6px 0 10px 0;color:#243447}
h3{font-size:16px;margin:14px 0 6px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px 0}
th,td{border:1px solid #dde3e9;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f0f3f6}
td.l,th.l{text-align:left}
figure{margin:10px 0 18px 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:13px;color:#555;max-width:1000px}
.gallery{display:flex;flex-wrap:wrap;gap:14px}
.gallery figure{margin:0;width:420px}
.note{font-size:13px;color:#666}
pre{background:#f5f5f5;padding:8px;font-size:12px;overflow-x:auto;max-height:420px}
.scroll{overflow-x:auto}
"""


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


def resolve_source(path: str | Path) -> tuple[Path, Path | None]:
    """``(prediction folder, run folder or None)`` of a prediction folder or a training run
    folder (one with ``config.yaml`` that holds a prediction folder somewhere below it)."""
    path = Path(path)
    if not path.exists():
        raise InputError("folder not found", path=path)
    if not path.is_dir():
        raise InputError("expected a prediction folder (with predictions.json) or a training "
                         "run folder", path=path)
    if (path / "predictions.json").is_file():
        run = path.parent if (path.parent / "config.yaml").is_file() else None
        return path, run
    if (path / "config.yaml").is_file():
        found = sorted(p.parent for p in path.rglob("predictions.json"))
        if not found:
            raise InputError(
                "this training run folder holds no predictions; run 'morphoscope predict "
                "IMAGES --out RUN/predictions' first, or give the prediction folder", path=path)
        return found[0], path
    raise InputError("no predictions.json here: expected the output folder of 'morphoscope "
                     "predict' (or a training run folder that contains one)", path=path)


# --------------------------------------------------------------------------------------------
# HTML pieces
# --------------------------------------------------------------------------------------------


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _img(data: bytes, mime: str, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{b64}" alt="{_e(alt)}">'


def _figure_html(fig, alt: str, caption: str = "") -> str:
    from morphoscope.reports.plots import figure_png

    png = figure_png(fig)
    fig.clear()
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{_img(png, 'image/png', alt)}{cap}</figure>"


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–" if np.isnan(v) else ("∞" if v > 0 else "−∞")
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(v)


def table_html(df: pd.DataFrame, *, left: Sequence[str] = (), max_rows: int | None = None) -> str:
    """A DataFrame as an HTML table (text columns left-aligned)."""
    note = ""
    if max_rows is not None and len(df) > max_rows:
        note = (f'<p class="note">First {max_rows} of {len(df)} rows; the full table is in the '
                "measurement table.</p>")
        df = df.head(max_rows)
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = "".join(f'<td class="{"l" if c in left else ""}">{_e(_fmt(v))}</td>'
                        for c, v in zip(df.columns, rec))
        rows.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>{note}'


def _kv_table(items: Mapping) -> str:
    rows = []
    for k, v in items.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v, ensure_ascii=False)
        rows.append(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(_fmt(v))}</td></tr>')
    return f"<table>{''.join(rows)}</table>"


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and len(v) <= 20:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def _settings_section(pred_dir: Path, run_dir: Path | None, data: dict,
                      report_settings: dict) -> str:
    parts = ['<section id="settings"><h2>Settings</h2>', "<h3>This report</h3>",
             _kv_table(report_settings)]
    info = data.get("info") or {}
    parts.append("<h3>Prediction (predictions.json <code>info</code>)</h3>")
    parts.append(_kv_table(_flatten(info)) if info else
                 '<p class="note">predictions.json records no settings.</p>')
    cats = data.get("categories") or []
    if cats:
        parts.append("<p>Classes: " + ", ".join(f"{_e(c.get('name'))} (id {_e(c.get('id'))})"
                                                for c in cats) + "</p>")
    if run_dir is not None:
        parts.append(f"<h3>Training run {_e(run_dir)}</h3>")
        cfg = run_dir / "config.yaml"
        if cfg.is_file():
            text = cfg.read_text(errors="replace")[:20000]
            parts.append(f"<p>config.yaml:</p><pre>{_e(text)}</pre>")
        metrics = run_dir / "metrics.json"
        if metrics.is_file():
            text = metrics.read_text(errors="replace")
            try:
                text = json.dumps(json.loads(text), indent=1)
            except json.JSONDecodeError:
                pass
            parts.append(f"<p>metrics.json:</p><pre>{_e(text[:20000])}</pre>")
    parts.append("</section>")
    return "".join(parts)


def _summary_section(table: pd.DataFrame) -> str:
    from morphoscope.morphology.definitions import base_name
    from morphoscope.morphology.summary import summarize

    parts = ['<section id="summary"><h2>Summary</h2>']
    n_images = len(table.attrs.get("images", {})) or table["image"].nunique()
    parts.append(f"<p>{len(table):,} objects in {n_images} images.</p>")
    cols = [c for c in table.columns if base_name(c) in SUMMARY_MEASUREMENTS]
    by = ["group", "class"] if "group" in table else ["class"]
    per_class = summarize(table, by=by, measurements=cols)
    if len(per_class):
        dens = [c for c in per_class.columns if c.startswith("density")]
        rows = []
        for rec in per_class.to_dict("records"):
            name = " / ".join(str(rec[b]) for b in by)
            row = {"": name, "objects": rec["count"]}
            for d in dens:
                label = {"density_per_mm2": "objects per mm²",
                         "density_per_mpx": "objects per megapixel"}.get(d, d)
                row[label] = rec[d]
            for c in cols:
                m, s, med = rec[f"{c}_mean"], rec[f"{c}_sd"], rec[f"{c}_median"]
                row[c] = (f"{_fmt(m)} ± {_fmt(s)} (median {_fmt(med)})"
                          if np.isfinite(m) else "–")
            rows.append(row)
        df = pd.DataFrame(rows).set_index("").T.reset_index().rename(columns={"index": ""})
        parts.append("<h3>Per class" + (" and group" if "group" in by else "")
                     + " (mean ± SD (median))</h3>")
        parts.append(table_html(df, left=[""]))
    per_image = summarize(table, by=("image", "class"), measurements=[
        c for c in cols if base_name(c) in ("area", "circularity", "solidity")])
    keep = [c for c in per_image.columns if c in ("image", "class", "count")
            or c.startswith("density") or c.endswith("_mean")]
    parts.append("<h3>Per image</h3>")
    parts.append(table_html(per_image[keep], left=["image", "class"], max_rows=200))
    parts.append('<p class="note">SD: sample standard deviation. Objects without a finite value '
                 "(e.g. circularity of 1- and 2-pixel objects) are left out of the statistics. "
                 "Densities are objects per mm² when the pixel size is known, else per "
                 "megapixel.</p></section>")
    return "".join(parts)


def _distribution_section(table: pd.DataFrame, measurements: Sequence[str]) -> str:
    from morphoscope.morphology.definitions import base_name
    from morphoscope.reports.plots import distribution_figure, measurement_description

    parts = ['<section id="distributions"><h2>Measurement distributions</h2>',
             '<p class="note">One figure per measurement: histograms (normalised to a density) '
             "and violin + box plots per class"
             + (" and group" if "group" in table else "") + ". Violins and boxes use at most "
             "20,000 objects per class (chosen at random); histograms use all.</p>"]
    order = {n: i for i, n in enumerate(measurements)}
    cols = [c for c in table.columns if base_name(c) in order]
    cols.sort(key=lambda c: order[base_name(c)])
    if not len(table):
        parts.append('<p class="note">No objects.</p>')
    for c in cols if len(table) else []:
        fig = distribution_figure(table, c, group="group" if "group" in table else None)
        parts.append(_figure_html(fig, f"distribution of {c}",
                                  f"<b>{_e(c)}</b>: {_e(measurement_description(c))}"))
    parts.append("</section>")
    return "".join(parts)


def _scatter_section(table: pd.DataFrame) -> str:
    from morphoscope.reports.plots import SCATTER_DEFAULT, base_name, scatter_matrix_figure

    parts = ['<section id="scatter"><h2>Shape descriptors against each other</h2>']
    if len(table) and not any(base_name(c) in SCATTER_DEFAULT for c in table.columns):
        parts.append('<p class="note">The measurement table holds no shape descriptors.</p>')
    elif len(table):
        parts.append(_figure_html(scatter_matrix_figure(table), "scatter matrix",
                                  "Each point is one object (at most 5,000 per class, chosen "
                                  "at random); "
                                  "the axes span the 0.5–99.5 percentiles of each measurement."))
    else:
        parts.append('<p class="note">No objects.</p>')
    parts.append("</section>")
    return "".join(parts)


def _scores_section(table: pd.DataFrame) -> str:
    from morphoscope.reports.plots import score_histogram_figure

    parts = ['<section id="scores"><h2>Detection scores</h2>']
    if "score" in table and len(table):
        parts.append(_figure_html(score_histogram_figure(table), "score histograms",
                                  "Confidence scores of the detected objects, per class."))
    else:
        parts.append('<p class="note">No scores (no objects, or not a prediction).</p>')
    parts.append("</section>")
    return "".join(parts)


def _gallery_section(pred_dir: Path, table: pd.DataFrame, names: Sequence[str], n: int) -> str:
    from PIL import Image

    parts = ['<section id="gallery"><h2>Overlays</h2>']
    overlays = [(nm, pred_dir / f"{nm}_overlay.png") for nm in names]
    overlays = [(nm, p) for nm, p in overlays if p.is_file()]
    if not overlays:
        parts.append('<p class="note">No NAME_overlay.png files in the prediction folder.</p>')
    else:
        if len(overlays) > n:
            idx = np.unique(np.linspace(0, len(overlays) - 1, n).round().astype(int))
            chosen = [overlays[i] for i in idx]
            parts.append(f'<p class="note">{len(chosen)} of {len(overlays)} images, evenly '
                         "spaced in name order.</p>")
        else:
            chosen = overlays
        counts = table.groupby("image").size() if len(table) else pd.Series(dtype=int)
        scores = table.groupby("image")["score"].mean() if "score" in table and len(table) \
            else pd.Series(dtype=float)
        parts.append('<div class="gallery">')
        for nm, p in chosen:
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    if im.width > GALLERY_WIDTH:
                        h = max(1, round(im.height * GALLERY_WIDTH / im.width))
                        im = im.resize((GALLERY_WIDTH, h), Image.Resampling.LANCZOS)
                    buf = io.BytesIO()
                    im.save(buf, format="JPEG", quality=88)
            except (OSError, ValueError) as exc:  # a damaged overlay: the report goes on without it
                warnings.warn(f"{p}: overlay cannot be read ({type(exc).__name__}: {exc}); left out "
                              "of the gallery", stacklevel=2)
                parts.append(f"<figure><figcaption>{_e(nm)}: overlay cannot be read</figcaption></figure>")
                continue
            cap = f"{_e(nm)}: {int(counts.get(nm, 0))} objects"
            if nm in scores and np.isfinite(scores[nm]):
                cap += f", mean score {scores[nm]:.2f}"
            parts.append(f"<figure>{_img(buf.getvalue(), 'image/jpeg', nm)}"
                         f"<figcaption>{cap}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _metrics_section(curves: dict | None, gt: Path | None) -> str:
    from morphoscope.reports.plots import pr_vs_iou_figure, pr_vs_score_figure

    parts = ['<section id="metrics"><h2>Accuracy against ground truth</h2>']
    if curves is None:
        parts.append('<p class="note">No ground truth given (report --gt GT to add precision, '
                     "recall and F1).</p></section>")
        return "".join(parts)
    sc, ic = curves["score"], curves["iou"]
    b = sc["best_index"]
    parts.append(f"<p>Ground truth {_e(gt)}: {curves['images']} images, {curves['n_gt']:,} GT "
                 f"objects, {curves['n_pred']:,} predicted objects. A predicted and a GT object "
                 "match when their IoU reaches the threshold (one-to-one pairs, "
                 "morphoscope.metrics.matching); TP, FP and FN are pooled over all images."
                 + (f" Matched per class on the per-class label planes in {curves['class_planes']} of "
                    f"{curves['images']} images (objects of different classes may overlap)."
                    if curves.get("class_planes") else "") + "</p>")
    parts.append(f"<p><b>Best score threshold</b> (IoU ≥ {sc['iou']:.2f}): "
                 f"{sc['thresholds'][b]:.3f}, F1 {sc['f1'][b]:.3f} (precision "
                 f"{sc['precision'][b]:.3f}, recall {sc['recall'][b]:.3f}). "
                 f"<b>Best IoU threshold</b>: {ic['thresholds'][ic['best_index']]:.2f}, F1 "
                 f"{ic['f1'][ic['best_index']]:.3f}.</p>")
    parts.append(_figure_html(pr_vs_score_figure(sc), "precision recall F1 versus score",
                              "Objects with a score at or above the threshold are kept; the "
                              "dashed line marks the lowest threshold with the highest F1."))
    parts.append(_figure_html(pr_vs_iou_figure(ic), "precision recall F1 versus IoU",
                              "Every predicted object kept; matching at each IoU threshold."))
    mean = curves.get("per_image_mean") or {}
    rows = []
    for key, s in curves["matching"].items():
        m = mean.get(key, {})
        rows.append({"IoU": key, "TP": s["tp"], "FP": s["fp"], "FN": s["fn"],
                     "precision": s["precision"], "recall": s["recall"], "F1": s["f1"],
                     "TP/(TP+FP+FN)": s["ap"], "mean matched IoU": s["mean_matched_iou"],
                     "F1, mean per image": m.get("f1"),
                     "TP/(TP+FP+FN), mean per image": m.get("ap")})
    parts.append("<h3>Object matching at IoU 0.5–0.95</h3>")
    parts.append('<p class="note">TP, FP and FN are summed over all images before the ratios '
                 "are taken (pooled); the last two columns are instead the mean over images of "
                 "each image's own ratio, as the 2018 Data Science Bowl, StarDist and Cellpose "
                 "report it.</p>")
    parts.append(table_html(pd.DataFrame(rows)))
    parts.append(_per_image_html(curves))
    parts.append("</section>")
    return "".join(parts)


PER_IMAGE_ROWS = 50


def _per_image_html(curves: dict) -> str:
    from morphoscope.reports.plots import per_image_figure

    rows = curves.get("per_image") or []
    if not rows:
        return ""
    parts = ['<h3 id="per-image">Per image</h3>']
    if curves.get("dsb_score") is not None:
        empty = curves.get("images_without_objects", 0)
        note = (f" {empty} image(s) with no GT and no predicted object score 1 (StarDist's "
                "matching scores them 0)." if empty else "")
        parts.append(f"<p><b>DSB score</b> {curves['dsb_score']:.3f}: the mean over the "
                     f"{len(rows)} images of each image's mean TP/(TP+FP+FN) at IoU 0.5, "
                     f"0.55, …, 0.95 (the 2018 Data Science Bowl metric).{_e(note)}</p>")
    parts.append(_figure_html(per_image_figure(rows), "per-image F1 and DSB score",
                              "Left: each image's F1 at IoU 0.5 and DSB score, images ranked "
                              "from worst to best; dashed: the mean over images. Right: the "
                              "same against the number of GT objects in the image."))
    table = pd.DataFrame([{
        "image": r["image"], "GT": r["n_gt"], "predicted": r["n_pred"],
        "TP@0.5": r.get("tp@0.5"), "FP@0.5": r.get("fp@0.5"), "FN@0.5": r.get("fn@0.5"),
        "F1@0.5": r.get("f1@0.5"), "AP@0.5": r.get("ap@0.5"), "AP@0.75": r.get("ap@0.75"),
        "AP@0.9": r.get("ap@0.9"), "DSB score": r.get("dsb_score")} for r in rows])
    table = table.sort_values(["DSB score", "F1@0.5", "image"], kind="stable",
                              na_position="first")
    if len(table) > PER_IMAGE_ROWS:
        parts.append(f'<p class="note">The {PER_IMAGE_ROWS} images with the lowest DSB score '
                     f"of {len(table)}; 'morphoscope evaluate --per-image rows.csv' writes "
                     "every image.</p>")
        table = table.head(PER_IMAGE_ROWS)
    else:
        parts.append('<p class="note">Lowest DSB score first. AP = TP/(TP+FP+FN).</p>')
    parts.append(table_html(table, left=["image"]))
    return "".join(parts)


def _definitions_section(table: pd.DataFrame) -> str:
    from morphoscope.morphology.definitions import MEASUREMENTS, base_name

    present = {base_name(c) for c in table.columns}
    rows = [{"measurement": m.name, "definition": m.formula, "range": m.range,
             "scikit-image regionprops": m.regionprops}
            for m in MEASUREMENTS if m.name in present]
    return ('<section id="definitions"><h2>Definitions</h2>'
            + table_html(pd.DataFrame(rows), left=["measurement", "definition", "range",
                                                   "scikit-image regionprops"])
            + '<p class="note">Full definitions: docs/morphology.md.</p></section>')


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def report_html(
    source: str | Path,
    *,
    gt: str | Path | None = None,
    table: pd.DataFrame | str | Path | None = None,
    images=None,
    pixel_size: float | None = None,
    groups: Mapping[str, str] | str | Path | None = None,
    gallery: int = 12,
    measurements: Sequence[str] = DEFAULT_DISTRIBUTIONS,
    title: str | None = None,
) -> str:
    """The report of a prediction folder (or of a training run folder holding one) as HTML text.

    ``table`` is a measurement table (DataFrame, or a .csv/.parquet file from ``morphoscope
    measure``); without it the folder is measured here (with ``images`` for intensities,
    ``pixel_size`` in µm, ``groups`` as in :func:`~morphoscope.morphology.measure_files`).
    ``gt`` (any annotated dataset layout) adds the accuracy section. ``gallery`` overlays at
    most are shown; ``measurements`` choose the distribution figures.
    """
    import matplotlib

    from morphoscope.morphology.measure import (
        measure_prediction_dir,
        read_groups,
        read_predictions,
        read_table,
    )

    matplotlib.use("Agg", force=False)
    pred_dir, run_dir = resolve_source(source)
    data = read_predictions(pred_dir)
    if table is None:
        table = measure_prediction_dir(pred_dir, images=images, pixel_size=pixel_size,
                                       groups=groups)
    else:
        if not isinstance(table, pd.DataFrame):
            table_path = Path(table)
            table = read_table(table_path)
            missing = [c for c in ("image", "label", "class") if c not in table]
            if missing:
                raise InputError("not a measurement table of 'morphoscope measure': no column(s) "
                                 f"{', '.join(missing)}", path=table_path)
        if groups is not None and "group" not in table:
            mapping = groups if isinstance(groups, Mapping) else read_groups(groups)
            table = table.assign(group=table["image"].astype(str).map(mapping))
        if not table.attrs.get("images"):
            size = None
            if "pixel_size_um" in table and len(table):
                size = float(table["pixel_size_um"].iloc[0])
            table.attrs["images"] = {
                Path(im["file_name"]).stem: {"height": im.get("height"),
                                             "width": im.get("width"), "pixel_size_um": size}
                for im in data["images"] if im.get("height") and im.get("width")}
    curves = None
    if gt is not None:
        from morphoscope.reports.scores import gt_curves

        curves = gt_curves(pred_dir, gt)
    names = [Path(im["file_name"]).stem for im in data["images"]]
    physical = any(c.endswith(("_um", "_um2")) for c in table.columns)
    units = "µm" if physical else "pixels"
    from morphoscope import __version__ as version

    settings = {
        "prediction folder": str(pred_dir.resolve()),
        "images": len(names),
        "objects": len(table),
        "units": units + (f" (pixel size {table['pixel_size_um'].iloc[0]:g} µm)"
                          if units == "µm" and len(table) else ""),
        "objects touching the border": (int(table["touches_border"].sum())
                                        if "touches_border" in table else "–"),
        "ground truth": str(gt) if gt is not None else "none",
        **({"overlapping classes": "each class's objects are measured (and matched against the ground "
                                   "truth) whole on their own label plane (NAME_labels_by_class.tif): an "
                                   "object inside an object of another class is kept"}
           if any((pred_dir / f"{n}_labels_by_class.tif").is_file() for n in names) else {}),
        "morphoscope": version,
        "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }
    title = title or f"morphoscope report: {pred_dir.name}"
    body = [
        _settings_section(pred_dir, run_dir, data, settings),
        _summary_section(table),
        _distribution_section(table, measurements),
        _scatter_section(table),
        _scores_section(table),
        _gallery_section(pred_dir, table, names, gallery),
        _metrics_section(curves, None if gt is None else Path(gt)),
        _definitions_section(table),
    ]
    nav = "".join(f'<a href="#{s}">{s.capitalize()}</a>' for s in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{len(table):,} objects in {len(names)} images · "
        f"{_e(settings['generated'])}</p></header><nav>{nav}</nav><main>"
        + "\n".join(body) + "</main></body></html>\n")


def build_report(
    source: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    **kwargs,
) -> Path:
    """Write :func:`report_html` of ``source`` to ``out`` (atomically); returns ``out``.

    Keyword arguments are those of :func:`report_html`.
    """
    from morphoscope.io.atomic import atomic_write, check_writable

    out = Path(out)
    check_writable([out], overwrite=overwrite)
    text = report_html(source, **kwargs)
    with atomic_write(out, overwrite=overwrite, mode="w") as fh:
        fh.write(text)
    return out
