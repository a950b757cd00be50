"""Files the web app and the HTTP API hand out, made from kept results at any threshold: label
TIFF, per-class masks, overlay PNG, measurement tables, COCO JSON, the HTML report and a ZIP of
everything laid out as ``morphoscope predict --measure`` writes it (docs/outputs.md).

Each file is made as engine/writer.py makes it (label TIFF with its pixel size, COCO RLE of each
object's own mask through ``Objects.rle``, measurements through ``measure_labels``), so the same
image gives the same files through the CLI, the Python API and the web app. Which files exist
follows what a result holds (``kind``), never the task that made it."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morphoscope.engine.writer import PALETTE, safe_class_name
from morphoscope.web.jobs import Conflict, ImageResult, Job, NotFound, png_bytes


@dataclass
class Item:
    """One image result of one job, with a file name unique among the exported items."""

    job: Job
    result: ImageResult
    name: str


def collect(jobs: list[Job]) -> list[Item]:
    items, seen = [], {}
    for job in jobs:
        for r in job.results:
            name = r.name
            if name in seen:
                seen[name] += 1
                name = f"{name}-{seen[name]}"
            else:
                seen[name] = 1
            items.append(Item(job, r, name))
    if not items:
        raise NotFound("no results to export")
    return items


def check_same_model(jobs: list[Job]) -> None:
    """Jobs exported together share one table and one threshold: their results must hold the
    same kind of thing, thresholded the same way, with the same classes."""
    if len({(j.kind, j.threshold_kind, tuple(j.class_names)) for j in jobs}) > 1:
        raise Conflict("these jobs used models whose results differ (objects or classes, score or probability "
                       "thresholds, or class names); export them separately")


def parse_classes(spec: str | None, class_names: list[str]) -> set[int] | None:
    """``"nucleus,cell"`` (names or 1-based numbers) -> class numbers; None = all."""
    if spec is None or spec.strip() == "":
        return None
    out = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if part in class_names:
            out.add(class_names.index(part) + 1)
        elif part.isdigit() and 1 <= int(part) <= len(class_names):
            out.add(int(part))
        else:
            raise NotFound(f"unknown class '{part}'; classes: {', '.join(class_names)}")
    return out


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def display_rgb(result: ImageResult) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(result.display_png)) as im:
        return np.asarray(im.convert("RGB")).copy()


def overlay_rgb(result: ImageResult, threshold: float, *, classes: set[int] | None = None,
                style: str = "outline", alpha: float = 0.45) -> np.ndarray:
    """The image with its objects coloured by class: outlines (as ``morphoscope predict``'s
    overlay), filled, or both."""
    from skimage.segmentation import find_boundaries

    rgb = display_rgb(result)
    if result.kind != "objects":
        return rgb
    lab = result.labelled(threshold)
    labels = lab.labels
    cls_map = lab.classes[labels]
    shown = labels > 0
    if classes is not None:
        shown &= np.isin(cls_map, list(classes))
    colours = PALETTE[(np.maximum(cls_map, 1) - 1) % len(PALETTE)]
    if style in ("fill", "both"):
        blend = (rgb.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha + 0.5).astype(np.uint8)
        rgb[shown] = blend[shown]
    if style in ("outline", "both"):
        edges = find_boundaries(np.where(shown, labels, 0), mode="inner") & shown
        rgb[edges] = colours[edges]
    return rgb


def class_mask_png(result: ImageResult, class_index: int, threshold: float) -> bytes:
    """The 0/255 mask of one class, as ``morphoscope predict`` writes it (engine/writer.py)."""
    from morphoscope.engine.writer import class_masks

    lab = result.labelled(threshold)
    masks = class_masks(lab.labels, lab.classes, lab.objects, len(result.class_names))
    return png_bytes(masks[class_index - 1])


def labels_tiff(result: ImageResult, threshold: float, *, work_dir: Path | None = None) -> bytes:
    """The label TIFF of ``morphoscope predict`` (engine/writer.py): zlib, uint16 (uint32 from
    65,535 objects), the pixel size recorded when known. Made in ``work_dir`` (the server's folder)."""
    from morphoscope.io.stacks import write_stack

    lab = result.labelled(threshold)
    dtype = np.uint16 if len(lab.objects) < 65535 else np.uint32
    with tempfile.TemporaryDirectory(prefix="labels-", dir=work_dir) as tmp:
        path = Path(tmp) / "labels.tif"
        write_stack(path, lab.labels.astype(dtype), "YX", pixel_size=result.pixel_size, compression="zlib")
        return path.read_bytes()


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def measurements(items: list[Item], threshold: float, plane_loader=None, pixel_size=None):
    import pandas as pd

    tables, images = [], {}
    for it in items:
        t = it.result.measurements_at(threshold, plane_loader, pixel_size)
        if it.name != it.result.name and "image" in t.columns:
            t = t.assign(image=it.name)
        images[it.name] = {"height": it.result.height, "width": it.result.width,
                           "pixel_size_um": pixel_size if pixel_size is not None else it.result.pixel_size}
        tables.append(t)
    nonempty = [t for t in tables if len(t)]
    if nonempty:
        table = pd.concat(nonempty, ignore_index=True)
    else:
        table = tables[0].iloc[0:0].copy()
    table.attrs["images"] = images
    return table


def table_records(table) -> dict:
    """A table as ``{"columns": [...], "rows": [[...], ...]}``, NaN and infinities as null."""
    cols = [str(c) for c in table.columns]
    rows = []
    arrays = [table[c].to_numpy() for c in table.columns]
    for i in range(len(table)):
        row = []
        for a in arrays:
            v = a[i]
            if isinstance(v, (np.floating, float)):
                v = float(v)
                row.append(v if math.isfinite(v) else None)
            elif isinstance(v, (np.integer,)):
                row.append(int(v))
            elif isinstance(v, (np.bool_, bool)):
                row.append(bool(v))
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                row.append(None)
            else:
                row.append(str(v))
        rows.append(row)
    return {"columns": cols, "rows": rows}


def csv_bytes(table) -> bytes:
    """A table as ``morphoscope.morphology.write_table`` writes CSV."""
    return table.to_csv(index=False, lineterminator="\n").encode("utf-8")


def coco_annotations(result: ImageResult, threshold: float, *, image_id: int, start_id: int) -> list[dict]:
    """COCO result annotations of the objects at ``threshold``, as ``morphoscope predict`` writes
    them: each object's own mask (overlaps included) as compressed RLE, its class, score and
    label in the label TIFF."""
    from morphoscope.engine.writer import coco_annotation

    objs = result.labelled(threshold).objects
    return [{"id": start_id + i, "image_id": image_id,
             **coco_annotation(objs.rle(i), int(objs.classes[i]), float(objs.scores[i]), i + 1)} for i in range(len(objs))]


def coco_predictions(items: list[Item], threshold: float) -> dict:
    """The ``predictions.json`` of ``morphoscope predict`` for these results."""
    from morphoscope import __version__

    job = items[0].job
    images, anns = [], []
    for image_id, it in enumerate(items, start=1):
        r = it.result
        if r.kind != "objects":
            raise Conflict("COCO predictions exist for models that find objects; this one classifies whole images")
        images.append({"id": image_id, "file_name": r.file_name or it.name, "height": r.height, "width": r.width})
        anns += coco_annotations(r, threshold, image_id=image_id, start_id=len(anns) + 1)
    info = {"model": job.model_id, "task": job.task, "threshold_kind": job.threshold_kind, "threshold": threshold,
            "score_threshold": threshold if job.threshold_kind == "score" else None,
            "morphoscope": __version__, "source": "morphoscope serve"}
    return {"info": info, "images": images,
            "categories": [{"id": k, "name": c} for k, c in enumerate(job.class_names, start=1)],
            "annotations": anns}


# --------------------------------------------------------------------------------------------
# the output folder, the ZIP and the report
# --------------------------------------------------------------------------------------------


def write_outputs(items: list[Item], out: Path, threshold: float, plane_loader=None, pixel_size=None) -> Path:
    """Write the files of ``morphoscope predict --measure`` (docs/outputs.md) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    class_names = items[0].job.class_names
    for it in items:
        r = it.result
        (out / f"{it.name}_overlay.png").write_bytes(png_bytes(overlay_rgb(r, threshold)))
        if r.kind == "objects":
            (out / f"{it.name}_labels.tif").write_bytes(labels_tiff(r, threshold, work_dir=out))
            for k, c in enumerate(class_names, start=1):
                (out / f"{it.name}_{safe_class_name(c)}.png").write_bytes(class_mask_png(r, k, threshold))
    if items[0].job.kind == "objects":
        (out / "predictions.json").write_text(json.dumps(coco_predictions(items, threshold)))
    table = measurements(items, threshold, plane_loader, pixel_size)
    (out / "measurements.csv").write_bytes(csv_bytes(table))
    return out


def outputs_zip(items: list[Item], threshold: float, plane_loader=None, pixel_size=None, *,
                report: bool = True, work_dir: Path | None = None, scrub=None) -> Path:
    """The ZIP of :func:`write_outputs` (and the report) as a file in ``work_dir`` (the server's
    folder under ``--tmp-dir``; the caller deletes it once sent)."""
    with tempfile.TemporaryDirectory(prefix="export-", dir=work_dir) as tmp:
        out = write_outputs(items, Path(tmp) / "predictions", threshold, plane_loader, pixel_size)
        if report:
            (out / "report.html").write_text(report_html(items, threshold, plane_loader, pixel_size, pred_dir=out,
                                                         work_dir=work_dir, scrub=scrub), encoding="utf-8")
        fd, name = tempfile.mkstemp(prefix="results-", suffix=".zip", dir=work_dir)
        with open(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for p in sorted(out.iterdir()):
                zf.write(p, f"morphoscope-results/{p.name}")
        return Path(name)


def package_report(pred_dir: Path, table=None, title: str | None = None) -> str | None:
    """The package's report (``morphoscope report``) of a prediction folder with its measurement
    table, or None when this installation has no report builder."""
    import inspect

    try:
        from morphoscope.reports import report_html as build
    except ImportError:
        return None
    params = inspect.signature(build).parameters
    kwargs = {}
    if table is not None and "table" in params:
        kwargs["table"] = table
    if title and "title" in params:
        kwargs["title"] = title
    return build(pred_dir, **kwargs)


_REPORTS: dict = {}  # (job ids, threshold, pixel size) -> HTML; finished jobs never change
_REPORTS_LOCK = threading.Lock()


def report_html(items: list[Item], threshold: float, plane_loader=None, pixel_size=None,
                pred_dir: Path | None = None, *, work_dir: Path | None = None, scrub=None) -> str:
    """A self-contained HTML report: the package's report (``morphoscope report``) for
    segmentation models, else (or if it fails) a summary made here. The last few are kept.
    Temporary files go to ``work_dir``; ``scrub`` removes server paths from the text."""
    key = (tuple(dict.fromkeys(it.job.id for it in items)), float(threshold), pixel_size)
    with _REPORTS_LOCK:
        if key in _REPORTS:
            return _REPORTS[key]
    text = _report_html(items, threshold, plane_loader, pixel_size, pred_dir, work_dir)
    if pred_dir is not None:  # the report names its folder: a temporary one, meaningless to readers
        for form in {str(pred_dir), str(Path(pred_dir).resolve())}:
            text = text.replace(html.escape(form), "predictions").replace(form, "predictions")
    if scrub is not None:
        text = scrub(text)
    with _REPORTS_LOCK:
        _REPORTS[key] = text
        while len(_REPORTS) > 6:
            _REPORTS.pop(next(iter(_REPORTS)))
    return text


def _report_html(items, threshold, plane_loader, pixel_size, pred_dir, work_dir=None) -> str:
    import logging

    job = items[0].job
    if job.kind == "objects":
        title = f"morphoscope report: {job.model_id}, {len(items)} image{'s' if len(items) != 1 else ''}"
        try:
            table = measurements(items, threshold, plane_loader, pixel_size)
            if pred_dir is None:
                with tempfile.TemporaryDirectory(prefix="report-", dir=work_dir) as tmp:
                    d = write_outputs(items, Path(tmp) / "predictions", threshold, plane_loader, pixel_size)
                    text = package_report(d, table, title)
                    for form in {str(d), str(d.resolve())}:
                        text = text.replace(html.escape(form), "predictions").replace(form, "predictions") if text else text
            else:
                text = package_report(pred_dir, table, title)
            if text:
                return text
        except Exception:  # the built-in summary below is always available
            logging.getLogger("morphoscope.web").exception("report builder failed; using the built-in summary")
    return simple_report(items, threshold, plane_loader, pixel_size)


def _svg_histogram(values: np.ndarray, title: str, colour: str = "#0072b2", bins: int = 30) -> str:
    values = values[np.isfinite(values)]
    w, h, pad = 320, 170, 30
    if len(values) == 0:
        return f'<figure><svg width="{w}" height="{h}"></svg><figcaption>{html.escape(title)}: no values</figcaption></figure>'
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = counts.max() or 1
    bw = (w - 2 * pad) / bins
    bars = "".join(
        f'<rect x="{pad + i * bw:.1f}" y="{h - pad - c / top * (h - 2 * pad):.1f}" width="{max(bw - 1, 1):.1f}" '
        f'height="{c / top * (h - 2 * pad):.1f}" fill="{colour}"/>' for i, c in enumerate(counts))
    axis = (f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>'
            f'<text x="{pad}" y="{h - 10}" font-size="10">{lo:.4g}</text>'
            f'<text x="{w - pad}" y="{h - 10}" font-size="10" text-anchor="end">{hi:.4g}</text>'
            f'<text x="{pad}" y="14" font-size="10">max {top}</text>')
    return (f'<figure><svg width="{w}" height="{h}" role="img">{bars}{axis}</svg>'
            f'<figcaption>{html.escape(title)} (n = {len(values)})</figcaption></figure>')


def simple_report(items: list[Item], threshold: float, plane_loader=None, pixel_size=None) -> str:
    from PIL import Image

    from morphoscope import __version__

    job = items[0].job
    table = measurements(items, threshold, plane_loader, pixel_size)
    esc = html.escape
    parts = [f"<h1>morphoscope results</h1><p>Model <b>{esc(job.model_id)}</b> ({esc(job.task)}), "
             f"classes {esc(', '.join(job.class_names))}, threshold {threshold:g}, "
             f"{len(items)} image(s). morphoscope {esc(__version__)}.</p>"]
    if job.kind != "objects":
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    else:
        try:
            from morphoscope.morphology import summarize

            summ = summarize(table, images=table.attrs.get("images"))
            keep = [c for c in summ.columns if c in ("image", "class", "count") or c.startswith("density")
                    or (c.endswith("_mean") and any(k in c for k in ("area", "circularity", "solidity",
                                                                     "eccentricity", "intensity_mean")))]
            parts.append("<h2>Summary</h2>" + summ[keep].to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        except Exception:
            counts = table.groupby(["image", "class"]).size().rename("count").reset_index()
            parts.append("<h2>Summary</h2>" + counts.to_html(index=False))
        figs = []
        for col in [c for c in table.columns if c.split("_")[0] in ("area", "circularity", "solidity")
                    or c == "eccentricity" or c == "intensity_mean" or c == "score"]:
            figs.append(_svg_histogram(table[col].to_numpy(np.float64), col))
        parts.append("<h2>Distributions</h2><div class='figs'>" + "".join(figs) + "</div>")
    gallery = []
    for it in items[:24]:
        rgb = overlay_rgb(it.result, threshold)
        im = Image.fromarray(rgb)
        im.thumbnail((480, 480))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        n = sum(it.result.count_at(threshold).values()) if it.result.kind == "objects" else None
        cap = esc(it.name) + (f" — {n} objects" if n is not None else f" — {esc(str(it.result.top_class))}")
        gallery.append(f'<figure><img src="{src}" alt="{esc(it.name)}"><figcaption>{cap}</figcaption></figure>')
    parts.append("<h2>Images</h2><div class='figs'>" + "".join(gallery) + "</div>")
    style = ("body{font:14px/1.5 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}"
             ".figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;color:#555}"
             "img{max-width:480px;border:1px solid #ccc}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>morphoscope report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
