"""Classification data: the HPA CSV layout, class folders, the seeded stratified split, configs,
and clear errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from classify_testdata import CONFIG, HPA, folder_dataset, hpa_config, need_hpa, real_images
from morphoscope.tasks.classify.data import (ClassificationImages, check_channels, load_classification_dataset,
                                       stratified_split)
from morphoscope.tasks import load_config, parse_config
from morphoscope.errors import ConfigError, InputError


def test_hpa_layout_and_config():
    need_hpa()
    cfg = load_config(CONFIG)
    assert cfg.task == "classify" and len(cfg.data.class_names) == 28
    assert cfg.data.train == HPA.resolve()  # relative to the config file
    ds = load_classification_dataset(cfg.data.train, class_names=cfg.data.class_names, channels=cfg.data.channels)
    assert len(ds) == 50 and ds.layout == "csv"
    s = ds.samples[0]
    assert s.files[0].name == f"{s.id}_green.png" and s.line == 2
    assert s.labels == (2, 25)  # "25 2" in labels.csv, sorted
    y = ds.label_matrix()
    assert y.shape == (50, 28) and y[:, 0].sum() == 14 and y[:, 25].sum() == 14
    assert check_channels(ds, None) == 1


def test_class_names_file(tmp_path):
    need_hpa()
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(f"c{k}" for k in range(28)) + "\n")
    ds = load_classification_dataset(HPA, class_names_file=names, channels=["green"])
    assert ds.class_names[27] == "c27"
    names.write_text("a\nb\n")
    with pytest.raises(InputError, match=r"line \d+ \(Id '.+'\): label \d+ is outside the declared classes \(0\.\.1"):
        load_classification_dataset(HPA, class_names_file=names, channels=["green"])


def _csv(tmp_path, rows, header="Id,Target"):
    (tmp_path / "images").mkdir(exist_ok=True)
    p = tmp_path / "labels.csv"
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return p


def _write(path, arr):
    tifffile.imwrite(path, arr)


def test_bad_inputs_name_the_row_and_file(tmp_path):
    img = real_images(1)[0][:40, :40]
    csv = _csv(tmp_path, ["a,0", "b,1", "c,0 1"])
    for n in ("a", "b", "c"):
        _write(tmp_path / "images" / f"{n}.tif", img)
    ds = load_classification_dataset(csv, class_names=["x", "y"])
    assert [s.labels for s in ds] == [(0,), (1,), (0, 1)]
    # a label id outside the declared classes
    _csv(tmp_path, ["a,0", "b,5"])
    with pytest.raises(InputError, match=r"line 3 \(Id 'b'\): label 5 is outside the declared classes") as e:
        load_classification_dataset(csv, class_names=["x", "y"])
    assert e.value.path == csv
    # not an integer
    _csv(tmp_path, ["a,0", "b,nucleus"])
    with pytest.raises(InputError, match=r"line 3 \(Id 'b'\): label 'nucleus' is not a class id"):
        load_classification_dataset(csv, class_names=["x", "y"])
    # listed but missing
    _csv(tmp_path, ["a,0", "zzz,1"])
    with pytest.raises(InputError, match=r"line 3 \(Id 'zzz'\): image not found: no .*zzz"):
        load_classification_dataset(csv, class_names=["x", "y"])
    # per-channel files: the missing channel is named
    _csv(tmp_path, ["a,0"])
    with pytest.raises(InputError, match=r"line 2 \(Id 'a'\): image not found: no .*a_green"):
        load_classification_dataset(csv, class_names=["x", "y"], channels=["green"])
    # duplicate Id, missing column
    _csv(tmp_path, ["a,0", "a,1"])
    with pytest.raises(InputError, match="listed twice"):
        load_classification_dataset(csv, class_names=["x", "y"])
    _csv(tmp_path, ["a,0"], header="Image,Label")
    with pytest.raises(InputError, match="needs the columns Id and Target"):
        load_classification_dataset(csv)
    # single-label needs exactly one label per image
    _csv(tmp_path, ["a,0", "c,0 1"])
    with pytest.raises(InputError, match=r"line 3 \(Id 'c'\): single-label .* exactly one label"):
        load_classification_dataset(csv, class_names=["x", "y"], single_label=True)
    # an unexpected number of channels (an RGB image among grey ones)
    rgb = np.stack([img, img // 2, img // 3], axis=-1)
    _write(tmp_path / "images" / "c.tif", rgb)
    _csv(tmp_path, ["a,0", "b,1", "c,0"])
    ds = load_classification_dataset(csv, class_names=["x", "y"])
    with pytest.raises(InputError, match=r"line 4 \(Id 'c'\): image has 3 channel\(s\) but the first image") as e:
        check_channels(ds, None)
    assert e.value.path.name == "c.tif"
    with pytest.raises(InputError, match=r"line 4 \(Id 'c'\): image has 3 channel\(s\), expected 1") as e:
        ClassificationImages(ds, [2], in_channels=1, image_size=32, intensity="dtype", mean=[0], std=[1],
                             multi_label=True)[0]
    assert e.value.path.name == "c.tif"
    # grey stored as RGB is accepted as grey
    _write(tmp_path / "images" / "c.tif", np.stack([img] * 3, axis=-1))
    x, t = ClassificationImages(ds, [2], in_channels=1, image_size=32, intensity="dtype", mean=[0], std=[1],
                                multi_label=True)[0]
    assert x.shape == (1, 32, 32) and t.tolist() == [1.0, 0.0]


def test_folder_layout(tmp_path):
    root = folder_dataset(tmp_path / "ds", per_class=3)
    ds = load_classification_dataset(root, single_label=True)
    assert ds.layout == "folders" and ds.class_names == ["dense", "sparse"]
    assert sorted(s.labels[0] for s in ds) == [0, 0, 0, 1, 1, 1]
    assert ds.samples[0].id == "dense/dense_0"
    ds = load_classification_dataset(root, class_names=["sparse", "dense", "other"])
    assert ds.class_names[ds.samples[0].labels[0]] == "dense"
    with pytest.raises(InputError, match="class folder 'sparse' is not one of the declared classes"):
        load_classification_dataset(root, class_names=["dense"])
    with pytest.raises(InputError, match="cannot tell the dataset layout"):
        load_classification_dataset(tmp_path / "ds" / "dense")


def test_stratified_split_is_seeded_and_balanced():
    need_hpa()
    ds = load_classification_dataset(HPA, channels=["green"])
    y = ds.label_matrix()
    tr, va = stratified_split(y, 0.2, seed=0)
    tr2, va2 = stratified_split(y, 0.2, seed=0)
    assert (tr == tr2).all() and (va == va2).all()
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 50
    assert 8 <= len(va) <= 12
    for c in np.flatnonzero(y.sum(0) >= 5):  # every label seen 5+ times is in both subsets
        assert y[va, c].sum() >= 1 and y[tr, c].sum() >= 1
        assert abs(y[va, c].sum() - 0.2 * y[:, c].sum()) <= 1.5
    _, va3 = stratified_split(y, 0.2, seed=1)
    assert set(va3) != set(va)
    # single-label data: an ordinary stratified split
    lab = np.repeat(np.arange(3), [10, 20, 30])
    tr, va = stratified_split(np.eye(3, dtype=int)[lab], 0.2, seed=3)
    assert np.bincount(lab[va], minlength=3).tolist() == [2, 4, 6]
    with pytest.raises(InputError, match="at least 2"):
        stratified_split(np.ones((1, 2)), 0.2, seed=0)


def test_config_validation(tmp_path):
    cfg = parse_config({"task": "classify", "data": {"train": "data", "class_names_file": "names.txt"}},
                       base=tmp_path)
    assert cfg.data.train == tmp_path / "data" and cfg.data.class_names_file == tmp_path / "names.txt"
    assert cfg.model.head == "multi_label" and cfg.model.backbone == "resnet18"
    with pytest.raises(ConfigError, match="freeze_backbone_epochs"):
        parse_config({"task": "classify", "data": {"train": "x"}, "train": {"epochs": 2, "freeze_backbone_epochs": 2}})
    with pytest.raises(ConfigError, match="model.backbone"):
        parse_config({"task": "classify", "data": {"train": "x"}, "model": {"backbone": "resnet101"}})
    with pytest.raises(ConfigError, match="class_names or class_names_file"):
        parse_config({"task": "classify", "data": {"train": "x", "class_names": ["a"], "class_names_file": "f"}})


def test_given_split_files(tmp_path):
    from morphoscope.tasks.classify.data import datasets_from_config

    cfg = hpa_config()
    ids = [ln.split(",")[0] for ln in (HPA / "labels.csv").read_text().splitlines()[1:]]
    (tmp_path / "val.txt").write_text("\n".join(ids[:7]) + "\n")
    cfg["data"]["val_ids"] = str(tmp_path / "val.txt")
    ds, tr, va, val_ds = datasets_from_config(parse_config(cfg))
    assert val_ds is None and [ds.samples[i].id for i in va] == sorted(ids[:7], key=ids.index)
    assert len(tr) == 43
    (tmp_path / "val.txt").write_text("not-an-id\n")
    with pytest.raises(InputError, match="Id 'not-an-id' is not in the dataset"):
        datasets_from_config(parse_config(cfg))


def test_training_transforms_are_deterministic(tmp_path):
    root = folder_dataset(tmp_path / "ds", per_class=2, size=64)
    ds = load_classification_dataset(root, single_label=True)
    from morphoscope.tasks.classify.config import ClassifyAugmentConfig

    kw = dict(in_channels=1, image_size=32, intensity="percentile", mean=[0.2], std=[0.3], multi_label=False,
              augment=ClassifyAugmentConfig(rotation=20), seed=4, length=8, shuffle=True)
    a, b = ClassificationImages(ds, range(4), **kw), ClassificationImages(ds, range(4), **kw)
    xa, ta = a[5]
    xb, tb = b[5]
    assert xa.shape == (1, 32, 32) and torch.equal(xa, xb) and ta == tb and ta.dtype == torch.int64
    a.set_epoch(1)
    assert not torch.equal(a[5][0], xa)
    # one epoch of 4 items visits every image once
    assert sorted(a.sample_index(i) for i in range(4)) == [0, 1, 2, 3]
