"""Training data of the generalist model: split lists and groups, canonical object size, the size
target, and the colour / polarity augmentations, on real images (the bundled CC0 samples; the
committed DSB2018 split lists against ../shared when present)."""

from __future__ import annotations

import numpy as np
import pytest

from morphoscope.errors import InputError
from morphoscope.formats.splits import read_group_table, read_split_list, select_names
from morphoscope.tasks import parse_config
from morphoscope.tasks.semantic.data import SemanticCropDataset, load_planes, normalize_channels, source_samples

SPLITS = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs" / "splits"


def config(train, **data):
    return parse_config({"task": "semantic", "data": {"train": train, "classes": ["nucleus"],
                                                      "normalize": {"per_channel": True}, **data},
                         "model": {"in_channels": 3, "output": "boundary+distance", "size_head": True},
                         "augment": {"scale": [1.0, 1.0], "intensity": 0, "gamma": [1, 1], "blur_prob": 0,
                                     "noise_std": 0}})


def test_split_list_files(tmp_path):
    names = read_split_list(SPLITS / "dsb2018_val.txt")
    assert len(names) == 132 and len(set(names)) == 132
    table = read_group_table(SPLITS / "dsb2018_modality.csv", "modality")
    assert {table[n] for n in names} == {"fluorescence", "histology", "brightfield"}
    (tmp_path / "s.txt").write_text("# comment\na\n\nb  # why\n")
    assert read_split_list(tmp_path / "s.txt") == ["a", "b"]
    (tmp_path / "d.txt").write_text("a\na\n")
    with pytest.raises(InputError, match="twice"):
        read_split_list(tmp_path / "d.txt")
    with pytest.raises(InputError, match="not in the dataset"):
        select_names(["a"], ["a", "zz"], where="x")


def test_dsb2018_sources_follow_the_split(shared_data):
    cfg = config([{"path": str(shared_data / "dsb2018" / "stage1_train"), "split": str(SPLITS / "dsb2018_val.txt"),
                   "groups": str(SPLITS / "dsb2018_modality.csv")}], diameter=28.0)
    samples = source_samples(cfg.data.train[0])
    assert [s.name for s in samples] == read_split_list(SPLITS / "dsb2018_val.txt")
    assert sorted({s.group for s in samples}) == ["brightfield", "fluorescence", "histology"]


def test_canonical_diameter_and_size_target(samples_dir):
    cfg = config([{"path": str(samples_dir), "group": "bbbc039"}], diameter=14.0)
    samples = source_samples(cfg.data.train[0])
    planes = [p for s in samples for p in load_planes(s, data_cfg=cfg.data, in_channels=3, num_classes=1)]
    assert all(p.image.shape[0] == 1 for p in planes)  # grey stays one channel until cropped
    ds = SemanticCropDataset(planes, crop_size=128, length=12, augment=cfg.augment, aux="boundary+distance",
                             diameter=14.0, size_head=True, channels=3)
    ratios = []
    for i in range(len(ds)):
        x, t = ds[i]
        assert x.shape == (3, 128, 128) and set(t) == {"classes", "boundary", "distance", "size"}
        fg = t["classes"].numpy() > 0
        if fg.sum() > 500:
            # BBBC039 nuclei (~28 px) are shrunk to the canonical 14 px: the target says ~log2(1) = 0
            ratios.append(np.median(t["size"].numpy()[fg]))
    assert ratios and abs(np.median(ratios)) < 0.25


def test_colour_normalisation_and_polarity_augmentation(samples_dir):
    from morphoscope.io.images import read_image
    from morphoscope.samples import histology_sample

    he = read_image(histology_sample()[0])
    x = normalize_channels(he, low=1, high=99.8, channels=3)
    assert x.shape == (3, *he.shape[:2])
    # each channel stretched on its own: the pale background is near 1 in every channel
    assert np.all(np.median(x.reshape(3, -1), axis=1) > 0.6)
    grey_rgb = np.repeat(read_image(next((samples_dir / "images").glob("*.tif")))[..., None], 3, axis=-1)
    assert normalize_channels(grey_rgb, low=1, high=99.8, channels=3).shape[0] == 1
    cfg = config([{"path": str(samples_dir)}], diameter=28.0)
    planes = [p for s in source_samples(cfg.data.train[0])
              for p in load_planes(s, data_cfg=cfg.data, in_channels=3, num_classes=1)]
    aug = cfg.augment.model_copy(update={"invert": 1.0})
    inv = SemanticCropDataset(planes, crop_size=96, length=4, augment=aug, diameter=28.0, channels=3)
    plain = SemanticCropDataset(planes, crop_size=96, length=4, augment=cfg.augment, diameter=28.0, channels=3)
    for i in range(4):
        a, ta = inv[i]
        b, tb = plain[i]
        assert np.array_equal(ta["classes"], tb["classes"])
        assert np.allclose(a.numpy(), 1 - b.numpy(), atol=1e-5)
