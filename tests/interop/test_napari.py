"""The napari plugin: the npe2 manifest (npe2's validation, imports included), the reader and
writer as plain functions, through napari itself (its ViewerModel: the plugin manager, reader and
writer dispatch and layers, no window), the Predict widget as a Qt widget on a bundled image, and
in napari's window (``make_napari_viewer``) where Qt has OpenGL (conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from interop_testdata import PIXEL_SIZE, SAMPLE

napari = pytest.importorskip("napari", reason="napari is not installed (pip install morphoscope[napari])")

MANIFEST = Path(__file__).parents[2] / "src" / "morphoscope" / "napari" / "napari.yaml"


def test_manifest_is_valid_and_its_commands_import():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # npe2 validate --imports: every python_name resolves
    assert manifest.name == "morphoscope"
    assert {c.id for c in manifest.contributions.commands} == {
        "morphoscope.get_reader", "morphoscope.write_labels", "morphoscope.predict_widget"}
    assert manifest.contributions.writers[0].layer_types == ["labels"]
    assert manifest.contributions.readers[0].accepts_directories


def test_manifest_is_the_installed_plugins():
    from npe2 import PluginManifest

    installed = PluginManifest.from_distribution("morphoscope")  # the napari.manifest entry point
    assert installed.model_dump() == PluginManifest.from_file(MANIFEST).model_dump()


# ---- reader, without a display ---------------------------------------------------------------
def test_reader_accepts_prediction_folders_and_their_label_tiffs_only(predicted, samples_dir, tmp_path):
    from morphoscope.napari.reader import get_reader

    assert get_reader(str(predicted)) is not None
    assert get_reader(str(predicted / f"{SAMPLE}_labels.tif")) is not None
    assert get_reader([str(predicted)]) is not None
    assert get_reader(str(samples_dir / "images" / f"{SAMPLE}.tif")) is None  # an image, not a prediction
    assert get_reader(str(samples_dir / "images")) is None  # a folder without predictions.json
    assert get_reader(str(predicted / f"{SAMPLE}_overlay.png")) is None
    assert get_reader([str(predicted), str(predicted)]) is None


def test_reader_gives_image_labels_per_class_and_measurements_as_features(predicted):
    from morphoscope.io.images import read_image, read_label_image
    from morphoscope.napari.reader import get_reader

    layers = get_reader(str(predicted))(str(predicted))
    kinds = [kind for _, _, kind in layers]
    assert kinds == ["image", "labels"]  # the input was found in ../images
    (image, image_kwargs, _), (labels, kwargs, _) = layers
    assert np.array_equal(image, read_image(predicted.parent / "images" / f"{SAMPLE}.tif"))
    assert kwargs["name"] == f"{SAMPLE} nucleus"
    # one class: its layer is NAME_labels.tif (overlaps resolved by score, as the writer does)
    assert np.array_equal(labels, read_label_image(predicted / f"{SAMPLE}_labels.tif"))
    assert kwargs["scale"] == image_kwargs["scale"] == pytest.approx((PIXEL_SIZE, PIXEL_SIZE))
    assert kwargs["units"] == ("micrometer", "micrometer")
    features = kwargs["features"]
    table = pd.read_csv(predicted / "measurements.csv")
    assert list(features["index"]) == list(table["label"]) == list(range(1, labels.max() + 1))
    np.testing.assert_allclose(features["area_um2"], np.bincount(labels.ravel())[1:] * PIXEL_SIZE**2, rtol=1e-12)
    one = get_reader(str(predicted / f"{SAMPLE}_labels.tif"))(str(predicted / f"{SAMPLE}_labels.tif"))
    assert [k["name"] for _, k, _ in one] == [k["name"] for _, k, _ in layers]


def test_reader_keeps_overlapping_classes_in_their_own_layers(tmp_path):
    """Two classes whose objects overlap: each class layer holds its objects whole."""
    import json

    from pycocotools import mask as mask_utils

    from morphoscope.io.stacks import write_stack
    from morphoscope.napari.reader import get_reader, read_prediction

    cell = np.zeros((40, 50), bool)
    cell[5:35, 5:45] = True
    organelle = np.zeros_like(cell)
    organelle[15:25, 20:30] = True
    anns = []
    for label, (mask, cls, score) in enumerate([(organelle, 2, 0.9), (cell, 1, 0.8)], start=1):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        anns.append({"id": label, "image_id": 1, "category_id": cls, "score": score, "label": label,
                     "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                     "bbox": mask_utils.toBbox(rle).tolist(), "area": float(mask.sum()), "iscrowd": 0})
    (tmp_path / "predictions.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "cells.tif", "height": 40, "width": 50}],
        "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "organelle"}], "annotations": anns}))
    labels = np.where(organelle, 1, np.where(cell, 2, 0)).astype(np.uint16)
    write_stack(tmp_path / "cells_labels.tif", labels, "YX")
    write_stack(tmp_path / "cells_labels_by_class.tif", np.stack([cell * 2, organelle * 1]).astype(np.uint16), "CYX")
    layers = {k["name"]: data for data, k, kind in read_prediction(str(tmp_path))}
    assert set(layers) == {"cells cell", "cells organelle"}
    assert np.array_equal(layers["cells cell"], cell * 2)  # whole, under the organelle too
    assert np.array_equal(layers["cells organelle"], organelle * 1)
    by_class = str(tmp_path / "cells_labels_by_class.tif")
    assert [k["name"] for _, k, _ in get_reader(by_class)(by_class)] == ["cells cell", "cells organelle"]


# ---- writer, without a display ----------------------------------------------------------------
@pytest.mark.parametrize(("scale", "units", "expected"), [
    ((0.5, 0.5), ("micrometer", "micrometer"), 0.5),
    ((250.0, 250.0), ("nanometer", "nanometer"), 0.25),
    ((0.65, 0.65), ("pixel", "pixel"), 0.65),  # napari's default unit with a scale: taken as µm
    ((1.0, 1.0), ("pixel", "pixel"), None),  # nothing known
])
def test_writer_writes_a_label_tiff_with_its_pixel_size(tmp_path, scale, units, expected):
    import tifffile

    from morphoscope.io.images import read_label_image
    from morphoscope.io.metadata import read_metadata
    from morphoscope.napari.writer import write_labels

    labels = np.zeros((30, 40), np.int64)
    labels[5:10, 5:20] = 3
    labels[20:28, 10:12] = 70000 % 65536
    path = tmp_path / "labels.tif"
    assert write_labels(str(path), labels, {"scale": scale, "units": units}) == [str(path)]
    assert np.array_equal(read_label_image(path), labels)
    got = read_metadata(path).pixel_size
    assert got == (pytest.approx(expected, rel=1e-6) if expected else None)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.pages[0].dtype == np.uint16


def test_writer_refuses_what_is_not_labels(tmp_path):
    from morphoscope.napari.writer import write_labels

    with pytest.raises(ValueError, match="integers"):
        write_labels(str(tmp_path / "x.tif"), np.zeros((4, 4), np.float32), {})
    with pytest.raises(ValueError, match="dimensions"):
        write_labels(str(tmp_path / "x.tif"), np.zeros((2, 2, 2, 4, 4), np.uint8), {})


# ---- napari's viewer (no window) -------------------------------------------------------------
def test_napari_opens_a_prediction_folder_with_the_plugin(viewer_model, predicted):
    viewer = viewer_model
    viewer.open(str(predicted), plugin="morphoscope")
    assert [layer.name for layer in viewer.layers] == [SAMPLE, f"{SAMPLE} nucleus"]
    labels = viewer.layers[f"{SAMPLE} nucleus"]
    assert isinstance(labels, napari.layers.Labels)
    assert tuple(labels.scale) == pytest.approx((PIXEL_SIZE, PIXEL_SIZE))
    assert [str(u) for u in labels.units] == ["micrometer", "micrometer"]
    assert "area_um2" in labels.features and len(labels.features) == labels.data.max()
    # napari looks the features up by label: the measurements of the object under the pointer
    assert labels.get_status((100.0, 100.0)) is not None
    k = int(labels.data[labels.data > 0][0])
    row = labels.features[labels.features["index"] == k]
    assert float(row["area_um2"].iloc[0]) == pytest.approx((labels.data == k).sum() * PIXEL_SIZE**2)


def test_napari_offers_the_plugin_for_folders_and_label_tiffs(viewer_model, predicted):
    """napari lists our reader for a prediction folder and a NAME_labels.tif (it asks which
    reader to use when several can, and can remember the choice per pattern)."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    for path in (predicted, predicted / f"{SAMPLE}_labels.tif"):
        readers = {r.command for r in pm.iter_compatible_readers([str(path)])}
        assert "morphoscope.get_reader" in readers, path


def test_napari_saves_a_labels_layer_through_the_plugin(viewer_model, tmp_path):
    from morphoscope.io.images import read_label_image
    from morphoscope.io.metadata import read_metadata

    data = np.zeros((20, 30), np.uint16)
    data[2:8, 3:9] = 5
    layer = viewer_model.add_labels(data, scale=(0.2, 0.2), units=("micrometer", "micrometer"))
    path = tmp_path / "saved.tif"
    written = layer.save(str(path), plugin="morphoscope")
    assert [Path(p) for p in written] == [path]
    assert np.array_equal(read_label_image(path), data)
    assert read_metadata(path).pixel_size == pytest.approx(0.2, rel=1e-6)


@pytest.mark.slow
def test_widget_predicts_the_image_layer_like_the_command_line(viewer_model, qtbot, predicted):
    """The widget runs the engine behind ``morphoscope predict``: on the same image and settings
    it finds the same objects (NAME_labels.tif of the CLI run)."""
    from morphoscope.io.images import read_image, read_label_image
    from morphoscope.napari.widget import PredictWidget

    viewer = viewer_model
    image = read_image(predicted.parent / "images" / f"{SAMPLE}.tif")
    viewer.add_image(image, name=SAMPLE, scale=(PIXEL_SIZE, PIXEL_SIZE), units=("micrometer", "micrometer"))
    widget = PredictWidget(viewer)
    qtbot.addWidget(widget.native)
    assert widget.image.value is viewer.layers[SAMPLE]
    widget.model.value = "nuclei-maskrcnn"
    widget.threshold.value = 0.5
    widget.run(blocking=True)
    layer = viewer.layers[f"{SAMPLE} nucleus"]
    expected = read_label_image(predicted / f"{SAMPLE}_labels.tif")
    assert np.array_equal(layer.data, expected)
    assert tuple(layer.scale) == pytest.approx((PIXEL_SIZE, PIXEL_SIZE))
    assert list(layer.features["index"]) == list(range(1, expected.max() + 1))
    np.testing.assert_allclose(layer.features["area_um2"], np.bincount(expected.ravel())[1:] * PIXEL_SIZE**2)
    assert widget.status.value == f"{expected.max()} objects"
    # a higher threshold keeps fewer objects, and predicting again replaces the layer
    widget.threshold.value = 0.99
    widget.run(blocking=True)
    assert [layer.name for layer in viewer.layers].count(f"{SAMPLE} nucleus") == 1
    assert 0 < viewer.layers[f"{SAMPLE} nucleus"].data.max() < expected.max()


def test_widget_refuses_a_diameter_for_a_model_without_one(viewer_model, qtbot):
    """The diameter goes to the engine, which rescales only models that record theirs (the
    Mask R-CNN nuclei-maskrcnn does not)."""
    from morphoscope.errors import InputError
    from morphoscope.napari.widget import PredictWidget

    viewer = viewer_model
    viewer.add_image(np.zeros((64, 64), np.uint16), name="blank")
    widget = PredictWidget(viewer)
    qtbot.addWidget(widget.native)
    assert widget.image.value is viewer.layers["blank"]
    widget.model.value = "nuclei-maskrcnn"  # (the default nuclei model records its diameter)
    bundle = widget.bundle()
    options = widget.settings(bundle)
    assert options == {"score_threshold": 0.5}
    widget.diameter.value = 30
    assert widget.settings(bundle)["diameter"] == 30
    assert bundle.task.inference(bundle).diameter is None
    with pytest.raises(InputError, match="does not record the object diameter"):
        widget.predict_layers()


def test_image_is_found_beside_the_prediction_folder_only(predicted, tmp_path):
    """Moved away from its input, the folder still opens: labels without the image."""
    from morphoscope.napari.reader import read_prediction

    moved = tmp_path / "elsewhere" / "predictions"
    shutil.copytree(predicted, moved)
    assert [kind for _, _, kind in read_prediction(str(moved))] == ["labels"]


# ---- napari's window (OpenGL) -----------------------------------------------------------------
def test_window_shows_a_prediction_folder_and_docks_the_widget(window_viewer, predicted):
    viewer = window_viewer(show=True)  # shown on the (virtual) display so that the canvas draws
    viewer.open(str(predicted), plugin="morphoscope")
    viewer.reset_view()
    assert [layer.name for layer in viewer.layers] == [SAMPLE, f"{SAMPLE} nucleus"]
    _, widget = viewer.window.add_plugin_dock_widget("morphoscope", "Predict")
    assert type(widget).__name__ == "PredictWidget"
    assert widget.image.value is viewer.layers[SAMPLE]
    screenshot = viewer.screenshot(canvas_only=True)
    assert screenshot.ndim == 3 and screenshot[..., :3].max() > 0  # the image was drawn
