"""Pascal VOC import on the real BCCD set: counts, the two zero-size boxes, the coordinate
convention, out-of-image boxes, splits, and COCO files with boxes only."""

from __future__ import annotations

import json
import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import small_voc

from morphoscope.errors import InputError
from morphoscope.formats import detect_layout, load_instance_dataset
from morphoscope.formats.voc import Box, boxes_of


def _xml_boxes(path):
    """(name, xmin, ymin, xmax, ymax) of each object, read here independently of the reader."""
    root = ET.parse(path).getroot()
    return [(o.find("name").text, *(float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")]


def test_bccd_import_counts_every_box_and_names_the_two_zero_size_ones(bccd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_instance_dataset(bccd)
    assert detect_layout(bccd) == "voc" and ds.boxes_only
    assert len(ds) == 364 and ds.class_names == ["Platelets", "RBC", "WBC"]
    kept = {n: 0 for n in ds.class_names}
    for s in ds.samples:
        for o in s.objects:
            kept[ds.class_names[o.class_index - 1]] += 1
    messages = [str(w.message) for w in caught if "zero-size" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    dropped = re.findall(r"(BloodImage_\d+\.xml) \(object \d+ \((\w+)\)", messages[0])
    assert sorted(dropped) == [("BloodImage_00338.xml", "RBC"), ("BloodImage_00343.xml", "RBC")]
    assert kept == {"Platelets": 361, "RBC": 4155 - 2, "WBC": 372}
    assert sum(kept.values()) + len(dropped) == 4888


def test_bccd_splits_are_the_sets_own_lists(bccd):
    sizes, names = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for split in ("train", "val", "test"):
            ds = load_instance_dataset(bccd / "ImageSets" / "Main" / f"{split}.txt")
            assert ds.class_names == ["Platelets", "RBC", "WBC"]  # same classes whatever the split
            sizes[split], names[split] = len(ds), {s.name for s in ds.samples}
    assert sizes == {"train": 205, "val": 87, "test": 72}
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])


def test_voc_boxes_are_one_based_inclusive_pixels(bccd):
    ds = load_instance_dataset(bccd / "Annotations" / "BloodImage_00000.xml")
    s = ds.samples[0]
    img = s.load_image()
    boxes, _ = boxes_of(s, img.shape)
    written = _xml_boxes(bccd / "Annotations" / "BloodImage_00000.xml")
    assert len(boxes) == len(written) > 0
    masks, _ = s.load_instances(img.shape)
    for b, m, (name, xmin, ymin, xmax, ymax) in zip(boxes, masks, written):
        assert b.tolist() == [xmin - 1, ymin - 1, xmax, ymax]
        rows, cols = np.nonzero(m)  # the mask is the box's pixels, VOC pixel i = array index i - 1
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (ymin - 1, ymax - 1, xmin - 1, xmax - 1)
        assert m.sum() == (xmax - xmin + 1) * (ymax - ymin + 1)


def _edit(path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_box_outside_the_image_is_an_error_naming_the_file(bccd, tmp_path):
    folder = small_voc(bccd, tmp_path / "voc", ["BloodImage_00000"])
    xml = folder / "Annotations" / "BloodImage_00000.xml"
    xmax = re.search(r"<xmax>(\d+)</xmax>", xml.read_text()).group(1)
    _edit(xml, f"<xmax>{xmax}</xmax>", "<xmax>700</xmax>")  # the image is 640 wide
    with pytest.raises(InputError) as err:
        load_instance_dataset(folder)
    msg = str(err.value)
    assert "BloodImage_00000.xml" in msg and "outside its 640x480 image" in msg and "object 1" in msg
    assert "\n" not in msg


def test_box_one_pixel_past_the_edge_is_clipped(bccd, tmp_path):
    folder = small_voc(bccd, tmp_path / "voc", ["BloodImage_00000"])
    xml = folder / "Annotations" / "BloodImage_00000.xml"
    xmin = re.search(r"<xmin>(\d+)</xmin>", xml.read_text()).group(1)
    _edit(xml, f"<xmin>{xmin}</xmin>", "<xmin>0</xmin>")  # 0-based writers (CVAT) write 0
    ds = load_instance_dataset(folder)
    boxes, _ = boxes_of(ds.samples[0])
    assert boxes[0, 0] == 0.0


@pytest.mark.parametrize("old,new,message", [
    ("<xmin>", "<xmin>x", "not a number"),
    ("<name>", "<name>Monocyte", "not in the label map"),
])
def test_bad_voc_objects_are_errors_naming_the_file(bccd, tmp_path, old, new, message):
    folder = small_voc(bccd, tmp_path / "voc", ["BloodImage_00000"])
    xml = folder / "Annotations" / "BloodImage_00000.xml"
    _edit(xml, old, new)
    with pytest.raises(InputError, match=message) as err:
        load_instance_dataset(folder)
    assert "BloodImage_00000.xml" in str(err.value)


def test_declared_size_must_match_the_image(bccd, tmp_path):
    folder = small_voc(bccd, tmp_path / "voc", ["BloodImage_00001"])
    _edit(folder / "Annotations" / "BloodImage_00001.xml", "<height>480</height>", "<height>960</height>")
    ds = load_instance_dataset(folder)
    s = ds.samples[0]
    with pytest.raises(InputError, match="declared 960x640"):
        boxes_of(s, s.load_image().shape)


def test_coco_with_boxes_only_gives_the_same_boxes(bccd, tmp_path):
    ids = ["BloodImage_00000", "BloodImage_00001"]
    voc = load_instance_dataset(small_voc(bccd, tmp_path / "voc", ids))
    cats = [{"id": 7 + k, "name": n} for k, n in enumerate(voc.class_names)]
    images, anns = [], []
    for i, s in enumerate(voc.samples, start=1):
        images.append({"id": i, "file_name": s.image_path.name, "width": 640, "height": 480})
        for (name, xmin, ymin, xmax, ymax) in _xml_boxes(s.annotation_path):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 7 + voc.class_names.index(name),
                         "bbox": [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1], "iscrowd": 0})
    path = tmp_path / "voc" / "JPEGImages" / "boxes.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    with pytest.warns(UserWarning, match="box but no mask"):
        coco = load_instance_dataset(path)
    assert coco.boxes_only and coco.class_names == voc.class_names
    for a, b in zip(voc.samples, coco.samples):
        assert all(isinstance(o.rasterize, Box) for o in b.objects)
        (ba, ca), (bb, cb) = boxes_of(a), boxes_of(b)
        assert np.array_equal(ba, bb) and np.array_equal(ca, cb)
