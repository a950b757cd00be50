"""Bad input and config errors, each one readable line naming the file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from semantic_testdata import tiny_config
from morphoscope.tasks import parse_config
from morphoscope.errors import ConfigError, InputError
from morphoscope.io.images import read_image, read_label_image, write_png
from morphoscope.tasks.semantic.data import list_samples, load_planes


def _planes(root, **over):
    cfg = parse_config(tiny_config(root, **over))
    return [p for s in list_samples(root) for p in load_planes(s, data_cfg=cfg.data, in_channels=1,
                                                            num_classes=cfg.num_classes)]


def _one_image_set(small_set, tmp_path, name="one"):
    root = tmp_path / name
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    img = sorted((small_set / "images").glob("*.tif"))[0]
    shutil.copy(img, root / "images" / img.name)
    shutil.copy(small_set / "labels" / f"{img.stem}.png", root / "labels" / f"{img.stem}.png")
    return root, img.stem


def test_stack_dataset_with_skip_empty_slices(small_set, tmp_path):
    root, stem = _one_image_set(small_set, tmp_path)
    img = read_image(root / "images" / f"{stem}.tif")
    lab = read_label_image(root / "labels" / f"{stem}.png")
    (root / "images" / f"{stem}.tif").unlink()
    (root / "labels" / f"{stem}.png").unlink()
    zero = np.zeros_like(lab)
    tifffile.imwrite(root / "images" / "z.tif", np.stack([img, img, img, img]), metadata={"axes": "ZYX"}, photometric="minisblack")
    tifffile.imwrite(root / "labels" / "z.tif", np.stack([zero, lab, lab, zero]).astype(np.uint16),
                     metadata={"axes": "ZYX"}, photometric="minisblack")
    assert len(_planes(root)) == 4
    kept = _planes(root, data={"train": str(root), "skip_empty_slices": True, "normalize": {"per": "stack"}})
    assert [p.name for p in kept] == ["z[Z=1]", "z[Z=2]"]
    assert kept[0].classes.max() == 1 and kept[0].instances.max() == lab.max()


def test_mismatched_stack_and_label_shapes(small_set, tmp_path):
    root, stem = _one_image_set(small_set, tmp_path)
    img = read_image(root / "images" / f"{stem}.tif")
    (root / "images" / f"{stem}.tif").unlink()
    (root / "labels" / f"{stem}.png").unlink()
    tifffile.imwrite(root / "images" / "z.tif", np.stack([img, img, img]), metadata={"axes": "ZYX"}, photometric="minisblack")
    tifffile.imwrite(root / "labels" / "z.tif", np.zeros((2,) + img.shape, np.uint16), metadata={"axes": "ZYX"}, photometric="minisblack")
    with pytest.raises(InputError, match="does not match") as exc:
        _planes(root)
    assert exc.value.path.name == "z.tif"


def test_undeterminable_stack_in_training_asks_for_axes(small_set, tmp_path):
    root, stem = _one_image_set(small_set, tmp_path)
    img = read_image(root / "images" / f"{stem}.tif")
    (root / "images" / f"{stem}.tif").unlink()
    (root / "labels" / f"{stem}.png").unlink()
    tifffile.imwrite(root / "images" / "z.tif", np.stack([img, img]), photometric="minisblack")
    tifffile.imwrite(root / "labels" / "z.tif", np.zeros((2,) + img.shape, np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match="--axes"):
        _planes(root)
    assert len(_planes(root, data={"train": str(root), "axes": "TYX"})) == 2


def test_class_id_not_declared(small_set, tmp_path):
    root, stem = _one_image_set(small_set, tmp_path)
    lab = read_label_image(root / "labels" / f"{stem}.png")
    classes = np.where(lab > 0, 1, 0).astype(np.uint8)
    classes[:5, :5] = 3
    write_png(root / "labels" / f"{stem}.png", classes)
    with pytest.raises(InputError, match="class id.*3.*not declared"):
        _planes(root, data={"train": str(root), "labels": "class", "classes": ["nucleus"]})
    classes[:5, :5] = 2
    write_png(root / "labels" / f"{stem}.png", classes)
    planes = _planes(root, data={"train": str(root), "labels": "class", "classes": ["nucleus", "debris"]})
    assert planes[0].classes.max() == 2 and planes[0].instances.max() > 1


def test_jpeg_labels_warn_and_are_refused(small_set, tmp_path):
    root, stem = _one_image_set(small_set, tmp_path)
    (root / "labels" / f"{stem}.png").rename(root / "labels" / f"{stem}.jpg")
    with pytest.warns(UserWarning, match="JPEG"):
        with pytest.raises(InputError, match="lossless"):
            list_samples(root)


def test_config_errors(small_set):
    with pytest.raises(ConfigError, match="imagenet needs model.weights"):
        parse_config(tiny_config(small_set, model={"encoder_weights": "imagenet"}))
    with pytest.raises(ConfigError, match="class_weights"):
        parse_config(tiny_config(small_set, loss={"class_weights": [1.0]}))
    with pytest.raises(ConfigError, match="data.axes"):
        parse_config(tiny_config(small_set, data={"train": str(small_set), "axes": "ZQX"}))
    with pytest.raises(ConfigError, match="encoder"):
        parse_config(tiny_config(small_set, model={"encoder": "vgg11"}))
