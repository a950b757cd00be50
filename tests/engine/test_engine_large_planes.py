"""A plane too large to hold as whole arrays (a whole-slide mosaic) is written block by block:
tiled label and class-mask TIFFs, OME-Zarr painted chunk by chunk, measurements per block and
the exports (Fiji ROIs, QuPath GeoJSON, CellProfiler tables) from the objects' crops. Forced here
on a bundled BBBC039 sample by lowering the size limit, the folder written in blocks must hold
what the folder written whole holds, file by file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

SAMPLE = "IXMtest_G13_s9"
CLASSES = ["nucleus", "spot"]
PIXEL_SIZE = 0.325
EXPORTS = ["roi", "geojson", "ome-zarr", "cellprofiler"]


@pytest.fixture(scope="module")
def sample(samples_dir):
    """The sample's annotated nuclei as a model's result, plus objects that overlap them: copies
    of ten nuclei shifted by 5 px (lower scores: partly hidden) and a 'spot' of the second class
    inside each of ten nuclei (kept whole on their own class's planes)."""
    from skimage.draw import disk
    from skimage.io import imread

    from morphoscope.engine.objects import Objects
    from morphoscope.engine.result import ImageResult

    labels = imread(samples_dir / "labels" / f"{SAMPLE}.png")
    image = imread(samples_dir / "images" / f"{SAMPLE}.tif")
    nuclei = Objects.from_labels(labels)
    crops, origins, scores, classes = list(nuclei.crops), [tuple(o) for o in nuclei.origins], [], []
    n = len(crops)
    scores = list(np.linspace(0.99, 0.6, n))
    classes = [1] * n
    for i in range(0, 20, 2):
        y, x = nuclei.origins[i]
        crops.append(nuclei.crops[i])
        origins.append((min(y + 5, labels.shape[0] - nuclei.crops[i].shape[0]), x))
        scores.append(0.55)
        classes.append(1)
        spot = np.zeros((7, 7), bool)
        spot[disk((3, 3), 3)] = True
        cy, cx = np.round(nuclei.centres()[i + 1]).astype(int) - 3
        crops.append(spot)
        origins.append((cy, cx))
        scores.append(0.8)
        classes.append(2)
    objs = Objects(labels.shape, crops, np.array(origins), np.array(scores), np.array(classes)).sorted()
    res = ImageResult(name=SAMPLE, shape=labels.shape, class_names=CLASSES, objects=objs,
                      threshold_kind="score", threshold=0.5)
    return res, image


def write(out, res, image):
    from morphoscope.engine.writer import InputFile, OutputFolder

    folder = OutputFolder(out, class_names=CLASSES, info={}, measure=True, pixel_size=PIXEL_SIZE, exports=EXPORTS)
    item = InputFile(name=SAMPLE, path=None, file_name=f"{SAMPLE}.tif", pixel_size=PIXEL_SIZE)
    folder.prepare([item], "objects")
    record = folder.write(item, [res], [image])
    folder.finish([SAMPLE])
    return record


@pytest.fixture(scope="module")
def folders(sample, tmp_path_factory):
    from morphoscope.engine import writer

    res, image = sample
    whole = tmp_path_factory.mktemp("whole")
    assert not write(whole, res, image).get("large")
    blocks = tmp_path_factory.mktemp("blocks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(writer, "LARGE_PIXELS", 1000)  # every plane is "large"
        assert write(blocks, res, image).get("large")
    return whole, blocks


def test_label_images_and_class_masks(folders):
    from skimage.io import imread

    whole, blocks = folders
    for name in (f"{SAMPLE}_labels.tif", f"{SAMPLE}_labels_by_class.tif"):
        a, b = tifffile.imread(whole / name), tifffile.imread(blocks / name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
        with tifffile.TiffFile(blocks / name) as tif:
            assert tif.pages[0].is_tiled  # written tile by tile
    for c in CLASSES:  # PNG for a whole plane; a tiled TIFF (PNG cannot be written in pieces) in blocks
        a, b = imread(whole / f"{SAMPLE}_{c}.png"), tifffile.imread(blocks / f"{SAMPLE}_{c}.tif")
        assert np.array_equal(a, b) and a.max() == 255, c


def test_coco_and_measurements(folders):
    whole, blocks = folders
    a = json.loads((whole / "predictions.json").read_text())
    b = json.loads((blocks / "predictions.json").read_text())
    assert a["annotations"] == b["annotations"] and len(a["annotations"]) > 80
    ta, tb = pd.read_csv(whole / "measurements.csv"), pd.read_csv(blocks / "measurements.csv")
    assert list(ta.columns) == list(tb.columns) and "area_um2" in ta.columns
    ta, tb = ta.sort_values(["class", "label"]).reset_index(drop=True), tb.sort_values(["class", "label"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ta, tb, check_exact=False, rtol=1e-9)


def test_exports_are_written_from_the_crops(folders):
    import roifile
    import zarr

    whole, blocks = folders
    ra = {r.name: r for r in roifile.ImagejRoi.fromfile(whole / f"{SAMPLE}_rois.zip")}
    rb = {r.name: r for r in roifile.ImagejRoi.fromfile(blocks / f"{SAMPLE}_rois.zip")}
    assert ra.keys() == rb.keys() and len(ra) > 80
    for name in ra:
        assert np.array_equal(ra[name].coordinates(), rb[name].coordinates()), name
    assert json.loads((whole / f"{SAMPLE}.geojson").read_text()) == json.loads((blocks / f"{SAMPLE}.geojson").read_text())
    for csv in sorted((whole / "cellprofiler").glob("*.csv")):
        pd.testing.assert_frame_equal(pd.read_csv(csv), pd.read_csv(blocks / "cellprofiler" / csv.name),
                                      check_exact=False, rtol=1e-9)
    za = zarr.open_group(str(whole / f"{SAMPLE}_labels.ome.zarr"), mode="r")
    zb = zarr.open_group(str(blocks / f"{SAMPLE}_labels.ome.zarr"), mode="r")
    assert np.array_equal(np.asarray(za["0"]), np.asarray(zb["0"]))


def test_taken_pixels_match_a_whole_plane_mask(sample):
    """The exporters' per-class occupancy (a grid of object boxes) gives each object the pixels a
    whole-plane mask gives it."""
    from morphoscope.formats.export_common import _Taken

    res, _ = sample
    objs = res.objects
    taken, masks = _Taken(), {}
    taken.CELL = 16  # small cells: objects span several
    for i in range(len(objs)):
        crop = np.asarray(objs.crops[i], bool)
        y, x = (int(v) for v in objs.origins[i])
        k = int(objs.classes[i])
        if k != 1:
            continue
        plane = masks.setdefault(k, np.zeros(objs.shape, bool))
        expected = crop & ~plane[y:y + crop.shape[0], x:x + crop.shape[1]]
        plane[y:y + crop.shape[0], x:x + crop.shape[1]] |= crop
        assert np.array_equal(taken.take(crop, y, x), expected), i
