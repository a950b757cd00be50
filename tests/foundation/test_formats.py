"""The three annotation layouts on real data, COCO as Label Studio / CVAT export it, conversion
round trips, and the bad-input errors."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from morphoscope.errors import InputError, OutputExistsError
from morphoscope.formats import convert_dataset, detect_layout, load_instance_dataset, rle_encode


def test_bbbc039_counts_match_the_data_readme(shared_data):
    train = load_instance_dataset(shared_data / "bbbc039" / "training")
    val = load_instance_dataset(shared_data / "bbbc039" / "validation")
    assert train.layout == "labels" and train.class_names == ["nucleus"]
    assert (len(train), len(val)) == (100, 50)
    assert train.count_objects() == 12001
    assert val.count_objects() == 5896
    empty = [s for s in train.samples if len(s.load_instances()[1]) == 0]
    assert len(empty) == 2  # empty images are valid samples


def test_dsb2018_kaggle_layout(shared_data):
    ds = load_instance_dataset(shared_data / "dsb2018" / "stage1_train")
    assert ds.layout == "kaggle" and len(ds) == 664
    assert sum(len(s.mask_paths) for s in ds.samples) == 28986
    s = ds.samples[0]
    img = s.load_image()
    masks, classes = s.load_instances(img.shape)
    assert masks.shape == (len(s.mask_paths), *img.shape[:2]) and masks.any(axis=(1, 2)).all()
    labels, mapping = s.load_label_image(img.shape)
    assert labels.max() == len(masks) and (labels > 0).sum() == masks.sum()  # no overlaps


def _coco_like_label_studio(tmp_path, samples_dir):
    """A COCO file as Label Studio / CVAT export it: category ids that are not 1..K, a polygon,
    an iscrowd=1 RLE mask, and a mask with a hole."""
    src = samples_dir / "images" / "IXMtest_G13_s9.tif"
    (tmp_path / "images").mkdir()
    shutil.copy(src, tmp_path / "images" / src.name)
    h, w = 520, 696
    ring = np.zeros((h, w), np.uint8)
    ring[100:140, 100:140] = 1
    ring[110:130, 110:130] = 0  # the hole
    solid = np.zeros((h, w), np.uint8)
    solid[300:330, 400:450] = 1
    rle = mask_utils.encode(np.asfortranarray(solid))
    rle["counts"] = rle["counts"].decode()
    coco = {
        "images": [{"id": 7, "file_name": f"images/{src.name}", "width": w, "height": h}],
        "categories": [{"id": 5, "name": "platelet"}, {"id": 12, "name": "granule"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 12, "iscrowd": 0,
             "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]], "bbox": [10, 10, 40, 30]},
            {"id": 2, "image_id": 7, "category_id": 5, "iscrowd": 1, "segmentation": rle},
            {"id": 3, "image_id": 7, "category_id": 5, "iscrowd": 0, "segmentation": rle_encode(ring)},
        ],
    }
    path = tmp_path / "result.json"
    path.write_text(json.dumps(coco))
    return path, ring, solid


def test_coco_as_exported_by_label_studio(tmp_path, samples_dir):
    path, ring, solid = _coco_like_label_studio(tmp_path, samples_dir)
    ds = load_instance_dataset(path)
    assert ds.layout == "coco" and ds.class_names == ["platelet", "granule"]  # ordered by id
    masks, classes = ds[0].load_instances()
    assert classes.tolist() == [2, 1, 1]
    assert masks[0].sum() == 40 * 30  # polygon on pixel corners: 40x30 pixels
    assert np.array_equal(masks[1], solid.astype(bool))
    assert np.array_equal(masks[2], ring.astype(bool)) and not masks[2][120, 120]  # hole kept
    assert load_instance_dataset(tmp_path).layout == "coco"  # the folder with one JSON works too


@pytest.mark.parametrize("target", ["coco", "labels", "kaggle"])
def test_convert_round_trip_keeps_every_object(tmp_path, samples_dir, target):
    out = convert_dataset(samples_dir, tmp_path / target, to=target)
    back = convert_dataset(out, tmp_path / "back", to="labels")
    orig = load_instance_dataset(samples_dir).by_name()
    again = load_instance_dataset(back).by_name()
    assert set(orig) == set(again)
    for name, s in orig.items():
        a, _ = s.load_label_image()
        b, _ = again[name].load_label_image()
        # same partition of pixels into objects (ids may be renumbered)
        pairs = set(zip(a[a > 0].tolist(), b[a > 0].tolist()))
        assert (b[a == 0] == 0).all() and len(pairs) == len(np.unique(a[a > 0]))
    with pytest.raises(OutputExistsError):
        convert_dataset(samples_dir, tmp_path / target, to=target)


def test_multiclass_coco_to_labels_keeps_classes(tmp_path, samples_dir):
    (tmp_path / "src").mkdir()
    path, _, _ = _coco_like_label_studio(tmp_path / "src", samples_dir)
    out = convert_dataset(path, tmp_path / "lab", to="labels")
    ds = load_instance_dataset(out)
    assert ds.class_names == ["platelet", "granule"]
    assert sorted(ds[0].load_instances()[1].tolist()) == [1, 1, 2]
    with pytest.raises(InputError, match="one class"):
        convert_dataset(path, tmp_path / "k", to="kaggle")


# ---- bad input: each names the file and the problem ------------------------------------------

def _labels_dataset(tmp_path, samples_dir, n=2):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for p in sorted((samples_dir / "images").glob("*.tif"))[:n]:
        shutil.copy(p, root / "images" / p.name)
        shutil.copy(samples_dir / "labels" / f"{p.stem}.png", root / "labels" / f"{p.stem}.png")
    return root


def test_image_without_label_is_named(tmp_path, samples_dir):
    root = _labels_dataset(tmp_path, samples_dir)
    victim = sorted((root / "labels").iterdir())[0]
    victim.unlink()
    with pytest.raises(InputError, match=victim.stem):
        load_instance_dataset(root)


def test_label_image_size_mismatch(tmp_path, samples_dir):
    root = _labels_dataset(tmp_path, samples_dir, n=1)
    lab = next((root / "labels").iterdir())
    Image.fromarray(np.zeros((100, 100), np.uint16)).save(lab)
    ds = load_instance_dataset(root)
    with pytest.raises(InputError, match=r"\(100, 100\) does not match"):
        ds[0].load_instances()


def test_corrupt_image_in_dataset(tmp_path, samples_dir):
    root = _labels_dataset(tmp_path, samples_dir, n=1)
    img = next((root / "images").iterdir())
    img.write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match=img.name):
        load_instance_dataset(root)[0].load_image()


def test_coco_annotation_outside_image_and_undeclared_category(tmp_path, samples_dir):
    path, _, _ = _coco_like_label_studio(tmp_path, samples_dir)
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentation"] = [[10, 10, 800, 10, 800, 40, 10, 40]]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="annotation 1 lies outside its image"):
        load_instance_dataset(path)
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentation"] = [[10, 10, 50, 10, 50, 40, 10, 40]]
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="category_id 99, which is not declared"):
        load_instance_dataset(path)


def test_coco_empty_mask_and_missing_image(tmp_path, samples_dir):
    path, _, _ = _coco_like_label_studio(tmp_path, samples_dir)
    data = json.loads(path.read_text())
    data["annotations"][2]["segmentation"] = rle_encode(np.zeros((520, 696), np.uint8))
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="annotation 3 .* empty mask"):
        load_instance_dataset(path)[0].load_instances()
    data["images"][0]["file_name"] = "gone.tif"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="'gone.tif'"):
        load_instance_dataset(path)


def test_kaggle_empty_mask_is_named(tmp_path, samples_dir):
    root = tmp_path / "k" / "abc"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "images" / "abc.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "m1.png")
    with pytest.raises(InputError, match="m1.png.*empty"):
        load_instance_dataset(tmp_path / "k")[0].load_instances()


def test_unknown_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(InputError, match="cannot tell the dataset layout"):
        detect_layout(tmp_path / "stuff")
