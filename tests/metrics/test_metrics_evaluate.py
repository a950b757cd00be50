"""evaluate() and 'morphoscope evaluate' on a prediction folder written as docs/outputs.md
describes it, against a copy of real BBBC039 annotations."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from metrics_testdata import label_gt, label_results, write_pred_dir
from morphoscope.errors import InputError
from morphoscope.metrics import (
    coco_evaluate, evaluate, evaluate_arrays, format_table, matching_stats)


@pytest.fixture(scope="module")
def result(pred_dir, gt_dir):
    return evaluate(pred_dir, gt_dir)


def test_end_to_end(result, pred_dir, gt_dir, gt_labels, predictions):
    assert result["images"] == 3 and result["ignored_images"] == 0
    assert result["gt"] == str(gt_dir) and result["pred"] == str(pred_dir)
    assert result["objects"] == {"gt": sum(len(np.unique(g)) - 1 for g in gt_labels),
                                 "pred": sum(len(s) for _, s in predictions)}
    # The same numbers as the parts computed from the arrays directly.
    pairs = [(g, p) for g, (p, _) in zip(gt_labels, predictions)]
    assert result["matching"] == matching_stats(pairs)
    images, anns, results = [], [], []
    for i, (g, (p, s)) in enumerate(zip(gt_labels, predictions), start=1):
        images.append({"id": i, "file_name": f"{i}.tif", "width": g.shape[1], "height": g.shape[0]})
        anns += label_gt(g, image_id=i, start_id=len(anns) + 1)
        results += label_results(p, s, image_id=i)
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "nucleus"}]}
    assert result["coco"] == coco_evaluate(gt, results)
    # Dropped and eroded objects: imperfect but clearly useful.
    m = result["matching"]["0.5"]
    assert 0.6 < m["recall"] < 1 and 0.9 < m["precision"] < 1 and m["fp"] >= 2
    assert json.loads(json.dumps(result)) == result  # JSON-ready as it is


def test_evaluate_arrays_agrees(result, gt_labels, predictions):
    out = evaluate_arrays(gt_labels, [p for p, _ in predictions],
                          pred_scores=[s for _, s in predictions])
    assert out["matching"] == result["matching"] and out["objects"] == result["objects"]
    assert out["coco"]["segm"]["AP"] == pytest.approx(result["coco"]["segm"]["AP"])
    assert evaluate_arrays(gt_labels[1:], [p for p, _ in predictions[1:]])["coco"] is None


def test_format_table(result):
    text = format_table(result)
    assert "up to 1000 detections per image" in text
    row = next(line for line in text.splitlines() if line.split()[:1] == ["0.5"])
    m = result["matching"]["0.5"]
    assert row.split()[1:4] == [str(m["tp"]), str(m["fp"]), str(m["fn"])]
    assert f"{result['coco']['segm']['AP']:.3f}" in text


def _copy(pred_dir, tmp_path):
    return shutil.copytree(pred_dir, tmp_path / "pred")


def test_extra_prediction_is_ignored_with_warning(pred_dir, gt_dir, bbbc_names, predictions,
                                                  tmp_path):
    folder = write_pred_dir(tmp_path / "pred", [*bbbc_names, "not_in_gt"],
                            [*predictions, predictions[1]])
    with pytest.warns(UserWarning, match="1 predicted image.*not_in_gt"):
        out = evaluate(folder, gt_dir, max_detections=100)
    assert out["ignored_images"] == 1 and out["images"] == 3
    assert out["coco"]["max_detections"] == 100


def test_missing_predictions_json(pred_dir, gt_dir, tmp_path):
    folder = _copy(pred_dir, tmp_path)
    (folder / "predictions.json").unlink()
    with pytest.raises(InputError, match="no predictions.json"):
        evaluate(folder, gt_dir)


def test_gt_image_without_prediction(pred_dir, gt_dir, bbbc_names, predictions, tmp_path):
    folder = write_pred_dir(tmp_path / "pred", bbbc_names[:2], predictions[:2])
    with pytest.raises(InputError, match=f"1 GT image.*no prediction.*{bbbc_names[2]}"):
        evaluate(folder, gt_dir)
    # The labels TIFF is needed as well as the JSON entry.
    folder = _copy(pred_dir, tmp_path / "b")
    (folder / f"{bbbc_names[0]}_labels.tif").unlink()
    with pytest.raises(InputError, match=bbbc_names[0]):
        evaluate(folder, gt_dir)


def test_label_size_mismatch(pred_dir, gt_dir, bbbc_names, tmp_path):
    folder = _copy(pred_dir, tmp_path)
    tifffile.imwrite(folder / f"{bbbc_names[0]}_labels.tif", np.zeros((100, 100), np.uint16))
    with pytest.raises(InputError, match=r"size \(100, 100\) differs") as err:
        evaluate(folder, gt_dir)
    assert err.value.path.name == f"{bbbc_names[0]}_labels.tif"


def test_unknown_category_and_bad_gt(pred_dir, gt_dir, tmp_path):
    folder = _copy(pred_dir, tmp_path)
    data = json.loads((folder / "predictions.json").read_text())
    data["categories"].append({"id": 2, "name": "mitosis"})
    (folder / "predictions.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"\['mitosis'\] are not GT classes"):
        evaluate(folder, gt_dir)
    with pytest.raises(InputError, match="dataset not found"):
        evaluate(pred_dir, tmp_path / "nowhere")


def test_cli(pred_dir, gt_dir, result, tmp_path):
    from morphoscope.cli import app

    out = tmp_path / "eval.json"
    args = ["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json", str(out)]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert format_table(result) in run.output
    assert json.loads(out.read_text()) == result
    # An existing result is kept unless --overwrite (checked before any work).
    run = CliRunner().invoke(app, args + ["--max-detections", "100"])
    assert run.exit_code == 2 and f"error: {out}: output already exists" in run.stderr
    assert json.loads(out.read_text())["coco"]["max_detections"] == 1000
    run = CliRunner().invoke(app, args + ["--max-detections", "100", "--overwrite"])
    assert run.exit_code == 0, run.output
    assert json.loads(out.read_text())["coco"]["max_detections"] == 100
    assert "up to 100 detections" in run.output


def test_two_classes(gt_dir, gt_labels, bbbc_names, tmp_path):
    # GT: one image, odd labels are 'mitosis'. Prediction: the GT objects themselves, with
    # category ids that differ from the GT's (mapped by name) and three objects' class wrong.
    name, labels = bbbc_names[1], gt_labels[1]
    root = tmp_path / "gt"
    for sub, suffix in (("images", ".tif"), ("labels", ".png")):
        (root / sub).mkdir(parents=True)
        shutil.copy(gt_dir / sub / f"{name}{suffix}", root / sub / f"{name}{suffix}")
    ids = [int(v) for v in np.unique(labels)[1:]]
    gt_class = {v: 2 if v % 2 else 1 for v in ids}
    (root / "labels" / "classes.json").write_text(json.dumps(
        {"names": ["nucleus", "mitosis"], "objects": {name: gt_class}}))
    folder = write_pred_dir(tmp_path / "pred", [name], [(labels, {v: 0.9 for v in ids})])
    data = json.loads((folder / "predictions.json").read_text())
    data["categories"] = [{"id": 7, "name": "mitosis"}, {"id": 3, "name": "nucleus"}]
    wrong = set(ids[:3])
    for a in data["annotations"]:
        right = gt_class[a["label"]]
        a["category_id"] = {1: 3, 2: 7}[3 - right if a["label"] in wrong else right]
    (folder / "predictions.json").write_text(json.dumps(data))

    out = evaluate(folder, root)
    m = out["matching"]["0.95"]
    assert (m["tp"], m["fp"], m["fn"]) == (len(ids) - 3, 3, 3)
    n_mitosis = sum(c == 2 for c in gt_class.values())
    per = m["per_class"]
    assert per["mitosis"]["fn"] == 2 and per["nucleus"]["fn"] == 1  # labels 1, 3 / 2 misclassed
    assert per["mitosis"]["tp"] == n_mitosis - 2
    for iou_type in ("segm", "bbox"):
        assert set(out["coco"][iou_type]["per_class"]) == {"nucleus", "mitosis"}
        assert 0.85 < out["coco"][iou_type]["per_class"]["mitosis"] < 1
    assert "COCO AP per class" in format_table(out)
