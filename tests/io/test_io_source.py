"""ImageSource: planes and windows equal the numpy slices of the data written, only the tiles a
window touches are decoded, sample() is bounded and strided, and real files read as read_image
reads them."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import tifffile.zarr

import morphoscope.io.source as source_module
from morphoscope.errors import InputError
from morphoscope.io import open_image, read_image

TILE = 256


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """A 4096 x 4096 uint16 TIFF in 256 x 256 tiles (every tile holds data)."""
    data = np.random.default_rng(0).integers(0, 4096, (4096, 4096), dtype=np.uint16)
    path = tmp_path_factory.mktemp("tiled") / "mosaic.tif"
    tifffile.imwrite(path, data, tile=(TILE, TILE))
    return path, data


@pytest.fixture
def fetched(monkeypatch):
    """Record the keys of the chunks (tiles) tifffile's zarr store hands out, and read lazily."""
    keys: list[str] = []
    original = tifffile.zarr.ZarrTiffStore.get

    async def get(self, key, *args, **kwargs):
        if not key.endswith((".zarray", ".zattrs", ".zgroup", "zarr.json")):
            keys.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(tifffile.zarr.ZarrTiffStore, "get", get)
    monkeypatch.setattr(source_module, "CACHE_BYTES", 0)  # as for an image too big to keep
    return keys


def test_region_reads_only_the_tiles_it_touches(tiled, fetched):
    path, data = tiled
    with open_image(path) as src:
        assert src.meta.axes == "YX" and src.meta.shape == data.shape and src.planes() == [{}]
        window = src.read(region=(slice(1000, 1300), slice(2000, 2600)))
        np.testing.assert_array_equal(window, data[1000:1300, 2000:2600])
        # rows 1000..1299 lie in tile rows 3..5, columns 2000..2599 in tile columns 7..10
        assert len(set(fetched)) == 3 * 4
        fetched.clear()
        np.testing.assert_array_equal(src.read(region=(slice(4000, None), slice(None, 10))),
                                      data[4000:, :10])
        assert len(set(fetched)) == 1
        np.testing.assert_array_equal(src.read(region=(slice(5, 4000, 7), slice(3, 50, 2))),
                                      data[5:4000:7, 3:50:2])


def test_sample_is_bounded_strided_and_read_band_by_band(tiled, fetched, monkeypatch):
    path, data = tiled
    monkeypatch.setattr(source_module, "_BAND_BYTES", 2**20)  # bands of one tile row here
    per_read: list[int] = []
    read = source_module.ImageSource.read

    def counting_read(self, *args, **kwargs):
        before = len(fetched)
        out = read(self, *args, **kwargs)
        per_read.append(len(fetched) - before)
        return out

    monkeypatch.setattr(source_module.ImageSource, "read", counting_read)
    with open_image(path) as src:
        small = src.sample(max_pixels=1_000_000)
    # the smallest even stride within 1e6 pixels: ceil(4096/4)^2 = 1048576 > 1e6, ceil(4096/5)^2 = 672400
    np.testing.assert_array_equal(small, data[::5, ::5])
    assert small.size <= 1_000_000
    tiles_per_row = 4096 // TILE
    assert len(per_read) == tiles_per_row and max(per_read) == tiles_per_row  # never the whole plane


def test_small_images_are_sampled_without_bands(tmp_path):
    data = np.arange(100 * 90, dtype=np.uint16).reshape(100, 90)
    tifffile.imwrite(tmp_path / "s.tif", data)
    with open_image(tmp_path / "s.tif") as src:
        np.testing.assert_array_equal(src.sample(max_pixels=100 * 90), data)
        np.testing.assert_array_equal(src.sample(max_pixels=1000), data[::4, ::4])  # 25*23 = 575
        with pytest.raises(ValueError):
            src.sample(max_pixels=0)


def test_tczyx_planes_volumes_and_channels(tmp_path):
    data = np.random.default_rng(2).integers(0, 60000, (2, 3, 4, 20, 30), dtype=np.uint16)
    path = tmp_path / "h.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCZYX"})
    with open_image(path) as src:
        assert src.planes() == [{"T": t, "Z": z} for t in range(2) for z in range(4)]
        np.testing.assert_array_equal(src.read({"T": 1, "Z": 2}), np.moveaxis(data[1, :, 2], 0, -1))
        np.testing.assert_array_equal(src.read({"T": 1, "Z": 2, "C": 1}), data[1, 1, 2])
        np.testing.assert_array_equal(src.read({"T": 0, "Z": 3}, region=(slice(5, 9), slice(10, 12))),
                                      np.moveaxis(data[0, :, 3, 5:9, 10:12], 0, -1))
        np.testing.assert_array_equal(src.read_volume({"T": 1}), np.moveaxis(data[1], 0, -1))
        with pytest.raises(ValueError, match="must give Z"):
            src.read({"T": 0})
        with pytest.raises(IndexError):
            src.read({"T": 2, "Z": 0})
        with pytest.raises(ValueError, match="index names Y"):
            src.read({"T": 0, "Z": 0, "Y": 3})


def test_2d_volume_has_one_plane(tmp_path):
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)
    tifffile.imwrite(tmp_path / "p.tif", data)
    with open_image(tmp_path / "p.tif") as src:
        np.testing.assert_array_equal(src.read_volume(), data[None])


def test_one_bit_tiff_reads_as_0_255(tmp_path):
    mask = np.zeros((16, 24), bool)
    mask[4:9, 3:20] = True
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    with open_image(tmp_path / "mask.tif") as src:
        assert src.meta.dtype == np.uint8
        plane = src.read()
    np.testing.assert_array_equal(plane, mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(plane, read_image(tmp_path / "mask.tif"))


def test_planes_are_copies_of_the_cached_image(tmp_path):
    from PIL import Image

    data = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    tifffile.imwrite(tmp_path / "p.tif", data)
    Image.fromarray(data.astype(np.uint8)).save(tmp_path / "p.png")
    for name, expected in (("p.tif", data), ("p.png", data.astype(np.uint8))):
        with open_image(tmp_path / name) as src:
            src.read()[:] = 0  # e.g. normalised in place by the caller
            np.testing.assert_array_equal(src.read(), expected)


def test_closed_source_refuses_reads(tmp_path):
    tifffile.imwrite(tmp_path / "p.tif", np.zeros((4, 4), np.uint8))
    src = open_image(tmp_path / "p.tif")
    src.close()
    with pytest.raises(ValueError, match="closed"):
        src.read()


def test_real_bbbc039_image_reads_as_read_image(shared_data):
    path = sorted((shared_data / "bbbc039" / "training" / "images").glob("*.tif"))[0]
    expected = read_image(path)
    with open_image(path) as src:
        assert src.meta.shape == expected.shape == (520, 696) and src.meta.dtype == np.uint16
        plane = src.read()
        window = src.read(region=(slice(100, 200), slice(300, 650)))
        sample = src.sample(max_pixels=20_000)
    assert plane.dtype == expected.dtype
    np.testing.assert_array_equal(plane, expected)
    np.testing.assert_array_equal(window, expected[100:200, 300:650])
    np.testing.assert_array_equal(sample, expected[::5, ::5])  # ceil(520/5) * ceil(696/5) = 14560


def test_real_3d_stack_reads_plane_by_plane(shared_data):
    path = shared_data / "bbbc050-qcanet" / "images" / "8_cell_stage.tif"
    expected = tifffile.imread(path)  # (51, 120, 122)
    with open_image(path) as src:
        assert src.meta.axes == "ZYX" and src.meta.shape == expected.shape
        assert len(src.planes()) == expected.shape[0]
        np.testing.assert_array_equal(src.read({"Z": 17}), expected[17])
        np.testing.assert_array_equal(src.read_volume(), expected)


def test_truncated_tiled_tiff_is_one_line(tiled, tmp_path):
    path, _ = tiled
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(InputError) as exc:
        with open_image(cut) as src:
            src.read(region=(slice(3000, 3100), slice(3000, 3100)))
    assert exc.value.path == cut and "\n" not in str(exc.value)
