"""The stack hook (``Inference.merge_stack``), the semantic 3D seeded watershed and 3D writing, on
the real BBBC050 stacks: one label per nucleus through Z, a T axis kept with labels unique across
time, one predictions.json entry per plane, one measurement row per 3D object."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from volume_testdata import PIXEL_SIZE, Z_SPACING, intensity_network

from morphoscope.engine.objects import Objects
from morphoscope.engine.result import ImageResult
from morphoscope.io.stacks import read_stack, write_stack
from morphoscope.metrics.matching import match
from morphoscope.morphology.volume import ball
from morphoscope.tasks.semantic.volume import seeded_watershed_3d

RATIO = Z_SPACING / PIXEL_SIZE


def test_seeded_watershed_3d_parts_nuclei(stacks):
    """On the true masks: the markers of the data, or the distance seeds, give the true nuclei."""
    for _, gt, sem, markers in stacks.values():
        n = int(gt.max())
        for kw in ({"markers": markers > 0}, {}):
            lab = seeded_watershed_3d(sem > 0, z_ratio=RATIO, **kw)
            m = match(gt, lab, thresholds=(0.95,))["0.95"]
            assert (m.tp, m.fp, m.fn) == (n, 0, 0), kw


def test_anisotropy_parts_nuclei_touching_through_z():
    """Two balls stacked in Z, touching across a neck: with the true voxel ratio the distance
    has two peaks and they are two objects; taking the voxels as cubes merges them."""
    b = ball(8.0, (RATIO, 1.0, 1.0))
    nz = b.shape[0]
    vol = np.zeros((2 * nz - 4,) + b.shape[1:], bool)
    vol[:nz] |= b
    vol[nz - 4:] |= b
    assert ndimage.label(vol)[1] == 1
    lab = seeded_watershed_3d(vol, z_ratio=RATIO)
    assert lab.max() == 2 and abs(np.bincount(lab.ravel())[1] - np.bincount(lab.ravel())[2]) <= b.sum() * 0.05
    assert seeded_watershed_3d(vol, z_ratio=1.0).max() == 1


def _plane_results(gt, sem, name="embryo"):
    """Per-plane results carrying maps a perfect model would give: foreground = the true mask,
    boundary = each plane's inner object borders."""
    from skimage.segmentation import find_boundaries

    out = []
    for z in range(gt.shape[0]):
        fg = (sem[z] > 0).astype(np.float32)
        b = (find_boundaries(gt[z], mode="inner") & (gt[z] > 0)).astype(np.float32)
        out.append(ImageResult(name, gt.shape[1:], ["nucleus"], plane={"Z": z}, objects=Objects.empty(gt.shape[1:]),
                               maps=np.stack([1 - fg, fg, b]).astype(np.float16), threshold_kind="probability",
                               threshold=0.5, warnings=[f"w{z % 2}"]))
    return out


def test_semantic_merge_stack_gives_one_object_per_nucleus(stacks, tiny_volume_model):
    from morphoscope.tasks import load_model

    bundle = load_model(tiny_volume_model, device="cpu")
    _, gt, sem, _ = stacks["16_cell_stage"]
    inf = bundle.task.inference(bundle)
    assert inf.volume and inf.keep_maps and not inf.user_keep_maps
    merged = inf.merge_stack(_plane_results(gt, sem), RATIO)
    assert len(merged) == 1
    res = merged[0]
    assert res.shape == gt.shape and res.plane == {} and res.maps is None and res.objects.shape == gt.shape
    assert sorted(res.warnings) == ["w0", "w1"] and res.settings["z_spacing_ratio"] == pytest.approx(RATIO)
    labels, _ = res.objects.to_labels()
    m = match(gt, labels, thresholds=(0.95,))["0.95"]
    assert (m.tp, m.fp, m.fn) == (16, 0, 0)
    # unknown voxel size: cubes, said in a warning; planes off: the results unchanged, maps dropped
    assert any("Z spacing" in w for w in inf.merge_stack(_plane_results(gt, sem), None)[0].warnings)
    flat = bundle.task.inference(bundle, volume=False)
    planes = _plane_results(gt, sem)
    assert flat.merge_stack(planes, RATIO) is planes
    one = inf.merge_stack(_plane_results(gt[:1], sem[:1]), RATIO)  # a 2D image: maps dropped
    assert len(one) == 1 and one[0].maps is None and one[0].shape == gt.shape[1:]


def test_default_hook_keeps_planes():
    from morphoscope.engine.task import Inference
    from morphoscope.engine.volume import merge_stacks, z_groups

    assert z_groups([{"T": t, "Z": z} for t in range(2) for z in range(3)], "TZ") == [[0, 1, 2], [3, 4, 5]]
    assert z_groups([{"Z": 2}, {"Z": 0}, {"Z": 1}], "Z") == [[1, 2, 0]]
    results = [ImageResult("x", (4, 4), ["a"], plane={"Z": z}, objects=Objects.empty((4, 4))) for z in range(3)]
    assert merge_stacks(Inference(None), results, "Z", 2.0) == results


@pytest.fixture(scope="module")
def movie(stacks, tmp_path_factory):
    """A 3D+t stack of the two real stacks (8- then 16-cell stage) along T, TZYX, without sizes;
    the dimmer 16-cell stack is scaled to the 8-cell one's 99.8th percentile (one intensity range
    per file, as in a time-lapse)."""
    a, b = stacks["8_cell_stage"][0], stacks["16_cell_stage"][0]
    b = np.clip(b * (np.percentile(a, 99.8) / np.percentile(b, 99.8)), 0, 65535).astype(np.uint16)
    shape = tuple(min(x, y) for x, y in zip(a.shape, b.shape))  # equal here: 51 x 120 x 122
    data = np.stack([a[tuple(slice(0, s) for s in shape)], b[tuple(slice(0, s) for s in shape)]])
    path = tmp_path_factory.mktemp("movie") / "embryo.tif"
    write_stack(path, data, "TZYX")
    return path, data


@pytest.fixture(scope="module")
def predicted(movie, tiny_volume_model, tmp_path_factory):
    from morphoscope.prediction.predict import predict
    from morphoscope.tasks.semantic.task import SemanticInference

    mp = pytest.MonkeyPatch()
    mp.setattr(SemanticInference, "network", intensity_network)
    try:
        out = predict([movie[0]], tmp_path_factory.mktemp("pred3d"), model=tiny_volume_model, device="cpu",
                      progress=False, overwrite=True, measure=True, pixel_size=PIXEL_SIZE, z_spacing=Z_SPACING)
    finally:
        mp.undo()
    return out


def test_3d_plus_t_keeps_t_and_labels_are_unique(predicted, movie, stacks):
    lab = read_stack(predicted / "embryo_labels.tif")
    assert lab.axes == "TZYX" and lab.data.shape == movie[1].shape
    assert lab.z_spacing == pytest.approx(Z_SPACING) and lab.pixel_size == pytest.approx(PIXEL_SIZE, rel=1e-4)
    t0, t1 = (set(np.unique(lab.data[t])) - {0} for t in range(2))
    assert t0 and t1 and not t0 & t1  # unique across T
    assert sorted(t0 | t1) == list(range(1, len(t0) + len(t1) + 1))
    for t, name in enumerate(("8_cell_stage", "16_cell_stage")):  # objects through Z, nucleus-like
        gt = stacks[name][1]
        m = match(gt, lab.data[t], thresholds=(0.5,))["0.5"]
        assert m.tp >= 2, (name, m.tp, m.fp, m.fn)  # (an intensity rule, not a model: some nuclei)
        spans = [len(np.unique(np.nonzero(lab.data[t] == k)[0])) for k in m.pred_ids]
        assert min(spans) >= 5, spans


def test_3d_predictions_json_and_measurements(predicted, movie):
    lab = read_stack(predicted / "embryo_labels.tif").data
    data = json.loads((predicted / "predictions.json").read_text())
    assert len(data["images"]) == 2 * 51
    assert data["images"][51]["plane"] == {"T": 1, "Z": 0}
    by_id = {im["id"]: im["plane"] for im in data["images"]}
    planes_of: dict = {}
    for a in data["annotations"]:
        p = by_id[a["image_id"]]
        planes_of.setdefault(a["label"], set()).add((p["T"], p["Z"]))
    for k in np.unique(lab)[1:]:  # each object's slices are annotations with its label
        t, z = np.nonzero((lab == k).any((2, 3)))
        assert planes_of[int(k)] == set(zip(t.tolist(), z.tolist()))
    from pycocotools import mask as mask_utils

    a = max(data["annotations"], key=lambda a: a["area"])
    p = by_id[a["image_id"]]
    decoded = mask_utils.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), lab[p["T"], p["Z"]] == a["label"])
    table = pd.read_csv(predicted / "measurements.csv")
    assert list(table.columns[:3]) == ["image", "t", "label"]
    assert sorted(table["label"]) == list(range(1, int(lab.max()) + 1))
    counts = np.bincount(lab.ravel())
    np.testing.assert_allclose(table["volume_um3"], counts[table["label"]] * PIXEL_SIZE ** 2 * Z_SPACING)
    assert set(table["t"]) == {0, 1}
    for _, row in table.iterrows():
        assert (lab[int(row["t"])] == row["label"]).any()


def test_planes_mode_labels_per_plane(movie, tiny_volume_model, tmp_path, monkeypatch):
    """The same stack with volume off: 2D objects, each in one plane (today's behaviour)."""
    from morphoscope.prediction.predict import predict
    from morphoscope.tasks.semantic.task import SemanticInference

    monkeypatch.setattr(SemanticInference, "network", intensity_network)
    src = tmp_path / "one.tif"
    write_stack(src, movie[1][1, 10:30], "ZYX", pixel_size=PIXEL_SIZE, z_spacing=Z_SPACING)
    out = predict([src], tmp_path / "out", model=tiny_volume_model, device="cpu", progress=False, volume=False)
    lab = read_stack(out / "one_labels.tif").data
    assert lab.max() > 0
    for k in np.unique(lab)[1:]:
        assert len(np.unique(np.nonzero(lab == k)[0])) == 1


def test_stitch_planes_links_2d_objects_through_z(stacks, tiny_volume_model):
    """The generic alternative: the true nuclei cut into per-plane 2D objects, linked plane to
    plane by IoU >= 0.25, are the nuclei again; in 8_cell_stage a few small caps that overlap
    the plane above too little stay objects of their own (the known weakness of stitching)."""
    from morphoscope.engine.volume import stitch_planes
    from morphoscope.tasks import load_model

    for name, extra in (("16_cell_stage", 0), ("8_cell_stage", 5)):
        gt = stacks[name][1]
        planes = [ImageResult("x", gt.shape[1:], ["nucleus"], plane={"Z": z}, objects=Objects.from_labels(gt[z]),
                              threshold_kind="score", threshold=0.5) for z in range(gt.shape[0])]
        res = stitch_planes(planes)
        labels, _ = res.objects.to_labels()
        m = match(gt, labels, thresholds=(0.95,))["0.95"]
        assert (m.tp, m.fp, m.fn) == (int(gt.max()), extra, 0)
        sizes = np.bincount(labels.ravel())
        assert all(sizes[k] < 60 for k in set(np.unique(labels)[1:]) - set(m.pred_ids.tolist()))
    # the semantic task falls back to it for planes without maps (rescaled planes)
    bundle = load_model(tiny_volume_model, device="cpu")
    gt = stacks["16_cell_stage"][1]
    planes = [ImageResult("x", gt.shape[1:], ["nucleus"], plane={"Z": z}, objects=Objects.from_labels(gt[z]),
                          threshold_kind="probability", threshold=0.5) for z in range(gt.shape[0])]
    out = bundle.task.inference(bundle).merge_stack(planes, RATIO)
    assert len(out) == 1 and out[0].shape == gt.shape and any("rescaled" in w for w in out[0].warnings)
    assert match(gt, out[0].objects.to_labels()[0], thresholds=(0.95,))["0.95"].tp == 16
