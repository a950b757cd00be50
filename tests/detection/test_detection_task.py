"""The detection task on real BCCD images: boxes and crops stay aligned through augmentation,
a few training steps lower the loss, and predict -> evaluate scores boxes with box AP equal to
pycocotools run directly on the same files."""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from conftest import small_voc

from morphoscope.tasks import parse_config

TWO = ["BloodImage_00000", "BloodImage_00001"]


def tiny_config(train, **train_overrides) -> dict:
    return {"task": "detection", "name": "tiny", "data": {"train": str(train)},
            "model": {"fpn_channels": 32, "box_head_size": 64, "box_batch_size_per_image": 64,
                      "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 200,
                      "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 200, "detections_per_image": 100},
            "train": {"epochs": 1, "iters_per_epoch": 2, "batch_size": 1, "crop_size": 160, "optimizer": "adamw",
                      "lr": 1e-3, "warmup_iters": 0, "workers": 0, "threads": 1, **train_overrides}}


def test_rot90_and_crops_move_boxes_with_the_pixels():
    from morphoscope.tasks.detection.data import crop_boxes, rot90_boxes

    img = torch.zeros(1, 7, 10)
    img[0, 2:5, 3:9] = 1  # box x 3..9, y 2..5
    box = torch.tensor([[3.0, 2.0, 9.0, 5.0]])
    for k in range(4):
        r = torch.rot90(img, k, (-2, -1))[0]
        ys, xs = torch.nonzero(r, as_tuple=True)
        assert rot90_boxes(box, k, (7, 10)).tolist() == [[xs.min().item(), ys.min().item(),
                                                          xs.max().item() + 1, ys.max().item() + 1]]
    boxes = np.array([[0, 0, 10, 10], [8, 8, 20, 20], [30, 30, 40, 40]], np.float32)
    kept, cls = crop_boxes(boxes, np.array([1, 2, 3]), (5, 5, 15, 15), min_visible=0.3, min_size=2)
    # 25%, 34% and 0% of the three boxes lie inside: the second is kept, in crop coordinates
    assert kept.tolist() == [[3, 3, 10, 10]] and cls.tolist() == [2]


def test_snapped_boxes_are_the_object_crops():
    from morphoscope.tasks.detection.task import boxes_to_objects, objects_to_boxes

    objs = boxes_to_objects(np.array([[2.4, 3.6, 10.5, 7.49], [-3, 0, 0.2, 5], [630.2, 470, 641, 480]]),
                            np.array([0.9, 0.8, 0.7]), np.array([1, 2, 3]), (480, 640))
    assert objects_to_boxes(objs).tolist() == [[2, 4, 10, 7], [0, 0, 1, 5], [630, 470, 640, 480]]
    assert all(c.all() for c in objs.crops) and objs.areas.tolist() == [24, 5, 100]


def test_a_few_steps_on_real_images_lower_the_loss(bccd):
    from morphoscope.formats import load_instance_dataset
    from morphoscope.tasks.detection.data import BoxCropDataset, collate
    from morphoscope.tasks.detection.model import build_fasterrcnn

    cfg = parse_config(tiny_config(bccd))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_instance_dataset(bccd / "ImageSets" / "Main" / "train.txt")
    crops = BoxCropDataset(ds, crop_size=256, length=2, augment=None, normalize=cfg.data.normalize)
    images, targets = collate([crops[0], crops[1]])
    assert all(len(t["boxes"]) > 0 for t in targets)  # real cells in the crops
    torch.manual_seed(0)
    model = build_fasterrcnn(cfg.model, len(ds.class_names))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(4):
        torch.manual_seed(1)  # the same anchor and proposal samples each step
        loss = sum(model(list(images), list(targets)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def _coco_ap_directly(voc_dir, pred_json, class_names, max_dets=1000):
    """Box AP by pycocotools from the XML files and predictions.json, built here on their own."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    pred = json.loads(pred_json.read_text())
    by_name = {im["file_name"]: im["id"] for im in pred["images"]}
    gt = {"images": [], "annotations": [], "categories": [{"id": k, "name": n} for k, n in enumerate(class_names, 1)]}
    for xml in sorted((voc_dir / "Annotations").glob("*.xml")):
        root = ET.parse(xml).getroot()
        image_id = by_name[root.find("filename").text]
        gt["images"].append({"id": image_id, "width": 640, "height": 480})
        for o in root.iter("object"):
            x0, y0, x1, y1 = (float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            w, h = x1 - x0 + 1, y1 - y0 + 1
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "iscrowd": 0,
                                      "category_id": class_names.index(o.find("name").text) + 1,
                                      "bbox": [x0 - 1, y0 - 1, w, h], "area": w * h})
    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    names = {c["id"]: c["name"] for c in pred["categories"]}
    dets = [{"image_id": a["image_id"], "category_id": class_names.index(names[a["category_id"]]) + 1,
             "bbox": a["bbox"], "score": a["score"]} for a in pred["annotations"]]
    ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
    ev.params.maxDets = [1, 10, max_dets]
    ev.evaluate()
    ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, -1]
    return float(p[p > -1].mean()), len(gt["annotations"])


@pytest.mark.slow
def test_predict_then_evaluate_scores_boxes_as_pycocotools_does(bccd, tmp_path):
    from morphoscope.metrics.evaluate import evaluate, format_table
    from morphoscope.prediction.predict import predict
    from morphoscope.training.run import train

    voc = small_voc(bccd, tmp_path / "gt", TWO)
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(json.dumps(tiny_config(bccd / "ImageSets" / "Main" / "train.txt")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model fills its detection cap
        run = train(cfg_path, out=tmp_path / "run", progress=False)
        out = predict([str(p) for p in sorted((voc / "JPEGImages").glob("*.jpg"))], tmp_path / "pred",
                      model=run, device="cpu", score_threshold=0.0, progress=False)
    data = json.loads((out / "predictions.json").read_text())
    assert data["info"]["settings"]["objects"] == "boxes" and len(data["annotations"]) > 0
    # make the scoring non-trivial: add the true boxes of the first image as confident detections
    first = data["images"][0]
    for name, *b in [(o.find("name").text, *(float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")))
                     for o in ET.parse(voc / "Annotations" / f"{TWO[0]}.xml").getroot().iter("object")]:
        cat = next(c["id"] for c in data["categories"] if c["name"] == name)
        data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": first["id"], "category_id": cat,
                                    "bbox": [b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1], "score": 0.99})
    (out / "predictions.json").write_text(json.dumps(data))

    result = evaluate(out, voc)
    ap, n_gt = _coco_ap_directly(voc, out / "predictions.json", ["Platelets", "RBC", "WBC"])
    assert result["iou"] == "box" and set(result["coco"]) == {"bbox", "max_detections"}
    assert result["coco"]["bbox"]["AP"] == pytest.approx(ap, abs=1e-12)
    assert 0.2 < ap < 1.0  # the first image is found, the second (the model's guesses) mostly not
    assert result["objects"] == {"gt": n_gt, "pred": len(data["annotations"])}
    # every true box of the first image matches at box IoU 0.95
    first_row = next(r for r in result["per_image"] if r["image"] == TWO[0])
    assert first_row["tp@0.95"] == first_row["n_gt"]
    # counts: per image and class, as in the files
    gt_counts = result["counts"]["per_image"][0]["gt"]
    assert sum(gt_counts.values()) == first_row["n_gt"]
    pc = result["counts"]["per_class"]["RBC"]
    per_image = result["counts"]["per_image"]
    assert pc["mae"] == pytest.approx(np.mean([abs(r["pred"]["RBC"] - r["gt"]["RBC"]) for r in per_image]))
    text = format_table(result)
    assert "box IoU" in text and "MAE" in text
