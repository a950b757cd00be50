"""Per-image rows, the per-image mean and the DSB score: a hand-computed case, and real
predictions of the shipped model against StarDist's own matching code
(``stardist.matching.matching_dataset(..., by_image=True)``, imported without TensorFlow)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from morphoscope.io.images import read_label_image
from morphoscope.metrics import (
    THRESHOLDS,
    evaluate,
    evaluate_arrays,
    format_table,
    per_image_summary,
    threshold_key,
)

KEYS = [threshold_key(t) for t in THRESHOLDS]


def hand_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Four 20x40 images.

    A: GT squares 1 at (0,0) and 2 at (0,20), 10x10; predicted 10x10 at (0,2) (IoU 80/120 = 2/3
       with GT 1) and a 5x5 square on background. IoU 0.5-0.65: TP 1, FP 1, FN 1 (precision =
       recall = F1 = 1/2, AP = 1/3); IoU >= 0.7: TP 0, FP 2, FN 2 (all 0). DSB = 4 * (1/3) / 10.
    B: no GT, no prediction: every ratio 1, DSB 1.
    C: one GT object, no prediction: all 0.   D: no GT, one predicted object: all 0.
    """
    gt, pred = [np.zeros((20, 40), np.uint16) for _ in range(4)], []
    gt[0][0:10, 0:10] = 1
    gt[0][0:10, 20:30] = 2
    gt[2][5:15, 5:15] = 3
    a = np.zeros((20, 40), np.uint16)
    a[0:10, 2:12] = 5
    a[12:17, 30:35] = 9
    d = np.zeros((20, 40), np.uint16)
    d[5:15, 5:15] = 4
    pred = [a, np.zeros((20, 40), np.uint16), np.zeros((20, 40), np.uint16), d]
    return gt, pred


def test_hand_computed_case():
    gt, pred = hand_case()
    out = evaluate_arrays(gt, pred, image_names=["A", "B", "C", "D"])
    rows = {r["image"]: r for r in out["per_image"]}
    assert list(rows) == ["A", "B", "C", "D"]
    a = rows["A"]
    assert (a["n_gt"], a["n_pred"]) == (2, 2)
    for key in ("0.5", "0.55", "0.6", "0.65"):
        assert (a[f"tp@{key}"], a[f"fp@{key}"], a[f"fn@{key}"]) == (1, 1, 1)
        assert a[f"precision@{key}"] == a[f"recall@{key}"] == a[f"f1@{key}"] == 0.5
        assert a[f"ap@{key}"] == pytest.approx(1 / 3)
    for key in ("0.7", "0.95"):
        assert (a[f"tp@{key}"], a[f"fp@{key}"], a[f"fn@{key}"]) == (0, 2, 2)
        assert a[f"f1@{key}"] == a[f"ap@{key}"] == 0.0
    assert a["dsb_score"] == pytest.approx(4 / 3 / 10)
    b = rows["B"]
    assert (b["n_gt"], b["n_pred"], b["tp@0.5"], b["fp@0.5"], b["fn@0.5"]) == (0, 0, 0, 0, 0)
    assert all(b[f"{q}@{k}"] == 1.0 for q in ("precision", "recall", "f1", "ap") for k in KEYS)
    assert b["dsb_score"] == 1.0
    assert (rows["C"]["fn@0.5"], rows["C"]["dsb_score"]) == (1, 0.0)
    assert (rows["D"]["fp@0.5"], rows["D"]["dsb_score"]) == (1, 0.0)
    for r in (rows["C"], rows["D"]):
        assert all(r[f"{q}@{k}"] == 0.0 for q in ("precision", "recall", "f1", "ap") for k in KEYS)

    mean = out["per_image_mean"]
    assert mean["0.5"]["precision"] == mean["0.5"]["recall"] == mean["0.5"]["f1"] == 0.375
    assert mean["0.5"]["ap"] == pytest.approx((1 / 3 + 1) / 4)
    assert mean["0.7"] == {"precision": 0.25, "recall": 0.25, "f1": 0.25, "ap": 0.25}
    assert out["dsb_score"] == pytest.approx((2 / 15 + 1) / 4)  # 17/60
    assert out["images_without_objects"] == 1
    # Pooled: TP 1, FP 1+0+0+1, FN 1+0+1+0 -> AP 1/5, F1 1/3; not the per-image mean.
    pooled = out["matching"]["0.5"]
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (1, 2, 2)
    assert pooled["ap"] == pytest.approx(1 / 5) and pooled["f1"] == pytest.approx(1 / 3)
    # A subset, e.g. one modality: the same summary of its rows.
    sub = per_image_summary([rows["A"], rows["C"]])
    assert sub["dsb_score"] == pytest.approx(1 / 15) and sub["images"] == 2
    assert sub["per_image_mean"]["0.5"]["ap"] == pytest.approx(1 / 6)
    assert sub["images_without_objects"] == 0
    assert json.loads(json.dumps(out)) == out


def test_dsb_score_needs_all_ten_thresholds():
    gt, pred = hand_case()
    out = evaluate_arrays(gt, pred, thresholds=(0.5, 0.75))
    assert out["dsb_score"] is None and all(r["dsb_score"] is None for r in out["per_image"])
    assert list(out["per_image_mean"]) == ["0.5", "0.75"]
    assert [r["image"] for r in out["per_image"]] == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="3 image names for 4 images"):
        evaluate_arrays(gt, pred, image_names=["a", "b", "c"])


def test_no_images():
    out = evaluate_arrays([], [])
    assert out["per_image"] == [] and out["per_image_mean"] == {}
    assert out["dsb_score"] is None and out["images_without_objects"] == 0


# --------------------------------------------------------------------------------------------
# Real predictions of the shipped model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped(shipped_model_predictions):
    pred_dir, gt_dir, names = shipped_model_predictions
    result = evaluate(pred_dir, gt_dir)
    gts = [read_label_image(gt_dir / "labels" / f"{n}.png") for n in names]
    preds = [read_label_image(pred_dir / f"{n}_labels.tif") for n in names]
    return result, names, gts, preds


def test_against_stardist(shipped):
    """Every per-image quantity and every per-image mean against StarDist's matching code.

    They differ by convention on one case only, an image with no GT and no predicted object
    (here BBBC039's empty validation image, where the shipped model finds nothing): StarDist
    scores it 0, morphoscope 1 (see morphoscope.metrics.per_image)."""
    sd = pytest.importorskip("stardist.matching")
    result, names, gts, preds = shipped
    assert [r["image"] for r in result["per_image"]] == names
    empty = [r["n_gt"] == 0 and r["n_pred"] == 0 for r in result["per_image"]]
    assert empty.count(True) == result["images_without_objects"] == 1  # the case is exercised
    assert sum(r["n_gt"] > 50 for r in result["per_image"]) >= 2  # and real, crowded images

    for row, g, p, is_empty in zip(result["per_image"], gts, preds, empty):
        theirs = sd.matching(g, p, thresh=list(THRESHOLDS))
        for key, s in zip(KEYS, theirs):
            assert (row[f"tp@{key}"], row[f"fp@{key}"], row[f"fn@{key}"]) == (s.tp, s.fp, s.fn)
            assert (row["n_gt"], row["n_pred"]) == (s.n_true, s.n_pred)
            for ours, their in (("precision", "precision"), ("recall", "recall"),
                                ("f1", "f1"), ("ap", "accuracy")):
                want = 1.0 if is_empty else getattr(s, their)
                assert row[f"{ours}@{key}"] == pytest.approx(want, abs=1e-12), (row["image"], key)

    dataset = sd.matching_dataset(gts, preds, thresh=list(THRESHOLDS), by_image=True,
                                  show_progress=False)
    n, shift = len(names), sum(empty) / len(names)
    for key, s in zip(KEYS, dataset):
        mean = result["per_image_mean"][key]
        for ours, their in (("precision", "precision"), ("recall", "recall"), ("f1", "f1"),
                            ("ap", "accuracy")):
            assert mean[ours] == pytest.approx(getattr(s, their) + shift, abs=1e-12), (key, ours)
        # pooled numbers agree with StarDist's by_image=False exactly (no convention differs)
        pooled = sd.matching_dataset(gts, preds, thresh=float(key), by_image=False,
                                     show_progress=False)
        assert result["matching"][key]["ap"] == pytest.approx(pooled.accuracy, abs=1e-12)
        assert result["matching"][key]["f1"] == pytest.approx(pooled.f1, abs=1e-12)
    stardist_dsb = float(np.mean([s.accuracy for s in dataset]))
    assert result["dsb_score"] == pytest.approx(stardist_dsb + shift, abs=1e-12)
    # The per-image mean is not the pooled figure on these images.
    assert abs(result["per_image_mean"]["0.9"]["ap"] - result["matching"]["0.9"]["ap"]) > 0.01
    assert n == 5


def test_format_table_shows_per_image(shipped):
    result = shipped[0]
    text = format_table(result)
    row = next(line for line in text.splitlines() if line.split()[:1] == ["0.9"])
    pooled, mean = result["matching"]["0.9"], result["per_image_mean"]["0.9"]
    assert row.split()[1:4] == [str(pooled["tp"]), str(pooled["fp"]), str(pooled["fn"])]
    assert row.split()[-4:] == [f"{mean[q]:.3f}" for q in ("precision", "recall", "f1", "ap")]
    assert f"DSB score (mean over images of each image's mean AP at IoU 0.5:0.05:0.95): " \
           f"{result['dsb_score']:.3f}" in text
    assert "1 image without GT or predicted objects score 1" in text


def test_cli_per_image_csv(shipped_model_predictions, shipped, tmp_path):
    from morphoscope.cli import app

    pred_dir, gt_dir, names = shipped_model_predictions
    result = shipped[0]
    csv = tmp_path / "rows.csv"
    args = ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--per-image", str(csv)]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    table = pd.read_csv(csv)
    assert list(table.columns[:3]) == ["image", "n_gt", "n_pred"]
    assert list(table.columns[3:10]) == ["tp@0.5", "fp@0.5", "fn@0.5", "precision@0.5",
                                         "recall@0.5", "f1@0.5", "ap@0.5"]
    assert table.columns[-1] == "dsb_score" and len(table.columns) == 3 + 7 * 10 + 1
    assert table["image"].tolist() == names
    want = pd.DataFrame(result["per_image"])
    pd.testing.assert_frame_equal(table, want, check_dtype=False, rtol=1e-12)
    assert table["dsb_score"].mean() == pytest.approx(result["dsb_score"])
    assert not list(tmp_path.glob(".*.part"))  # the temporary file was renamed into place
    # An existing file is kept unless --overwrite, and refused before any work.
    csv.write_text("mine\n")
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 2 and f"error: {csv}: output already exists" in run.stderr
    assert csv.read_text() == "mine\n"
    assert "Object matching" not in run.output
    run = CliRunner().invoke(app, args + ["--overwrite"])
    assert run.exit_code == 0, run.output
    assert pd.read_csv(csv)["image"].tolist() == names
    # A failed evaluation leaves no file behind.
    missing = tmp_path / "b.csv"
    run = CliRunner().invoke(app, ["evaluate", "--pred", str(pred_dir), "--gt",
                                   str(tmp_path / "nowhere"), "--per-image", str(missing)])
    assert run.exit_code != 0 and not missing.exists()
    run = CliRunner().invoke(app, args + ["--json", str(csv), "--overwrite"])
    assert run.exit_code != 0 and "same file" in run.output
