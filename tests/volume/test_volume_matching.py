"""3D matching: IoU of 3D objects on the real BBBC050 stacks equals a brute-force count, objects
labelled per plane are not 3D objects, and ``evaluate`` scores stacks as volumes (one row per
stack)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from morphoscope.errors import InputError
from morphoscope.metrics.matching import iou_matrix, match, matching_stats


def test_tiny_3d_case_by_hand():
    # GT: object 1 = 2 x 2 x 2 cube (8 voxels); object 2 = a 1 x 1 x 3 rod (3 voxels)
    gt = np.zeros((3, 4, 4), np.uint16)
    gt[0:2, 0:2, 0:2] = 1
    gt[0:3, 3, 3] = 2
    # prediction: the cube's upper plane only (4 voxels: IoU 4/8) plus one voxel of the rod
    # (IoU 1/3), and an object in empty space
    pred = np.zeros_like(gt)
    pred[0, 0:2, 0:2] = 7
    pred[2, 3, 3] = 9
    pred[2, 0, 0] = 4
    m = match(gt, pred, thresholds=(0.3, 0.5, 0.55))
    assert m.n_gt == 2 and m.n_pred == 3
    assert (m[0.5].tp, m[0.5].fp, m[0.5].fn) == (1, 2, 1)
    assert m[0.5].ious.tolist() == [0.5] and m[0.5].pred_ids.tolist() == [7]
    assert (m[0.3].tp, m[0.3].fp, m[0.3].fn) == (2, 1, 0)
    assert m[0.55].tp == 0
    np.testing.assert_allclose(iou_matrix(gt, pred), [[0, 0.5, 0], [0, 0, 1 / 3]])


def _brute_force(gt, pred, t):
    """One-to-one matches at IoU >= t by explicit masks (IoU > 0.5 pairs are unique)."""
    tp = 0
    for g in np.unique(gt)[1:]:
        a = gt == g
        for p in np.unique(pred[a]):
            if p == 0:
                continue
            b = pred == p
            if (a & b).sum() / (a | b).sum() >= t:
                tp += 1
    n_gt, n_pred = len(np.unique(gt)) - 1, len(np.unique(pred)) - 1
    return tp, n_pred - tp, n_gt - tp


def test_real_stacks_match_brute_force(stacks):
    _, gt, _, _ = stacks["8_cell_stage"]
    assert gt.ndim == 3 and len(np.unique(gt)) == 9
    pred = gt.astype(np.int32).copy()
    sizes = np.bincount(gt.ravel())
    pred[gt == 5] = 1  # nuclei 1 and 5 (stacked in Z) merged: IoU 1451 / 2537 with nucleus 1
    pred[gt == 8] = 0  # a nucleus missed
    z = np.broadcast_to(np.arange(gt.shape[0])[:, None, None], gt.shape)
    pred[(gt == 3) & (z >= 15)] = 33  # nucleus 3 (planes 7-23) cut in two in Z
    pred[0:3, 0:5, 0:5] = 99  # a false object
    m = match(gt, pred, thresholds=(0.5,))["0.5"]
    assert (m.tp, m.fp, m.fn) == _brute_force(gt, pred, 0.5)
    merged = dict(zip(m.gt_ids.tolist(), m.ious.tolist()))
    assert merged[1] == pytest.approx(sizes[1] / (sizes[1] + sizes[5]))
    assert 5 not in merged and 8 not in merged


def test_objects_per_plane_are_not_3d_objects(stacks):
    """The true nuclei labelled plane by plane (one label per nucleus and plane): every piece
    has an IoU below 0.5 with its nucleus, so 3D matching finds none of them."""
    _, gt, _, _ = stacks["16_cell_stage"]
    z = np.arange(gt.shape[0])[:, None, None]
    per_plane = np.where(gt > 0, gt.astype(np.int64) * 100 + z, 0)
    st = matching_stats([(gt, per_plane)], thresholds=(0.5,))["0.5"]
    assert st["tp"] == 0 and st["fn"] == 16 and st["fp"] == len(np.unique(per_plane)) - 1
    assert matching_stats([(gt, gt)], thresholds=(0.5,))["0.5"]["f1"] == 1.0


def _gt_folder(root, image, labels, name="embryo"):
    from morphoscope.io.stacks import write_stack

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    write_stack(root / "images" / f"{name}.tif", image, "ZYX" if image.ndim == 3 else "YX", pixel_size=0.8,
                z_spacing=1.75 if image.ndim == 3 else None)
    write_stack(root / "labels" / f"{name}.tif", labels, "ZYX" if labels.ndim == 3 else "YX")
    return root


def _pred_folder(out, labels, name="embryo"):
    """A prediction folder as the writer makes it for a stack: NAME_labels.tif and one
    predictions.json entry per plane."""
    from morphoscope.io.stacks import write_stack

    out.mkdir()
    write_stack(out / f"{name}_labels.tif", labels, "ZYX")
    images = [{"id": z + 1, "file_name": f"{name}.tif", "height": labels.shape[1], "width": labels.shape[2],
               "plane": {"Z": z}} for z in range(labels.shape[0])]
    (out / "predictions.json").write_text(json.dumps({
        "images": images, "annotations": [], "categories": [{"id": 1, "name": "nucleus"}]}))
    return out


def test_evaluate_scores_stacks_in_3d(tmp_path, stacks):
    from morphoscope.metrics.evaluate import evaluate, format_table

    image, gt, _, _ = stacks["8_cell_stage"]
    pred = gt.astype(np.uint16).copy()
    pred[gt == 8] = 0
    pred[gt == 5] = 1
    gt_dir = _gt_folder(tmp_path / "gt", image, gt)
    res = evaluate(_pred_folder(tmp_path / "pred", pred), gt_dir)
    assert res["images"] == 1 and res["objects"] == {"gt": 8, "pred": 6}
    m = match(gt, pred, thresholds=(0.5,))["0.5"]
    assert (res["matching"]["0.5"]["tp"], res["matching"]["0.5"]["fn"]) == (m.tp, m.fn) == (6, 2)
    assert [r["image"] for r in res["per_image"]] == ["embryo"]
    assert res["per_image"][0]["n_gt"] == 8 and res["per_image"][0]["tp@0.5"] == 6
    assert res["coco"]["stacks_not_in_coco"] == 1
    assert "matched in 3D" in format_table(res)


def test_3d_labels_with_a_2d_image_name_the_file(tmp_path, stacks):
    """Bad input: a 3D label stack paired with a 2D image is a clear error naming the label file."""
    from morphoscope.metrics.evaluate import evaluate

    image, gt, _, _ = stacks["8_cell_stage"]
    gt_dir = _gt_folder(tmp_path / "gt", image[25], gt)  # one plane of the image, the whole label stack
    with pytest.raises(InputError, match="3D label image needs the 3D image") as err:
        evaluate(_pred_folder(tmp_path / "pred", gt), gt_dir)
    assert err.value.path.name == "embryo.tif" and err.value.path.parent.name == "labels"
    # a 2D prediction of a 3D GT stack: names the predicted file
    from morphoscope.io.stacks import write_stack

    gt_dir3 = _gt_folder(tmp_path / "gt3", image, gt)
    pred = _pred_folder(tmp_path / "pred3", gt)
    write_stack(pred / "embryo_labels.tif", gt[25], "YX")
    with pytest.raises(InputError, match="axes YX differ") as err:
        evaluate(pred, gt_dir3)
    assert err.value.path.name == "embryo_labels.tif"
