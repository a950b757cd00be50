"""read_stack takes its axes and sizes from read_metadata, and write_stack writes sizes that read
back in µm and seconds (checked with tifffile and ome-types as the independent readers)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from morphoscope.errors import InputError
from morphoscope.io.stacks import read_stack, write_stack
from morphoscope.morphology import read_pixel_size


def stack(shape, dtype=np.uint16):
    return np.random.default_rng(4).integers(0, 4000, shape).astype(dtype)


def test_ome_tiff_in_nanometres_gives_pixel_size_in_micrometres(tmp_path):
    # the reported bug: PhysicalSizeX=650 nm came back as 650 "µm"
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(path, stack((3, 32, 40)), ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 650, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 650, "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 1500, "PhysicalSizeZUnit": "nm"})
    st = read_stack(path)
    assert st.axes == "ZYX" and st.ome
    assert st.pixel_size == pytest.approx(0.65)
    assert st.z_spacing == pytest.approx(1.5)
    assert read_pixel_size(path) == pytest.approx(0.65)  # the measurement reader agrees


@pytest.mark.parametrize("ome", [False, True])
def test_write_read_round_trip_of_sizes(tmp_path, ome):
    data = stack((2, 3, 32, 40))
    path = tmp_path / "movie.tif"
    write_stack(path, data, "TZYX", pixel_size=0.325, z_spacing=2.5, time_interval=45.0, ome=ome)
    st = read_stack(path)
    assert st.axes == "TZYX" and st.ome == ome
    np.testing.assert_array_equal(st.data, data)
    assert st.pixel_size == pytest.approx(0.325, rel=1e-6)
    assert st.z_spacing == pytest.approx(2.5)
    assert st.time_interval == pytest.approx(45.0)
    with tifffile.TiffFile(path) as tif:  # the units are written, not implied
        if ome:
            import ome_types
            from ome_types.model import UnitsLength, UnitsTime

            px = ome_types.from_xml(tif.ome_metadata).images[0].pixels
            assert px.physical_size_x == pytest.approx(0.325)
            assert px.physical_size_x_unit == UnitsLength.MICROMETER
            assert px.physical_size_z_unit == UnitsLength.MICROMETER
            assert px.time_increment == pytest.approx(45.0) and px.time_increment_unit == UnitsTime.SECOND
        else:
            ij = tif.imagej_metadata
            assert ij["unit"] == "um" and ij["spacing"] == pytest.approx(2.5)
            assert ij["finterval"] == pytest.approx(45.0) and ij["tunit"] == "sec"


def test_imagej_z_spacing_without_pixel_size(tmp_path):
    path = tmp_path / "z.tif"
    write_stack(path, stack((3, 16, 16)), "ZYX", z_spacing=4.0)
    st = read_stack(path)
    assert st.z_spacing == pytest.approx(4.0)
    assert st.pixel_size is None  # not 1 µm because a unit was written for Z


def test_read_stack_names_squeezed_singleton_axes(tmp_path):
    data = stack((3, 16, 16))
    path = tmp_path / "ij.tif"
    write_stack(path, data, "ZYX", pixel_size=0.5)
    st = read_stack(path, axes="TZCYX")
    assert st.axes == "TZCYX" and st.data.shape == (1, 3, 1, 16, 16)
    np.testing.assert_array_equal(st.data[0, :, 0], data)
    assert st.plane_shape == (1, 3)


def test_read_stack_of_png_and_rgb(tmp_path):
    from PIL import Image

    rgb = stack((10, 12, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    st = read_stack(tmp_path / "c.png")
    assert st.axes == "YXC" and st.is_2d
    np.testing.assert_array_equal(st.data, rgb)
    tifffile.imwrite(tmp_path / "p.tif", stack((4, 8, 8)), photometric="minisblack")
    with pytest.raises(InputError, match="--axes"):
        read_stack(tmp_path / "p.tif")
