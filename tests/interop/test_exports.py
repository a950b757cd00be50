"""``morphoscope predict --export ...``: each export read back with the library its target tool
uses (roifile for ImageJ ROIs, shapely for GeoJSON, ome-zarr-py for OME-Zarr, tifffile for the
ImageJ calibration), on a real prediction and on the BBBC039 ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from interop_testdata import (
    HERE,
    PIXEL_SIZE,
    SAMPLE,
    coco_masks,
    export_item,
    fill,
    roi_geometry,
)

from morphoscope.errors import ConfigError


# ---- names -----------------------------------------------------------------------------------
def test_export_names_expand_all_and_refuse_unknown_ones():
    from morphoscope.formats.exports import EXPORTERS, export_names, needs_measurements

    assert set(EXPORTERS) == {"roi", "geojson", "ome-zarr", "cellprofiler"}
    assert export_names("roi, geojson") == ["roi", "geojson"]
    assert export_names("all") == list(EXPORTERS)
    assert export_names(["roi,roi", "ome-zarr"]) == ["roi", "ome-zarr"]
    assert export_names(None) == []
    assert needs_measurements(["cellprofiler"]) and not needs_measurements("roi,geojson,ome-zarr")
    with pytest.raises(ConfigError, match="unknown export 'tiff'.*roi, geojson, ome-zarr, cellprofiler"):
        export_names("roi,tiff")


def test_cli_refuses_an_unknown_export_before_loading_a_model(tmp_path, samples_dir):
    from typer.testing import CliRunner

    from morphoscope.cli import app

    r = CliRunner().invoke(app, ["predict", str(samples_dir / "images"), "--out", str(tmp_path / "p"),
                                 "--model", "no-such-model", "--export", "roi,qupath"])
    assert r.exit_code != 0
    assert "unknown export 'qupath'" in str(r.exception or "") + r.output
    assert "no-such-model" not in str(r.exception or "") + r.output  # refused before the model


def test_prediction_folder_has_every_export(predicted):
    for name in (f"{SAMPLE}_rois.zip", f"{SAMPLE}.geojson", f"{SAMPLE}_labels.ome.zarr",
                 "cellprofiler/Image.csv", "cellprofiler/nucleus.csv", "measurements.csv"):
        assert (predicted / name).exists(), name
    assert not list(predicted.glob("**/.*.part"))


# ---- pixel size in the label TIFF --------------------------------------------------------------
def test_label_tiff_pixel_size_round_trips_through_read_metadata_and_imagej_resolution(predicted):
    import tifffile

    from morphoscope.io.metadata import read_metadata

    path = predicted / f"{SAMPLE}_labels.tif"
    assert read_metadata(path).pixel_size == pytest.approx(PIXEL_SIZE, rel=1e-6)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["unit"] in ("um", "micron", "\\u00B5m")
        num, den = tif.pages[0].tags["XResolution"].value  # pixels per unit
        assert den / num == pytest.approx(PIXEL_SIZE, rel=1e-6)
        num, den = tif.pages[0].tags["YResolution"].value
        assert den / num == pytest.approx(PIXEL_SIZE, rel=1e-6)


# ---- ImageJ ROIs -----------------------------------------------------------------------------
def test_imagej_rois_read_back_by_roifile_fill_each_object_exactly(predicted):
    import roifile

    from morphoscope.io.images import read_label_image

    labels = read_label_image(predicted / f"{SAMPLE}_labels.tif")
    masks = coco_masks(predicted)
    rois = roifile.roiread(predicted / f"{SAMPLE}_rois.zip")
    assert len(rois) == len(masks) == labels.max() > 40
    width = len(str(max(masks)))
    for roi in rois:
        label = int(roi.properties["label"])
        assert roi.name == f"{label:0{width}d}-nucleus"
        assert roi.properties["class"] == "nucleus" and 0.5 <= float(roi.properties["score"]) <= 1
        assert roi.group == 1 and roi.hexcolor(roi.stroke_color) == "#e69f00"
        assert roi.roitype == roifile.ROI_TYPE.TRACED or roi.composite
        filled = fill(roi_geometry(roi), labels.shape)
        assert np.array_equal(filled, labels == label)  # outlines along pixel edges: exact


# ---- QuPath GeoJSON --------------------------------------------------------------------------
def test_qupath_geojson_polygons_fill_back_to_the_objects(predicted):
    import shapely
    from shapely.geometry import shape

    from morphoscope.io.images import read_label_image

    data = json.loads((predicted / f"{SAMPLE}.geojson").read_text())
    masks = coco_masks(predicted)
    labels = read_label_image(predicted / f"{SAMPLE}_labels.tif")
    table = pd.read_csv(predicted / "measurements.csv").set_index("label")
    assert data["type"] == "FeatureCollection" and len(data["features"]) == len(masks)
    ids, overlapped = set(), 0
    for f in data["features"]:
        props = f["properties"]
        label = int(props["name"])
        ids.add(f["id"])
        assert props["objectType"] == "detection"
        assert props["classification"] == {"name": "nucleus", "color": [230, 159, 0]}
        m = props["measurements"]
        assert m["label"] == label and m["score"] == pytest.approx(table.loc[label, "score"])
        geometry = shape(f["geometry"])
        assert geometry.is_valid and shapely.get_type_id(geometry) in (3, 6)  # Polygon, MultiPolygon
        filled = fill(geometry, labels.shape)
        assert np.array_equal(filled, labels == label)  # its pixels in NAME_labels.tif, exactly
        assert not (filled & ~masks[label]).any()  # within the whole (predictions.json) object
        assert geometry.area * PIXEL_SIZE**2 == pytest.approx(m["area_um2"], rel=1e-9)  # = measured
        overlapped += not np.array_equal(filled, masks[label])
    assert len(ids) == len(masks)
    assert overlapped < len(masks) / 4


def test_qupath_feature_ids_are_uuids_stable_across_runs(ground_truth, tmp_path, samples_dir):
    import uuid

    from interop_testdata import ground_truth_item

    from morphoscope.formats.geojson import QuPathGeoJson

    folder, _ = ground_truth
    first = json.loads((folder / f"{SAMPLE}.geojson").read_text())["features"]
    ctx, _ = ground_truth_item(samples_dir, tmp_path)
    again = QuPathGeoJson().features(ctx)
    assert [f["id"] for f in first] == [f["id"] for f in again]
    assert all(uuid.UUID(f["id"]).version == 5 for f in first)
    annotations = QuPathGeoJson(object_type="annotation").features(ctx)
    assert {f["properties"]["objectType"] for f in annotations} == {"annotation"}
    with pytest.raises(ValueError, match="object_type"):
        QuPathGeoJson(object_type="cell")


# ---- OME-Zarr --------------------------------------------------------------------------------
def test_ome_zarr_labels_read_by_ome_zarr_py_with_their_scale(predicted):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from morphoscope.io.images import read_label_image

    nodes = list(Reader(parse_url(str(predicted / f"{SAMPLE}_labels.ome.zarr")))())
    node = nodes[0]
    assert "Label" in [type(s).__name__ for s in node.specs]
    assert np.array_equal(np.asarray(node.data[0]), read_label_image(predicted / f"{SAMPLE}_labels.tif"))
    assert node.metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": [PIXEL_SIZE, PIXEL_SIZE]}]
    assert [a["unit"] for a in node.metadata["axes"]] == ["micrometer", "micrometer"]


# ---- CellProfiler ----------------------------------------------------------------------------
def test_cellprofiler_matches_cellprofilers_own_measurements(ground_truth):
    """The exported features equal CellProfiler's MeasureObjectSizeShape on the same objects
    (reference computed by CellProfiler's code: make_cellprofiler_reference.py)."""
    from morphoscope.formats.cellprofiler import AREA_SHAPE, DERIVED

    folder, labels = ground_truth
    ours = pd.read_csv(folder / "cellprofiler" / "nucleus.csv")
    reference = pd.read_csv(HERE / "data" / f"cellprofiler_{SAMPLE}.csv")
    assert list(ours.columns[:2]) == ["ImageNumber", "ObjectNumber"]
    assert list(ours.columns[2:]) == sorted(ours.columns[2:])  # ExportToSpreadsheet's order
    assert (ours["ImageNumber"] == 1).all()
    assert list(ours["ObjectNumber"]) == list(reference["ObjectNumber"]) == list(range(1, labels.max() + 1))
    mapped = [f"AreaShape_{f}" for f in [*AREA_SHAPE, *DERIVED]]
    assert set(mapped) <= set(ours.columns)
    for column in mapped:
        np.testing.assert_allclose(ours[column], reference[column], rtol=1e-9, atol=1e-9, err_msg=column)
    np.testing.assert_allclose(ours["Location_Center_X"], reference["AreaShape_Center_X"], rtol=1e-12)
    np.testing.assert_allclose(ours["Location_Center_Y"], reference["AreaShape_Center_Y"], rtol=1e-12)
    # not mapped because the definitions differ (docs/interop.md): they must stay out
    assert "AreaShape_MaxFeretDiameter" not in ours and "AreaShape_MinFeretDiameter" not in ours
    image = pd.read_csv(folder / "cellprofiler" / "Image.csv")
    assert list(image.columns) == sorted(image.columns)
    assert image.to_dict("records") == [{"Count_nucleus": int(labels.max()), "FileName_Image": f"{SAMPLE}.tif",
                                         "Height_Image": labels.shape[0], "ImageNumber": 1,
                                         "Width_Image": labels.shape[1]}]


def test_cellprofiler_tables_of_a_prediction_are_in_pixels(predicted):
    from morphoscope.io.images import read_label_image

    objects = pd.read_csv(predicted / "cellprofiler" / "nucleus.csv")
    image = pd.read_csv(predicted / "cellprofiler" / "Image.csv")
    table = pd.read_csv(predicted / "measurements.csv")  # --export cellprofiler turned --measure on
    labels = read_label_image(predicted / f"{SAMPLE}_labels.tif")
    assert int(image.loc[0, "Count_nucleus"]) == len(objects) == int(labels.max())
    assert list(objects["ObjectNumber"]) == list(table["label"])  # = the values in NAME_labels.tif
    np.testing.assert_allclose(objects["AreaShape_Area"], np.bincount(labels.ravel())[1:], rtol=1e-12)
    np.testing.assert_allclose(objects["AreaShape_Perimeter"], table["perimeter_um"] / PIXEL_SIZE, rtol=1e-12)


def test_cellprofiler_export_without_measurements_says_what_to_do(tmp_path, samples_dir):
    from interop_testdata import ground_truth_item

    from morphoscope.formats.exports import EXPORTERS

    ctx, _ = ground_truth_item(samples_dir, tmp_path)
    ctx.table = None
    with pytest.raises(ConfigError, match="measure"):
        EXPORTERS["cellprofiler"].write_image(ctx)


# ---- objects with holes, in pieces, overlapping, of two classes, in a stack --------------------
def class_pixels(objects, i) -> np.ndarray:
    """Object ``i``'s pixels in its class's own label image (higher scores keep overlaps)."""
    k = objects.classes[i]
    members = np.flatnonzero(objects.classes == k)
    labels, kept = objects.of_class(k).to_labels()
    return labels == int(np.flatnonzero(members[kept] == i)[0]) + 1


@pytest.fixture(scope="module")
def awkward(tmp_path_factory, samples_dir):
    """Ground-truth nuclei made awkward: a nucleus with a hole, one in two pieces, a class-2
    object over several nuclei and a small nucleus wholly under it (hidden in NAME_labels.tif,
    kept in its class); planes 0 and 1 of a Z stack (plane 1 shifted)."""
    from skimage.io import imread

    from morphoscope.engine.objects import Objects
    from morphoscope.formats.exports import write_exports

    labels = imread(samples_dir / "labels" / f"{SAMPLE}.png")[:200, :300]
    base = Objects.from_labels(labels)
    areas = base.areas
    holed, split = np.argsort(-areas)[:2]
    crops = [c.copy() for c in base.crops]
    h, w = crops[holed].shape
    crops[holed][h // 2 - 3:h // 2 + 3, w // 2 - 3:w // 2 + 3] = False  # a hole
    h, w = crops[split].shape
    crops[split][:, w // 2 - 1:w // 2 + 1] = False  # two pieces
    cover = np.zeros((60, 60), bool)
    cover[10:50, 5:55] = True  # overlaps whatever lies there, as class 2
    hidden = np.ones((5, 5), bool)  # inside the cover on background, scoring lower
    spot = next((y, x) for y in range(72, 105) for x in range(127, 170) if not labels[y:y + 5, x:x + 5].any())
    first = Objects(labels.shape, crops + [cover, hidden], np.concatenate([base.origins, [[60, 120], spot]]),
                    np.concatenate([np.linspace(0.99, 0.6, len(crops)), [0.95, 0.5]]),
                    np.concatenate([np.ones(len(crops), int), [2, 1]])).sorted()
    second = first.shifted((5, 7), labels.shape)
    second = Objects(labels.shape, [c[: labels.shape[0] - o[0], : labels.shape[1] - o[1]]
                                    for c, o in zip(second.crops, second.origins)],
                     second.origins, second.scores, second.classes).tight()
    out = tmp_path_factory.mktemp("awkward")
    ctx = export_item(out, "stack", [({"Z": 0}, first), ({"Z": 1}, second)], class_names=("nucleus", "debris"),
                      plane_axes="Z", z_spacing=2.0)
    write_exports("all", [ctx], out)
    return out, ctx


def test_awkward_objects_round_trip_through_roifile(awkward):
    import roifile

    out, ctx = awkward
    rois = {int(r.properties["label"]): r for r in roifile.roiread(out / "stack_rois.zip")}
    composite = 0
    for plane in ctx.planes:
        for i in range(len(plane.objects)):
            label = plane.offset + i + 1
            roi = rois[label]
            mask = class_pixels(plane.objects, i)
            assert np.array_equal(fill(roi_geometry(roi), mask.shape), mask), label
            assert roi.z_position == plane.index["Z"] + 1 and roi.position == plane.index["Z"] + 1
            assert roi.group == int(plane.objects.classes[i])
            composite += roi.composite
    assert composite >= 4  # the holed and split nuclei, on both planes
    assert len(rois) == sum(len(p.objects) for p in ctx.planes)
    cover = [r for r in rois.values() if r.group == 2]
    assert cover and all(r.properties["class"] == "debris" for r in cover)


def test_awkward_objects_round_trip_through_geojson(awkward):
    from shapely.geometry import shape

    out, ctx = awkward
    features = json.loads((out / "stack.geojson").read_text())["features"]
    by_label = {int(f["properties"]["name"]): f for f in features}
    kinds = set()
    for plane in ctx.planes:
        for i in range(len(plane.objects)):
            f = by_label[plane.offset + i + 1]
            geometry = shape(f["geometry"])
            kinds.add((geometry.geom_type, bool(getattr(geometry, "interiors", ()))))
            assert np.array_equal(fill(geometry, plane.objects.shape), class_pixels(plane.objects, i))
            assert f["geometry"]["plane"] == {"c": -1, "z": plane.index["Z"], "t": 0}
            assert f["properties"]["classification"]["name"] == ctx.class_names[plane.objects.classes[i] - 1]
    assert ("MultiPolygon", False) in kinds and ("Polygon", True) in kinds


def test_awkward_stack_in_ome_zarr_and_cellprofiler(awkward):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out, ctx = awkward
    node = next(iter(Reader(parse_url(str(out / "stack_labels.ome.zarr")))()))
    data = np.asarray(node.data[0])
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [2.0, PIXEL_SIZE, PIXEL_SIZE]
    for plane in ctx.planes:
        expected = np.where(plane.labels > 0, plane.labels.astype(int) + plane.offset, 0)
        assert np.array_equal(data[plane.index["Z"]], expected)
    image = pd.read_csv(out / "cellprofiler" / "Image.csv")
    objects = pd.read_csv(out / "cellprofiler" / "Objects.csv")
    assert list(image["ImageNumber"]) == [1, 2] and list(image["Metadata_Z"]) == [0, 1]
    hidden = objects[objects["AreaShape_Area"].isna()]
    assert len(hidden) == 2  # the nucleus under the cover, on both planes: no pixels in NAME_labels.tif
    for number, plane in zip((1, 2), ctx.planes):
        rows = objects[objects["ImageNumber"] == number]
        assert list(rows["ObjectNumber"]) == list(range(1, len(plane.objects) + 1))
        assert list(rows["Classify_debris"]) == [int(k == 2) for k in plane.objects.classes]
        assert int(image.loc[number - 1, "Classify_debris_NumObjectsPerBin"]) == int((plane.objects.classes == 2).sum())
        assert int(image.loc[number - 1, "Count_Objects"]) == len(plane.objects)


def test_class_colours_are_the_overlays():
    from morphoscope.engine.writer import PALETTE, RECORDS
    from morphoscope.formats import export_common

    assert [tuple(c) for c in PALETTE.tolist()] == list(export_common.CLASS_COLOURS)
    assert export_common.RECORDS == RECORDS
