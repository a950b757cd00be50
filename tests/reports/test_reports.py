"""The HTML report (structure, embedded images, no external resources), its figures, and the
precision/recall/F1 curves against brute-force recomputation and morphoscope.metrics."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from morphoscope.errors import InputError
from morphoscope.reports import (
    build_report,
    distribution_figure,
    figure_png,
    pairs_for_scores,
    report_html,
    score_histogram_figure,
    score_threshold_curve,
)
from morphoscope.reports.html import SECTIONS, resolve_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "morphology"))
from morphology_testdata import run_cli  # noqa: E402

DATA_URI = re.compile(r'src="data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)"')


def embedded_images(text: str) -> list[Image.Image]:
    out = []
    for mime, b64 in DATA_URI.findall(text):
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        im.load()  # decodes the whole image, raises if it is damaged
        assert im.format == {"image/png": "PNG", "image/jpeg": "JPEG"}[mime]
        out.append(im)
    return out


def assert_self_contained(text: str):
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', text), "external reference"
    assert "http://" not in text and "https://" not in text


def test_report_with_ground_truth(pred_gt, tmp_path):
    pred, gt = pred_gt
    out = build_report(pred, tmp_path / "r.html", gt=gt, images=gt / "images",
                       measurements=("area", "circularity", "intensity_mean"))
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    for s in SECTIONS:
        assert f'<section id="{s}">' in text
    assert_self_contained(text)
    images = embedded_images(text)
    # 3 distributions, scatter matrix, score histogram, 2 overlays, 2 P/R/F1 curves, per image
    assert len(images) == 10
    assert all(im.width > 100 and im.height > 100 for im in images)
    assert "test-model" in text  # settings from predictions.json info
    assert "Best score threshold" in text and "Best IoU threshold" in text
    assert "intensity_mean" in text and "nucleus" in text
    # per-image section: the DSB score and one table row per image, worst first
    from morphoscope.metrics.evaluate import evaluate

    official = evaluate(pred, gt)
    assert f"<b>DSB score</b> {official['dsb_score']:.3f}" in text
    assert 'alt="per-image F1 and DSB score"' in text
    section = text[text.index('id="per-image"'):text.index('id="definitions"')]
    worst_first = sorted(official["per_image"], key=lambda r: r["dsb_score"])
    assert [section.index(f'<td class="l">{r["image"]}</td>') for r in worst_first] == sorted(
        section.index(f'<td class="l">{r["image"]}</td>') for r in worst_first)
    mean_f1 = f"{official['per_image_mean']['0.5']['f1']:.4g}"
    assert mean_f1 in text
    with pytest.raises(Exception, match="already exists"):
        build_report(pred, out)


def test_report_cli_without_ground_truth(pred_gt, tmp_path, capsys):
    pred, _ = pred_gt
    code, out, err = run_cli(["report", pred, "--out", tmp_path / "r.html", "--gallery", "1",
                              "--measurements", "area,eccentricity"], capsys)
    assert code == 0, err
    text = (tmp_path / "r.html").read_text()
    assert "No ground truth given" in text
    assert len(re.findall('<figure><img src="data:image/jpeg', text)) == 1  # --gallery 1
    assert 'alt="distribution of eccentricity"' in text
    assert 'alt="distribution of solidity"' not in text
    for s in SECTIONS:
        assert f'id="{s}"' in text
    embedded_images(text)
    code, out, err = run_cli(["report", pred, "--out", tmp_path / "x.html", "--measurements",
                              "roundness"], capsys)
    assert code == 2 and "unknown measurement" in err
    code, out, err = run_cli(["report", pred, "--out", tmp_path / "r.txt"], capsys)
    assert code == 2 and "HTML" in err
    code, out, err = run_cli(["report", tmp_path / "nowhere", "--out", tmp_path / "x.html"],
                             capsys)
    assert code == 2 and "not found" in err and "Traceback" not in err
    code, out, err = run_cli(["report", pred, "--out", tmp_path / "r.html"], capsys)
    assert code == 2 and "--overwrite" in err


def test_report_from_run_folder_and_table(pred_gt, tmp_path):
    import shutil

    pred, _ = pred_gt
    run = tmp_path / "run"
    shutil.copytree(pred, run / "predictions")
    (run / "config.yaml").write_text("model:\n  name: maskrcnn_r18\nepochs: 3\n")
    (run / "metrics.json").write_text(json.dumps({"f1@0.5": 0.91}))
    assert resolve_source(run) == (run / "predictions", run)
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "empty_run" / "config.yaml").write_text("x: 1\n")
    with pytest.raises(InputError, match="holds no predictions"):
        resolve_source(tmp_path / "empty_run")
    from morphoscope.morphology import measure_prediction_dir, write_table

    table = measure_prediction_dir(run / "predictions")
    table["group"] = np.where(table.image == table.image.iloc[0], "control", "treated")
    write_table(table, tmp_path / "m.parquet")
    text = report_html(run, table=tmp_path / "m.parquet", measurements=("solidity",),
                       gallery=0)
    assert "maskrcnn_r18" in text and "f1@0.5" in text  # run settings shown
    assert "control / " in text or "nucleus / control" in text  # per group summaries
    assert len(embedded_images(text)) == 3  # 1 distribution, scatter, scores; no gallery


def test_empty_prediction_report(tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    tifffile.imwrite(pred / "a_labels.tif", np.zeros((30, 30), np.uint16))
    (pred / "predictions.json").write_text(json.dumps({
        "info": {}, "images": [{"id": 1, "file_name": "a.tif", "width": 30, "height": 30}],
        "categories": [{"id": 1, "name": "nucleus"}], "annotations": []}))
    text = report_html(pred)
    for s in SECTIONS:
        assert f'id="{s}"' in text
    assert "0 objects in 1 images" in text
    embedded_images(text)


def test_score_curve_matches_brute_force(pred_gt):
    """TP/FP/FN at each score threshold against re-matching only the kept objects."""
    from morphoscope.io.images import read_label_image
    from morphoscope.metrics.matching import match
    from morphoscope.morphology.measure import prediction_objects, read_predictions

    pred, gt = pred_gt
    pairs = pairs_for_scores(pred, gt, iou=0.5)
    curve = score_threshold_curve(pairs, thresholds=[0.0, 0.3, 0.5, 0.62, 0.8, 0.95, 1.01])
    objects = prediction_objects(read_predictions(pred))
    for i, t in enumerate(curve["thresholds"]):
        tp = fp = fn = 0
        for name, entry in objects.items():
            p = read_label_image(pred / f"{name}_labels.tif")
            g = read_label_image(gt / "labels" / f"{name}.png")
            lut = np.zeros(int(p.max()) + 1, p.dtype)
            for lab, s in entry["scores"].items():
                if s >= t:
                    lut[lab] = lab
            m = match(g, lut[p], thresholds=[0.5])[0.5]
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        assert (curve["tp"][i], curve["fp"][i], curve["fn"][i]) == (tp, fp, fn), t
    assert curve["f1"][curve["best_index"]] == curve["f1"].max()


def test_iou_curve_matches_evaluate(pred_gt):
    from morphoscope.metrics.evaluate import evaluate
    from morphoscope.reports.scores import gt_curves

    pred, gt = pred_gt
    curves = gt_curves(pred, gt)
    official = evaluate(pred, gt)["matching"]
    for key, stats in official.items():
        for k in ("tp", "fp", "fn", "precision", "recall", "f1"):
            assert curves["matching"][key][k] == pytest.approx(stats[k]), (key, k)
        i = list(np.round(curves["iou"]["thresholds"], 2)).index(float(key))
        assert curves["iou"]["f1"][i] == pytest.approx(stats["f1"])
    best = curves["iou"]["best_index"]
    assert curves["iou"]["f1"][best] == max(curves["iou"]["f1"])
    # the report's per-image rows, means and DSB score are evaluate's
    ev = evaluate(pred, gt)
    assert curves["per_image"] == ev["per_image"]
    assert curves["per_image_mean"] == ev["per_image_mean"]
    assert curves["dsb_score"] == ev["dsb_score"] is not None


def test_figures_per_group_and_class():
    rng = np.random.default_rng(0)
    n = 400
    table = pd.DataFrame({
        "image": rng.choice(["a", "b"], n), "class": rng.choice(["nucleus", "granule"], n),
        "group": rng.choice(["control", "drug"], n), "score": rng.uniform(0, 1, n),
        "area_um2": rng.lognormal(3, 0.5, n), "circularity": rng.uniform(0.5, 1, n)})
    table.loc[:5, "circularity"] = np.nan
    fig = distribution_figure(table, "area_um2")
    hist_ax, violin_ax = fig.axes
    labels = [t.get_text() for t in hist_ax.get_legend().get_texts()]
    assert len(labels) == 4 and any("granule / drug" in s for s in labels)
    assert [t.get_text() for t in violin_ax.get_xticklabels()][0] == "granule / control"
    assert "µm²" in hist_ax.get_xlabel()
    fig = distribution_figure(table, "circularity")
    assert "6 objects without a finite value" in fig.texts[0].get_text()
    fig = score_histogram_figure(table)
    assert len(fig.axes) == 2
    im = Image.open(io.BytesIO(figure_png(fig)))
    im.load()
    assert im.format == "PNG"
