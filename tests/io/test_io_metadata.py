"""read_metadata: units converted to µm and seconds, axes decided in one place, headers only, and
bad input reported in one line naming the file. Files are written with tifffile, PIL and
ome-zarr-py; expected values are hand-computed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from morphoscope.errors import InputError
from morphoscope.io import open_image, read_image, read_metadata

YX = (24, 32)


def grey(shape=YX, dtype=np.uint16):
    return np.arange(int(np.prod(shape)), dtype=np.uint64).reshape(shape).astype(dtype)


# ------------------------------------------------------------------------------ OME-TIFF units


@pytest.mark.parametrize("value, unit", [(650, "nm"), (0.65, "µm"), (0.00065, "mm"), (6500, "Å"),
                                         (6.5e-7, "m"), (650_000, "pm")])
def test_ome_physical_size_units_give_the_same_um(tmp_path, value, unit):
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, grey((3, *YX)), ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": value, "PhysicalSizeXUnit": unit,
        "PhysicalSizeY": value, "PhysicalSizeYUnit": unit,
        "PhysicalSizeZ": 2000, "PhysicalSizeZUnit": "nm"})
    meta = read_metadata(path)
    assert meta.format == "ome-tiff" and meta.axes == "ZYX" and meta.shape == (3, *YX)
    assert meta.pixel_size == pytest.approx(0.65)
    assert meta.pixel_size_y == pytest.approx(0.65)
    assert meta.z_spacing == pytest.approx(2.0)


def test_ome_default_unit_is_micrometre_and_y_falls_back_to_x(tmp_path):
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, grey(), ome=True, metadata={"PhysicalSizeX": 0.4})
    meta = read_metadata(path)
    assert meta.pixel_size == pytest.approx(0.4) and meta.pixel_size_y == pytest.approx(0.4)
    assert meta.z_spacing is None and meta.time_interval is None


@pytest.mark.parametrize("value, unit, seconds", [(500, "ms", 0.5), (2, "min", 120.0), (1.5, "h", 5400.0),
                                                  (30, "s", 30.0)])
def test_ome_time_increment_in_seconds(tmp_path, value, unit, seconds):
    path = tmp_path / "t.ome.tif"
    tifffile.imwrite(path, grey((4, *YX)), ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": value, "TimeIncrementUnit": unit})
    meta = read_metadata(path)
    assert meta.axes == "TYX"
    assert meta.time_interval == pytest.approx(seconds)


def test_ome_tczyx_axes_and_channel_names(tmp_path):
    data = grey((2, 3, 4, *YX))
    path = tmp_path / "h.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "TCZYX", "Channel": {"Name": ["DAPI", "GFP", "RFP"]}, "PhysicalSizeX": 0.2,
        "PhysicalSizeY": 0.2})
    meta = read_metadata(path)
    assert meta.axes == "TCZYX" and meta.shape == data.shape and meta.dtype == np.uint16
    assert meta.channel_names == ("DAPI", "GFP", "RFP")
    assert not meta.is_rgb
    assert meta.nbytes == data.nbytes


def test_off_spec_ome_unit_read_through_the_fallback_parser(tmp_path):
    # "micron" is no OME unit (ome-types refuses the XML); some writers use it anyway
    xml = ('<?xml version="1.0" encoding="UTF-8"?>'
           '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
           '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" '
           f'SizeX="{YX[1]}" SizeY="{YX[0]}" SizeZ="1" SizeC="1" SizeT="1" '
           'PhysicalSizeX="0.5" PhysicalSizeXUnit="micron" PhysicalSizeY="0.5" PhysicalSizeYUnit="micron">'
           '<Channel ID="Channel:0:0" SamplesPerPixel="1"/><TiffData/></Pixels></Image></OME>')
    path = tmp_path / "vendor.ome.tif"
    tifffile.imwrite(path, grey(), description=xml, metadata=None)
    import ome_types

    with warnings.catch_warnings(), pytest.raises(Exception):  # ome-types refuses it: the fallback reads it
        warnings.simplefilter("ignore")
        ome_types.from_xml(xml, validate=False)
    meta = read_metadata(path)
    assert meta.format == "ome-tiff" and meta.axes == "YX"
    assert meta.pixel_size == pytest.approx(0.5)


# ------------------------------------------------------------------------------ ImageJ and plain TIFF


def test_imagej_hyperstack_axes_and_sizes(tmp_path):
    data = grey((3, 4, 2, *YX))
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "TZCYX", "unit": "micron", "spacing": 1.5, "finterval": 30})
    meta = read_metadata(path)
    assert meta.format == "imagej-tiff"
    assert meta.axes == "TZCYX" and meta.shape == data.shape
    assert meta.pixel_size == pytest.approx(0.325, rel=1e-6)
    assert meta.z_spacing == pytest.approx(1.5)
    assert meta.time_interval == pytest.approx(30.0)  # ImageJ's time unit defaults to seconds


# ImageJ descriptions are ASCII: ImageJ writes µm escaped, as "\u00B5m"
@pytest.mark.parametrize("unit, factor", [("nm", 1e-3), ("um", 1.0), ("micron", 1.0), ("\\u00B5m", 1.0),
                                          ("mm", 1e3), ("cm", 1e4)])
def test_imagej_units(tmp_path, unit, factor):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, grey((2, *YX)), imagej=True, resolution=(1 / 4.0, 1 / 4.0),
                     metadata={"axes": "ZYX", "unit": unit, "spacing": 10.0, "finterval": 250, "tunit": "ms"})
    meta = read_metadata(path)
    assert meta.pixel_size == pytest.approx(4.0 * factor)
    assert meta.z_spacing == pytest.approx(10.0 * factor)
    assert meta.time_interval == pytest.approx(0.25)


def test_imagej_without_unit_or_in_inches_has_no_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "pixel.tif", grey(), imagej=True, resolution=(2.0, 2.0))
    tifffile.imwrite(tmp_path / "inch.tif", grey(), imagej=True, resolution=(300.0, 300.0),
                     metadata={"unit": "inch"})
    assert read_metadata(tmp_path / "pixel.tif").pixel_size is None
    assert read_metadata(tmp_path / "inch.tif").pixel_size is None


def test_non_square_pixels_keep_both_sizes(tmp_path):
    path = tmp_path / "rect.tif"
    tifffile.imwrite(path, grey(), imagej=True, resolution=(1 / 0.3, 1 / 0.6), metadata={"unit": "um"})
    meta = read_metadata(path)
    assert meta.pixel_size == pytest.approx(0.3) and meta.pixel_size_y == pytest.approx(0.6)


def test_plain_tiff_resolution_in_centimetres_and_inches(tmp_path):
    tifffile.imwrite(tmp_path / "cm.tif", grey(), resolution=(1e4 / 0.5, 1e4 / 0.25), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "inch.tif", grey(), resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "none.tif", grey())
    cm = read_metadata(tmp_path / "cm.tif")
    assert cm.format == "tiff" and cm.axes == "YX"
    assert cm.pixel_size == pytest.approx(0.5) and cm.pixel_size_y == pytest.approx(0.25)
    assert read_metadata(tmp_path / "inch.tif").pixel_size is None  # a print resolution
    assert read_metadata(tmp_path / "none.tif").pixel_size is None


def test_real_imagej_file_in_microns(shared_data):
    # NIS-Elements export saved by ImageJ 1.52p: unit "micron", 0.1843 µm/px per the data set's README
    meta = read_metadata(shared_data / "dic-platelets-unlabelled" / "images" / "1.tif")
    assert meta.format == "imagej-tiff" and meta.axes == "YX" and meta.shape == (970, 970)
    assert meta.pixel_size == pytest.approx(0.1843, abs=1e-4)


# ------------------------------------------------------------------------------ axes


def test_three_page_grey_tiff_needs_axes(tmp_path):
    data = grey((3, 256, 256))
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data, photometric="minisblack")  # 3 pages, nothing says Z, T or C
    with pytest.raises(InputError) as exc:
        read_metadata(path)
    message = str(exc.value)
    assert "cannot tell the axes of this 3D stack of shape (3, 256, 256)" in message
    assert "--axes" in message and "\n" not in message and exc.value.path == path
    meta = read_metadata(path, axes="zyx")
    assert meta.axes == "ZYX" and meta.shape == data.shape and not meta.is_rgb


def test_tifffile_default_planar_write_of_a_3_plane_stack_is_not_rgb(tmp_path):
    # tifffile stores any (3, Y, X) array as planar RGB unless told otherwise
    data = grey((3, *YX))
    path = tmp_path / "z3.tif"
    with pytest.warns(DeprecationWarning):
        tifffile.imwrite(path, data)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.photometric == tifffile.PHOTOMETRIC.RGB  # the trap is real
    with pytest.raises(InputError, match="--axes"):
        read_metadata(path)
    meta = read_metadata(path, axes="ZYX")
    assert meta.axes == "ZYX" and not meta.is_rgb
    with open_image(path, axes="ZYX") as src:
        np.testing.assert_array_equal(src.read({"Z": 2}), data[2])


def test_shaped_description_with_axes_decides(tmp_path):
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, grey((3, *YX)), photometric="minisblack", metadata={"axes": "TYX"})
    assert read_metadata(path).axes == "TYX"


def test_rgb_tiff_is_yxc(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, grey((*YX, 3), np.uint8), photometric="rgb")
    meta = read_metadata(path)
    assert meta.axes == "YXC" and meta.shape == (*YX, 3) and meta.is_rgb


def test_planar_rgb_from_other_software_is_colour(tmp_path):
    # planar RGB without tifffile's shape description: the file's photometric is its word
    data = grey((3, *YX), np.uint8)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate", metadata=None)
    meta = read_metadata(path)
    assert meta.axes == "CYX" and meta.is_rgb
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read(), np.moveaxis(data, 0, -1))
        np.testing.assert_array_equal(src.read(), read_image(path))


def test_imagej_tzyx(tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, grey((2, 3, *YX)), imagej=True, metadata={"axes": "TZYX"})
    meta = read_metadata(path)
    assert meta.axes == "TZYX" and meta.shape == (2, 3, *YX)


def test_given_axes_may_name_singletons_the_file_squeezed(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, grey((3, *YX)), imagej=True, metadata={"axes": "ZYX"})
    meta = read_metadata(path, axes="TZCYX")  # ImageJ files are TZCYX with T=C=1 here
    assert meta.axes == "TZCYX" and meta.shape == (1, 3, 1, *YX)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, grey())
    with pytest.raises(InputError, match="'ZYX' have 3 letters but the image has 2 dimensions"):
        read_metadata(plain, axes="ZYX")  # a 2D file has no Z to name


@pytest.mark.parametrize("axes, message", [("YX", "have 2 letters but the image has 3"),
                                           ("ZQX", "unknown letter"), ("ZZX", "appears twice"),
                                           ("TZY", "must include Y and X")])
def test_bad_axes_name_the_file(tmp_path, axes, message):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, grey((3, *YX)), photometric="minisblack")
    with pytest.raises(InputError, match=message) as exc:
        read_metadata(path, axes=axes)
    assert exc.value.path == path and "\n" not in str(exc.value)


# ------------------------------------------------------------------------------ PNG, JPEG, BMP


def _pil_images(folder):
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, YX, dtype=np.uint8)
    images = {
        "grey.png": Image.fromarray(u8),
        "grey16.png": Image.fromarray(grey(YX, np.uint16) * 50),
        "rgb.png": Image.fromarray(np.stack([u8, u8[::-1], u8 // 2], -1)),
        "rgba.png": Image.fromarray(np.stack([u8, u8, u8, 255 - u8], -1)),
        "palette.png": Image.fromarray(u8).convert("P"),
        "grey_alpha.png": Image.fromarray(u8).convert("LA"),
        "mask.png": Image.fromarray(u8 > 128),
        "photo.jpg": Image.fromarray(np.stack([u8, u8, u8], -1)),
        "cmyk.jpg": Image.fromarray(np.stack([u8, u8, u8], -1)).convert("CMYK"),
        "grey.bmp": Image.fromarray(u8),
    }
    paths = []
    for name, im in images.items():
        im.save(folder / name)
        paths.append(folder / name)
    return paths


def test_pil_headers_match_what_read_image_decodes(tmp_path):
    for path in _pil_images(tmp_path):
        meta = read_metadata(path)
        decoded = read_image(path)
        assert meta.shape == decoded.shape and meta.dtype == decoded.dtype, path.name
        assert meta.axes == ("YX" if decoded.ndim == 2 else "YXC"), path.name
        assert meta.is_rgb == (decoded.ndim == 3), path.name
        assert meta.pixel_size is None
        assert meta.format == {".png": "png", ".jpg": "jpeg", ".bmp": "bmp"}[path.suffix]
        with open_image(path) as src:
            plane = src.read()
        assert plane.dtype == decoded.dtype
        np.testing.assert_array_equal(plane, decoded, err_msg=path.name)


# ------------------------------------------------------------------------------ headers only


def test_header_is_read_without_decoding_pixels(tmp_path):
    data = grey((512, 512))
    path = tmp_path / "broken_pixels.tif"
    tifffile.imwrite(path, data, compression="zlib", resolution=(1e4 / 0.5, 1e4 / 0.5),
                     resolutionunit="CENTIMETER")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages.first.dataoffsets[0], tif.pages.first.databytecounts[0]
    raw = bytearray(path.read_bytes())
    raw[offset: offset + count] = b"\xff" * count  # the compressed pixel data is garbage now
    path.write_bytes(bytes(raw))
    meta = read_metadata(path)  # fine: only the header is read
    assert meta.shape == (512, 512) and meta.pixel_size == pytest.approx(0.5)
    with pytest.raises(InputError, match="cannot read image data") as exc:
        with open_image(path) as src:
            src.read()
    assert exc.value.path == path and "\n" not in str(exc.value)


# ------------------------------------------------------------------------------ bad input


def test_bad_files_give_one_line_naming_the_file(tmp_path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, grey((256, 256)), compression="zlib")
    png = tmp_path / "good.png"
    Image.fromarray(grey((256, 256), np.uint8)).save(png)
    cases = {
        "empty.tif": (b"", "empty"),
        "empty.png": (b"", "empty"),
        "text.tif": (b"hello, this is not an image", "cannot read TIFF"),
        "text.png": (b"hello, this is not an image", "not a PNG image"),
        "short.tif": (good.read_bytes()[:40], "TIFF"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError, match=message) as exc:
            with open_image(path) as src:
                src.read()
        assert exc.value.path == path and "\n" not in str(exc.value), name
    for name, source in (("truncated.tif", good), ("truncated.png", png)):
        path = tmp_path / name
        path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        with pytest.raises(InputError) as exc:
            with open_image(path) as src:
                src.read()
        assert exc.value.path == path and "\n" not in str(exc.value), name
    with pytest.raises(InputError, match="not found"):
        read_metadata(tmp_path / "missing.tif")
    (tmp_path / "movie.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="unsupported image format '.gif'"):
        read_metadata(tmp_path / "movie.gif")
    (tmp_path / "nothing.zarr").mkdir()
    with pytest.raises(InputError, match="not a zarr store") as exc:
        read_metadata(tmp_path / "nothing.zarr")
    assert exc.value.path == tmp_path / "nothing.zarr"
