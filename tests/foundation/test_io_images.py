import numpy as np
import pytest
import tifffile
from PIL import Image

from morphoscope.errors import InputError, OutputExistsError
from morphoscope.io import atomic_write, find_images, read_image, read_label_image, to_model_input
from morphoscope.io.images import write_label_tiff


def test_16bit_tiff_keeps_dynamic_range(tmp_path):
    img = (np.arange(64 * 80, dtype=np.uint32).reshape(64, 80) * 13 % 4096).astype(np.uint16)
    for compression in ("zlib", "lzw", None):
        p = tmp_path / f"a_{compression}.tif"
        tifffile.imwrite(p, img, compression=compression)
        out = read_image(p)
        assert out.dtype == np.uint16 and np.array_equal(out, img)


def test_multipage_tiff_and_page_selection(tmp_path):
    stack = np.random.default_rng(0).integers(0, 65535, (3, 20, 30), dtype=np.uint16)
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, stack, photometric="minisblack")
    assert read_image(p).shape == (3, 20, 30)
    tifffile.imwrite(tmp_path / "planar.tif", stack.astype(np.uint8), photometric="rgb", planarconfig="separate")
    assert read_image(tmp_path / "planar.tif").shape == (20, 30, 3)
    assert np.array_equal(read_image(p, page=2), stack[2])


def test_png_16bit_rgb_rgba_and_jpeg(tmp_path):
    g16 = (np.arange(50 * 40).reshape(50, 40) * 20).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert np.array_equal(read_image(tmp_path / "g16.png"), g16)
    rgba = np.random.default_rng(1).integers(0, 255, (10, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    assert read_image(tmp_path / "c.png").shape == (10, 12, 4)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (10, 12, 3)
    x = to_model_input(read_image(tmp_path / "c.png"))
    assert x.shape == (3, 10, 12) and x.dtype == np.float32


def test_percentile_normalisation_makes_bit_depths_alike():
    rng = np.random.default_rng(0)
    base = rng.random((64, 64))
    a8 = (base * 200).astype(np.uint8)
    a16 = a8.astype(np.uint16) * 16  # the same image stored as 12-bit-in-16-bit
    x8, x16 = to_model_input(a8), to_model_input(a16)
    assert x8.dtype == np.float32
    np.testing.assert_allclose(x8, x16, atol=1e-5)
    assert x8.shape == (3, 64, 64) and np.array_equal(x8[0], x8[2])  # grey repeated


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="broken.tif"):
        read_image(bad)
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.png")
    trunc = tmp_path / "trunc.png"
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:40])
    with pytest.raises(InputError, match="trunc.png"):
        read_image(trunc)


def test_label_images_must_be_lossless_integer(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.full((4, 4), 1.5, np.float32))
    with pytest.raises(InputError, match="non-integer"):
        read_label_image(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "ok.tif", np.full((4, 4), 2.0, np.float32))
    assert read_label_image(tmp_path / "ok.tif").dtype.kind == "i"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "l.jpg")
    with pytest.raises(InputError, match="lossless"):
        read_label_image(tmp_path / "l.jpg")


def test_atomic_write_keeps_old_file_on_failure_and_refuses_overwrite(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(p, mode="w") as fh:
            fh.write("new, half-way")
            raise RuntimeError("crash")
    assert p.read_text() == "old"
    with atomic_write(p, mode="w") as fh:
        fh.write("new")
    assert p.read_text() == "new" and (p.stat().st_mode & 0o644) == 0o644  # readable by colleagues
    assert [q.name for q in tmp_path.iterdir()] == ["out.txt"]  # no temp file left
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with atomic_write(p, mode="w", overwrite=False) as fh:
            fh.write("x")


def test_label_tiff_round_trip_and_uint32(tmp_path):
    lab = np.zeros((10, 10), np.int64)
    lab[2:4, 2:4] = 70000
    write_label_tiff(tmp_path / "l.tif", lab)
    out = tifffile.imread(tmp_path / "l.tif")
    assert out.dtype == np.uint32 and out[2, 2] == 70000


def test_find_images_files_folders_globs(tmp_path):
    for n in ("b.png", "a.tif", "notes.txt"):
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in find_images(tmp_path)] == ["a.tif", "b.png"]
    assert [p.name for p in find_images(str(tmp_path / "*.png"))] == ["b.png"]
    with pytest.raises(InputError):
        find_images(tmp_path / "missing")
