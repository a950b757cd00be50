"""The platelet EM workflow (docs/em.md) on the real platelet-em-z0 slice: its COCO import keeps all
122 objects and their classes, organelles inside cells survive predict -> evaluate -> measure whole,
a label-image output refuses them with a clear error, and a few training steps on real EM crops
lower the loss with every target mask whole."""

from __future__ import annotations

import json
import shutil
import warnings
from collections import Counter

import numpy as np
import pytest

CLASSES = ["cell", "mitochondrion", "alpha_granule", "canalicular_vessel"]


@pytest.fixture(scope="module")
def em(shared_data):
    root = shared_data / "platelet-em-z0"
    if not (root / "coco_50-z000.json").is_file():
        pytest.skip(f"platelet-em-z0 not present under {shared_data}")
    return root


@pytest.fixture(scope="module")
def slice50(em):
    """Slice 50's image and its objects of the four workflow classes (the one dense granule left
    out, as in examples/em_platelet.py): masks (N, H, W), classes (N,) 1..4."""
    from morphoscope.formats import load_instance_dataset

    ds = load_instance_dataset(em / "coco_50-z000.json")
    image = ds[0].load_image()
    masks, cats = ds[0].load_instances(image.shape)
    keep = cats <= 4
    return image, masks[keep], cats[keep]


def test_coco_import_keeps_all_122_objects_with_their_classes(em):
    from morphoscope.formats import load_instance_dataset

    ds = load_instance_dataset(em / "coco_50-z000.json")
    assert ds.layout == "coco" and len(ds) == 1
    assert ds.class_names == CLASSES + ["dense_granule_body", "dense_granule_core"]
    sample = ds[0]
    masks, classes = sample.load_instances()
    assert masks.shape == (122, 800, 800) and ds.count_objects() == 122
    # README: 16 cells, 7 mitochondria, 29 alpha granules, 69 canalicular vessels, 1 dense granule
    assert Counter(classes.tolist()) == {1: 16, 2: 7, 3: 29, 4: 69, 5: 1}
    assert all(m.any() for m in masks)
    cells, organelles = masks[classes == 1].any(0), masks[classes > 1]
    inside = np.array([(m & cells).sum() / m.sum() for m in organelles])
    assert (inside > 0.9).mean() > 0.9  # organelles lie inside cells: the objects overlap
    # the flat label view must lose them; the class planes keep every object whole
    labels, _ = sample.load_label_image(masks.shape[1:])
    assert len(np.unique(labels)) - 1 == 122
    planes, plane_classes = sample.load_class_planes(len(ds.class_names), masks.shape[1:])
    assert Counter(plane_classes.values()) == Counter(classes.tolist())
    for i, (m, c) in enumerate(zip(masks, classes), start=1):
        assert np.array_equal(planes[c - 1] == i, m), i


def _write_as_prediction(out, image, masks, classes, *, cell_score=0.99):
    """The GT objects through the one writer, as a model's result: cells score higher than the
    organelles inside them, so the flat NAME_labels.tif shows the cells on top."""
    from morphoscope.engine.objects import Objects
    from morphoscope.engine.result import ImageResult
    from morphoscope.engine.writer import InputFile, OutputFolder

    crops, origins = [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        crops.append(m[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        origins.append((ys.min(), xs.min()))
    scores = np.where(classes == 1, cell_score, 0.9)
    objs = Objects(masks.shape[1:], crops, np.array(origins), scores, classes).sorted()
    res = ImageResult(name="slice50", shape=masks.shape[1:], class_names=CLASSES, objects=objs,
                      threshold_kind="score", threshold=0.5)
    folder = OutputFolder(out, class_names=CLASSES, info={})
    item = InputFile(name="slice50", path=None, file_name="slice50.png")
    folder.prepare([item], "objects")
    folder.write(item, [res], [image])
    folder.finish(["slice50"])


def _gt_coco(tmp_path, image, masks, classes):
    from morphoscope.formats.coco import masks_to_coco_annotations
    from morphoscope.io.images import write_png

    write_png(tmp_path / "gt" / "images" / "slice50.png", image)
    path = tmp_path / "gt" / "gt.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "slice50.png", "height": masks.shape[1], "width": masks.shape[2]}],
        "categories": [{"id": k, "name": n} for k, n in enumerate(CLASSES, start=1)],
        "annotations": masks_to_coco_annotations(masks, classes, image_id=1)}))
    return path


def test_organelles_inside_cells_survive_predict_evaluate_measure(slice50, tmp_path):
    from morphoscope.io.images import read_image, read_label_image
    from morphoscope.metrics.evaluate import evaluate
    from morphoscope.morphology import measure_prediction_dir

    image, masks, classes = slice50
    sl = (slice(None), slice(0, 400), slice(0, 400))  # a quarter of the slice keeps the test quick
    masks = masks[sl]
    keep = masks.reshape(len(masks), -1).sum(1) > 0
    masks, classes = masks[keep], classes[keep]
    image = image[:400, :400]
    pred = tmp_path / "pred"
    _write_as_prediction(pred, image, masks, classes)
    gt = _gt_coco(tmp_path, image, masks, classes)
    n = Counter(classes.tolist())
    assert n[1] >= 4 and all(n[k] >= 1 for k in (2, 3, 4))

    # the flat label image hides organelles under their (higher-scoring) cells ...
    flat = read_label_image(pred / "slice50_labels.tif")
    assert len(np.unique(flat)) - 1 < len(masks)
    # ... the per-class planes and the class masks hold every object whole
    planes = read_image(pred / "slice50_labels_by_class.tif")
    assert planes.shape == (4,) + image.shape
    for k, name in enumerate(CLASSES, start=1):
        mask = read_image(pred / f"slice50_{name}.png")
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, masks[classes == k].any(0)), name
        assert np.array_equal(planes[k - 1] > 0, masks[classes == k].any(0)), name

    # evaluate: matched per class on the planes, every object found and scored
    result = evaluate(pred, gt)
    assert result["matched_on"] == "class planes"
    assert result["objects"] == {"gt": len(masks), "pred": len(masks)}
    for name in CLASSES:
        s = result["matching"]["0.5"]["per_class"][name]
        assert (s["tp"], s["fp"], s["fn"]) == (n[CLASSES.index(name) + 1], 0, 0), name
        assert result["coco"]["segm"]["per_class"][name] == pytest.approx(1.0), name
    # compare's per-image counts (its bootstrap) match the same way
    from morphoscope.compare.segmentation import KEYS, per_image_counts
    from morphoscope.formats import load_instance_dataset

    counts = per_image_counts(pred, load_instance_dataset(gt))
    tp, fp, fn = counts[0, 3 * KEYS.index("0.5"):3 * KEYS.index("0.5") + 3]
    assert (tp, fp, fn) == (len(masks), 0, 0)
    # without the planes (an older or foreign prediction folder) hidden organelles are missed, with a warning
    shutil.copytree(pred, tmp_path / "flat")
    (tmp_path / "flat" / "slice50_labels_by_class.tif").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flat_result = evaluate(tmp_path / "flat", gt)
    assert any("overlap" in str(w.message) for w in caught)
    assert flat_result["matched_on"] == "label images"
    assert flat_result["matching"]["0.5"]["fn"] > 0

    # measure: one row per object, each measured whole on its class's plane
    table = measure_prediction_dir(pred)
    assert len(table) == len(masks)
    assert Counter(table["class"]) == {c: n[k] for k, c in enumerate(CLASSES, start=1)}
    areas = sorted(zip(table["class"], table["area_px2"]))
    assert areas == sorted((CLASSES[c - 1], float(m.sum())) for m, c in zip(masks, classes))

    # the report measures and matches the same way
    from morphoscope.reports.html import report_html

    html = report_html(pred, gt=gt, measurements=("area",), gallery=1)
    assert f"{len(masks):,} objects in 1 images" in html
    assert "overlapping classes" in html and "per-class label planes in 1 of 1 images" in html
    assert f"{len(masks):,} GT objects, {len(masks):,} predicted objects" in html


def test_overlapping_coco_into_label_images_is_refused(em, tmp_path):
    from morphoscope.errors import InputError
    from morphoscope.formats import load_instance_dataset
    from morphoscope.formats.convert import convert_dataset

    with pytest.raises(InputError, match="objects of different classes overlap in '50-z000'.*convert to 'coco'"):
        convert_dataset(em / "coco_50-z000.json", tmp_path / "labels", to="labels")
    assert not (tmp_path / "labels").exists()  # refused before anything was written
    out = convert_dataset(em / "coco_50-z000.json", tmp_path / "coco", to="coco")
    back = load_instance_dataset(out)
    assert back.count_objects() == 122


def test_class_map_shows_the_smallest_object():
    from morphoscope.metrics.evaluate import class_map_from_planes

    planes = np.zeros((3, 10, 10), np.uint16)
    planes[0, 1:9, 1:9] = 1  # a cell
    planes[1, 3:5, 3:5] = 2  # an organelle inside it
    planes[2, 0, 0] = 3  # an object outside
    cls = class_map_from_planes(planes)
    assert cls[4, 4] == 2 and cls[1, 1] == 1 and cls[0, 0] == 3 and cls[9, 9] == 0
    assert (cls == 2).sum() == 4 and (cls == 1).sum() == 64 - 4


def test_class_planes_match_as_one_label_image_without_overlap():
    from morphoscope.metrics.matching import match, match_class_planes, matching_stats

    gt = np.zeros((60, 60), np.uint16)
    gt[5:20, 5:20], gt[30:50, 30:50], gt[5:15, 40:55] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[6:20, 5:21], pred[30:48, 30:50], pred[5:15, 40:55] = 4, 5, 6
    gt_cls, pred_cls = {1: 1, 2: 2, 3: 1}, {4: 1, 5: 2, 6: 2}  # object 3 found, but as the wrong class

    def planes(labels, cls):
        out = np.zeros((2,) + labels.shape, labels.dtype)
        for v, c in cls.items():
            out[c - 1][labels == v] = v
        return out

    flat = matching_stats([match(gt, pred, gt_classes=gt_cls, pred_classes=pred_cls)], class_names=["a", "b"])
    by_plane = matching_stats([match_class_planes(planes(gt, gt_cls), planes(pred, pred_cls))], class_names=["a", "b"])
    assert by_plane == flat
    assert (flat["0.5"]["tp"], flat["0.5"]["fp"], flat["0.5"]["fn"]) == (2, 1, 1)


@pytest.mark.slow
def test_a_few_steps_on_real_em_crops_lower_the_loss(em):
    import torch

    from morphoscope.config import NormalizeConfig
    from morphoscope.formats import load_instance_dataset
    from morphoscope.tasks.instance.config import MaskRCNNModelConfig
    from morphoscope.tasks.instance.data import InstanceCropDataset, collate
    from morphoscope.tasks.instance.model import build_maskrcnn

    ds = load_instance_dataset(em / "coco_50-z000.json")
    crops = InstanceCropDataset(ds, crop_size=128, length=2, augment=None, normalize=NormalizeConfig(),
                                seed=3, min_area=8)
    images, targets = collate([crops[0], crops[1]])
    for t in targets:  # organelles inside cells come as whole masks of their own
        cells = t["masks"][t["labels"] == 1].bool().any(0)
        organelles = t["masks"][t["labels"] > 1].bool()
        assert len(organelles) and any((m & cells).sum() == m.sum() for m in organelles)
    torch.manual_seed(0)
    cfg = MaskRCNNModelConfig(fpn_channels=32, box_head_size=64, mask_head_layers=[32], box_batch_size_per_image=64,
                              anchor_sizes=[16, 32, 64, 128, 256], rpn_pre_nms_top_n_train=600,
                              rpn_post_nms_top_n_train=300)
    model = build_maskrcnn(cfg, len(ds.class_names))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: one thread does these small steps fastest
    try:
        for _ in range(8):
            loss = sum(model(list(images), list(targets)).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(threads)
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
