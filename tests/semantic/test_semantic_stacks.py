"""Stacks: axes from metadata or given, round trips keep shape/dtype/axes/pixel size, and
prediction writes stacks out with the input's axes and metadata. Stacks are made of real BBBC039
images (several images stacked as T or Z)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from morphoscope.errors import InputError
from morphoscope.io.images import read_image
from morphoscope.io.stacks import read_stack, validate_axes, write_stack


@pytest.fixture(scope="module")
def real_planes(small_set):
    return np.stack([read_image(p) for p in sorted((small_set / "images").glob("*.tif"))])  # (3, 160, 224)


@pytest.mark.parametrize("axes,shape_of,ome", [
    ("TYX", lambda p: p, False),
    ("ZYX", lambda p: p, True),
    ("TZYX", lambda p: np.stack([p, p[::-1]]), False),
    ("TZCYX", lambda p: np.stack([p, p])[:, :, None].repeat(2, axis=2), True),
    ("ZCYX", lambda p: np.stack([p, p], axis=1), False),
])
def test_round_trip_keeps_shape_dtype_axes_pixel_size(tmp_path, real_planes, axes, shape_of, ome):
    data = shape_of(real_planes)
    path = tmp_path / "s.tif"
    write_stack(path, data, axes, pixel_size=0.325, z_spacing=2.0 if "Z" in axes else None,
                time_interval=30.0 if "T" in axes else None, ome=ome)
    st = read_stack(path)
    assert st.axes == axes
    assert st.data.shape == data.shape and st.data.dtype == np.uint16
    np.testing.assert_array_equal(st.data, data)
    assert st.pixel_size == pytest.approx(0.325, rel=1e-4)
    if "Z" in axes:
        assert st.z_spacing == pytest.approx(2.0)
    assert st.ome == ome


def test_axes_undeterminable_asks_for_axes(tmp_path, real_planes):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, real_planes, photometric="minisblack")  # 3 pages, nothing says whether they are Z or T
    with pytest.raises(InputError, match="--axes"):
        read_stack(path)
    st = read_stack(path, axes="zyx")
    assert st.axes == "ZYX" and st.plane_shape == (3,)
    with pytest.raises(InputError, match="2 letters"):
        read_stack(path, axes="YX")
    with pytest.raises(ValueError):
        validate_axes("QYX")
    with pytest.raises(ValueError):
        validate_axes("ZZX")


def test_2d_and_rgb_need_no_axes(tmp_path, small_set):
    p = sorted((small_set / "images").glob("*.tif"))[0]
    assert read_stack(p).axes == "YX"
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    assert read_stack(tmp_path / "rgb.tif").axes == "YXC"


def test_predict_stack_in_stack_out(tmp_path, real_planes, tiny_checkpoint):
    from morphoscope.prediction.predict import predict

    data = np.stack([real_planes[:2], real_planes[1:]])  # T=2, Z=2
    src = tmp_path / "in" / "movie.tif"
    src.parent.mkdir()
    write_stack(src, data, "TZYX", pixel_size=0.65, z_spacing=1.5, time_interval=60.0)
    out = predict([src], tmp_path / "out", model=tiny_checkpoint, progress=False)
    lab = read_stack(out / "movie_labels.tif")
    assert lab.axes == "TZYX" and lab.data.shape == data.shape and lab.data.dtype == np.uint16
    assert lab.pixel_size == pytest.approx(0.65, rel=1e-4) and lab.z_spacing == pytest.approx(1.5)
    assert lab.time_interval == pytest.approx(60.0)
    mask = read_stack(out / "movie_nucleus.tif")
    assert mask.axes == "TZYX" and mask.data.shape == data.shape
    assert (out / "movie_overlay.png").is_file()
    js = json.loads((out / "predictions.json").read_text())
    assert [im["plane"] for im in js["images"]] == [{"T": 0, "Z": 0}, {"T": 0, "Z": 1}, {"T": 1, "Z": 0},
                                                    {"T": 1, "Z": 1}]
    # labels are unique across the stack and each annotation points at its own label
    labels = {a["label"] for a in js["annotations"]}
    assert labels == set(np.unique(lab.data[lab.data > 0]).tolist())
    # the stack needs its axes when the file does not say
    plain = tmp_path / "in2" / "plain.tif"
    plain.parent.mkdir()
    tifffile.imwrite(plain, real_planes, photometric="minisblack")
    with pytest.raises(InputError, match="--axes"):
        predict([plain], tmp_path / "out2", model=tiny_checkpoint, progress=False)
    out2 = predict([plain], tmp_path / "out2", model=tiny_checkpoint, axes="ZYX", progress=False,
                   keep_maps=True, threshold=0.3)
    prob = read_stack(out2 / "plain_prob.tif")
    assert prob.axes == "ZYX" and prob.data.dtype == np.float32 and prob.data.shape == real_planes.shape
    assert json.loads((out2 / "predictions.json").read_text())["info"]["settings"]["threshold"] == 0.3
