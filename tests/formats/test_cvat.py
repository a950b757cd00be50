"""CVAT for images 1.1 XML and CVAT's COCO 1.0, written by CVAT's own writer code paths for two
real BBBC039 images (tests/data/cvat/README.md), read back against the ground truth; and each
quirk of CVAT's documented format."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from scipy import ndimage as ndi
from formats_testdata import CVAT, IMAGES, N_OBJECTS, NAMES, per_object_iou, reference

from morphoscope.errors import InputError
from morphoscope.formats import convert_dataset, load_instance_dataset
from morphoscope.formats.cvat import parse_cvat_rle
from morphoscope.formats.shapes import cvat_mask

CLASSES = ["small nucleus", "large nucleus"]
# the XML fixture carries one <points> and one <tag> on purpose (tested below)
pytestmark = pytest.mark.filterwarnings("ignore:.*element\\(s\\) are not object outlines")


def _with_hole():
    return reference(CVAT / "reference")


@pytest.mark.parametrize("export, layout", [("cvat_for_images_1.1.zip", "cvat"), ("coco_1.0.zip", "coco")])
def test_cvat_exports_import_every_object_exactly(export, layout):
    ds = load_instance_dataset(CVAT / export, images=IMAGES)
    assert ds.layout == layout and ds.class_names == CLASSES  # the tag-only label is no class
    assert ds.count_objects() == N_OBJECTS
    rows = per_object_iou(ds, _with_hole())
    assert all(got == want for _, _, got, want in rows)
    assert min(iou for _, iou, _, _ in rows) == 1.0
    hole = json.loads((CVAT / "reference" / "hole.json").read_text())
    lab, _ = _with_hole()[hole["image"]]
    masks, _ = ds.by_name()[hole["image"]].load_instances()
    obj = next(m for m in masks if (m & (lab == hole["label"])).any())
    assert np.array_equal(obj, lab == hole["label"])
    assert (ndi.binary_fill_holes(obj) & ~obj).sum() == 9  # the 3x3 hole is kept


def test_cvat_xml_leaves_out_points_and_tags_with_warnings():
    with pytest.warns(UserWarning) as caught:
        load_instance_dataset(CVAT / "cvat_for_images_1.1.zip", images=IMAGES)
    messages = sorted(str(w.message) for w in caught if "element(s)" in str(w.message))
    where = CVAT / "cvat_for_images_1.1.zip" / "annotations.xml"
    assert messages == [f"{where}: 1 <points> element(s) are not object outlines and were left out",
                        f"{where}: 1 <tag> element(s) are not object outlines and were left out"]


def test_cvat_boxes_become_box_masks():
    ds = load_instance_dataset(CVAT / "boxes.xml", images=IMAGES)
    ref = reference()
    for s in ds.samples:
        lab, classes = ref[s.name]
        masks, cls = s.load_instances()
        want = []
        for i in sorted(classes):
            ys, xs = np.nonzero(lab == i)
            box = np.zeros(lab.shape, bool)
            box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
            want.append((box.tobytes(), classes[i]))
        assert sorted((m.tobytes(), ds.class_names[c - 1]) for m, c in zip(masks, cls)) == sorted(want)


def test_documented_mask_example_decodes():
    # the <mask> of CVAT's XML format documentation: a blob in a 13 x 15 box, runs summing to 195
    rle = parse_cvat_rle("3, 5, 7, 7, 5, 9, 3, 11, 2, 11, 2, 12, 1, 12, 1, 26, 1, 12, 1, 12, 2, 11, 3, 9, "
                         "5, 7, 7, 5, 3")
    m = cvat_mask(rle, 707, 888, 13, 15, 1200, 1600)
    tight = m[888:903, 707:720]
    assert m.sum() == tight.sum() == sum(rle[1::2])
    assert tight[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # 3 zeros, 5 ones, ...
    assert tight[1].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]  # runs wrap onto the next row
    assert tight[2].tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]


def test_convert_cvat_to_coco_and_back_is_exact(tmp_path):
    out = convert_dataset(CVAT / "cvat_for_images_1.1.zip", tmp_path / "coco", to="coco", images=IMAGES)
    again = load_instance_dataset(out)
    assert again.class_names == CLASSES
    assert min(iou for _, iou, _, _ in per_object_iou(again, _with_hole())) == 1.0


# ---- bad CVAT files: one line naming the file and the item ------------------------------------

def _xml(tmp_path, body: str, labels=("cell",)) -> str:
    meta = "".join(f"<label><name>{n}</name><type>any</type></label>" for n in labels)
    path = tmp_path / "annotations.xml"
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version><meta><task>'
                    f"<labels>{meta}</labels></task></meta>"
                    f'<image id="0" name="{NAMES[0]}.png" width="696" height="520">{body}</image></annotations>')
    return path


@pytest.mark.parametrize("body, message", [
    ('<polygon label="cell" points="10,10;nan,20;30,30" z_order="0"/>',
     "polygon 1 of image id 0 ('{name}.png') has a non-finite coordinate (NaN or infinity)"),
    ('<polygon label="cell" points="10,10;inf,20;30,30" z_order="0"/>',
     "polygon 1 of image id 0 ('{name}.png') has a non-finite coordinate (NaN or infinity)"),
    ('<box label="cell" xtl="10" ytl="10" xbr="800" ybr="20" z_order="0"/>',
     "box 1 of image id 0 ('{name}.png') lies outside its image (696x520)"),
    ('<mask label="cell" rle="0, 5" left="690" top="0" width="10" height="1" z_order="0"/>',
     "mask 1 of image id 0 ('{name}.png') has a mask box at (690, 0) of 10x1 outside its image (696x520)"),
    ('<mask label="cell" rle="0, 5, 99" left="0" top="0" width="10" height="1" z_order="0"/>',
     "mask 1 of image id 0 ('{name}.png') has RLE counts summing to 104 pixels, not the 1x10 = 10"),
    ('<polygon label="dog" points="10,10;20,20;30,10" z_order="0"/>', None),
])
def test_bad_shapes_are_named(tmp_path, body, message):
    path = _xml(tmp_path, body)
    if message is None:  # an undeclared label is taken as a class all the same
        assert load_instance_dataset(path, images=IMAGES).class_names == ["cell", "dog"]
        return
    with pytest.raises(InputError) as err:
        load_instance_dataset(path, images=IMAGES)
    assert str(err.value).startswith(f"{path}: " + message.format(name=NAMES[0]))
    assert "\n" not in str(err.value)


def test_video_export_is_refused(tmp_path):
    path = tmp_path / "annotations.xml"
    path.write_text('<annotations><version>1.1</version><track id="0" label="cell"></track></annotations>')
    with pytest.raises(InputError, match=r"annotations\.xml: this is 'CVAT for video 1\.1'"):
        load_instance_dataset(path, images=IMAGES)


def test_grouped_shapes_are_one_object_and_z_order_draws_later(tmp_path):
    path = _xml(tmp_path, '<box label="cell" xtl="0" ytl="0" xbr="10" ybr="10" z_order="2"/>'
                          '<box label="cell" xtl="20" ytl="0" xbr="30" ybr="10" group_id="3" z_order="0"/>'
                          '<box label="cell" xtl="40" ytl="0" xbr="50" ybr="10" group_id="3" z_order="0"/>')
    masks, _ = load_instance_dataset(path, images=IMAGES)[0].load_instances()
    assert len(masks) == 2
    assert masks[0][0:10, 20:30].all() and masks[0][0:10, 40:50].all() and masks[0].sum() == 200
    assert masks[1][0:10, 0:10].all() and masks[1].sum() == 100  # z_order 2 comes last


def test_cvat_zip_with_images_needs_no_images_folder(tmp_path):
    with zipfile.ZipFile(CVAT / "cvat_for_images_1.1.zip") as zf:
        xml = zf.read("annotations.xml")
    with zipfile.ZipFile(tmp_path / "task.zip", "w") as zf:
        zf.writestr("annotations.xml", xml)
        for n in NAMES:
            zf.write(IMAGES / f"{n}.png", f"images/{n}.png")
    ds = load_instance_dataset(tmp_path / "task.zip")
    assert min(iou for _, iou, _, _ in per_object_iou(ds, _with_hole())) == 1.0
