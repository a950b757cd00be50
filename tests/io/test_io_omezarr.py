"""OME-Zarr label images: written window by window or whole, read back by ome-zarr-py (the reader
napari-ome-zarr uses) and by read_metadata/open_image; OME-Zarr written by ome-zarr-py is read
with its units converted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from morphoscope.errors import OutputExistsError
from morphoscope.io import create_labels_zarr, open_image, read_metadata, write_labels_zarr
from morphoscope.io.stacks import read_stack

NEEDS_OME_ZARR = "ome-zarr-py is a test dependency (pip install -e .[test])"


def read_with_ome_zarr(path):
    """The first node of an OME-Zarr as ome-zarr-py sees it: (level-0 data, metadata, spec names)."""
    pytest.importorskip("ome_zarr", reason=NEEDS_OME_ZARR)
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = list(Reader(parse_url(str(path)))())[0]
    return np.asarray(node.data[0]), node.metadata, {type(s).__name__ for s in node.specs}


def labels_like_a_mosaic(shape, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    for i in range(1, 60):
        y, x = rng.integers(0, shape[0] - 40), rng.integers(0, shape[1] - 40)
        labels[y: y + rng.integers(5, 40), x: x + rng.integers(5, 40)] = i
    labels[-1, -1] = 70_000  # past uint16
    return labels


def test_window_by_window_labels_read_back_everywhere(tmp_path):
    labels = labels_like_a_mosaic((1500, 1300))
    path = tmp_path / "slide_labels.ome.zarr"
    array = create_labels_zarr(path, shape=labels.shape, axes="YX", dtype=np.uint32, chunks=(512, 512),
                               pixel_size=0.25, name="nuclei")
    for y in range(0, labels.shape[0], 400):  # windows that do not line up with the chunks
        for x in range(0, labels.shape[1], 600):
            array[y: y + 400, x: x + 600] = labels[y: y + 400, x: x + 600]
    data, metadata, specs = read_with_ome_zarr(path)
    np.testing.assert_array_equal(data, labels)
    assert {"Multiscales", "Label"} <= specs  # napari-ome-zarr shows it as a labels layer
    assert metadata["axes"] == [{"name": "y", "type": "space", "unit": "micrometer"},
                                {"name": "x", "type": "space", "unit": "micrometer"}]
    assert metadata["coordinateTransformations"] == [[{"type": "scale", "scale": [0.25, 0.25]}]]
    zarray = json.loads((path / "0" / ".zarray").read_text())
    assert zarray["zarr_format"] == 2 and zarray["dimension_separator"] == "/"  # NGFF 0.4 layout
    assert json.loads((path / ".zattrs").read_text())["multiscales"][0]["version"] == "0.4"
    meta = read_metadata(path)
    assert meta.format == "ome-zarr" and meta.axes == "YX" and meta.shape == labels.shape
    assert meta.dtype == np.uint32 and meta.pixel_size == pytest.approx(0.25)
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read(region=(slice(390, 410), slice(590, 1210))),
                                      labels[390:410, 590:1210])


def test_whole_stack_with_time_and_z(tmp_path):
    labels = np.stack([labels_like_a_mosaic((64, 80), seed=s) for s in range(6)]).reshape(2, 3, 64, 80)
    path = tmp_path / "movie.ome.zarr"
    write_labels_zarr(path, labels, axes="TZYX", pixel_size=0.5, z_spacing=2.0, time_interval=90.0)
    data, metadata, _ = read_with_ome_zarr(path)
    np.testing.assert_array_equal(data, labels)
    assert [a["name"] for a in metadata["axes"]] == ["t", "z", "y", "x"]
    assert metadata["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert metadata["coordinateTransformations"][0][0]["scale"] == [90.0, 2.0, 0.5, 0.5]
    meta = read_metadata(path)
    assert (meta.axes, meta.shape) == ("TZYX", labels.shape)
    assert (meta.pixel_size, meta.z_spacing, meta.time_interval) == pytest.approx((0.5, 2.0, 90.0))
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read_volume({"T": 1}), labels[1])
    stack = read_stack(path)
    assert stack.axes == "TZYX" and stack.ome and stack.z_spacing == pytest.approx(2.0)
    np.testing.assert_array_equal(stack.data, labels)
    assert not list(tmp_path.glob(".*part"))  # the temporary store was renamed into place


def test_unknown_sizes_are_written_without_units(tmp_path):
    path = tmp_path / "l.ome.zarr"
    write_labels_zarr(path, np.ones((8, 9), np.uint16), axes="YX")
    _, metadata, _ = read_with_ome_zarr(path)
    assert all("unit" not in a for a in metadata["axes"])
    assert read_metadata(path).pixel_size is None


def test_overwrite_rules(tmp_path):
    path = tmp_path / "l.ome.zarr"
    write_labels_zarr(path, np.ones((8, 9), np.uint16), axes="YX")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_labels_zarr(path, np.full((8, 9), 2, np.uint16), axes="YX")
    with pytest.raises(OutputExistsError):
        create_labels_zarr(path, shape=(8, 9), axes="YX", dtype=np.uint16)
    write_labels_zarr(path, np.full((4, 5), 2, np.uint16), axes="YX", overwrite=True)
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read(), np.full((4, 5), 2, np.uint16))
    folder = tmp_path / "my_results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a zarr store"):
        create_labels_zarr(folder, shape=(8, 9), axes="YX", dtype=np.uint16, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("kwargs, message", [
    ({"axes": "ZCYX", "shape": (2, 2, 8, 8)}, "order T, C, Z, Y, X"),
    ({"axes": "YX", "shape": (8, 8), "dtype": np.float32}, "integers"),
    ({"axes": "ZYX", "shape": (8, 8)}, "do not fit"),
])
def test_bad_writer_arguments(tmp_path, kwargs, message):
    kwargs = {"dtype": np.uint16, **kwargs}
    with pytest.raises(ValueError, match=message):
        create_labels_zarr(tmp_path / "x.ome.zarr", **kwargs)


@pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning")  # ome-zarr's own default
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_images_are_read_with_units(tmp_path, version):
    import zarr

    pytest.importorskip("ome_zarr", reason=NEEDS_OME_ZARR)
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = {"0.4": FormatV04, "0.5": FormatV05}[version]()
    data = np.random.default_rng(3).integers(0, 1000, (2, 3, 64, 80), dtype=np.uint16)
    path = tmp_path / "image.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(data, group, fmt=fmt, axes="tcyx", scale={"t": 250.0, "c": 1.0, "y": 650.0, "x": 650.0},
                axes_units={"t": "millisecond", "y": "nanometer", "x": "nanometer"}, scale_factors=[2])
    assert ((path / "zarr.json").is_file()) == (version == "0.5")
    meta = read_metadata(path)
    assert meta.format == "ome-zarr" and meta.axes == "TCYX" and meta.shape == data.shape
    assert meta.pixel_size == pytest.approx(0.65) and meta.time_interval == pytest.approx(0.25)
    with open_image(path) as src:
        assert src.planes() == [{"T": 0}, {"T": 1}]
        np.testing.assert_array_equal(src.read({"T": 1}), np.moveaxis(data[1], 0, -1))
