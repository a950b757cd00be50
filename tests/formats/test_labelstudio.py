"""Every export format of Label Studio 1.23.2, as its server wrote them for two real BBBC039 images
(tests/data/labelstudio/README.md), read back against the ground truth they were made from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from formats_testdata import IMAGES, LS, N_OBJECTS, NAMES, per_object_iou, reference
from PIL import Image

from morphoscope.errors import InputError
from morphoscope.formats import convert_dataset, detect_layout, load_instance_dataset
from morphoscope.formats.common import reference_basename, strip_upload_prefix
from morphoscope.formats.labelstudio import brush_rle_mask, decode_brush_rle, read_label_config
from morphoscope.formats.shapes import ShapeError

CONFIG_ORDER = ["small nucleus", "large nucleus"]  # label_config.xml beside the exports
COCO_ORDER = ["large nucleus", "small nucleus"]  # Label Studio's COCO categories, sorted

EXPORTS = [  # (export, needs the user's images, layout, class order)
    ("polygons/JSON.json", True, "labelstudio", CONFIG_ORDER),
    ("polygons/JSON_MIN.json", True, "labelstudio", CONFIG_ORDER),
    ("polygons/COCO.zip", True, "coco", COCO_ORDER),
    ("polygons/COCO_WITH_IMAGES.zip", False, "coco", COCO_ORDER),
    ("polygons/BRUSH_TO_COCO.zip", True, "coco", CONFIG_ORDER),  # not offered by the web UI
    ("brush/JSON.json", True, "labelstudio", CONFIG_ORDER),
    ("brush/JSON_MIN.json", True, "labelstudio", CONFIG_ORDER),
    ("brush/BRUSH_TO_PNG.zip", True, "labelstudio-png", CONFIG_ORDER),
    ("brush/BRUSH_TO_COCO.zip", True, "coco", CONFIG_ORDER),
]


@pytest.mark.filterwarnings("ignore:.*bbox\\(es\\) end up to 1 px past")
@pytest.mark.parametrize("export, needs_images, layout, classes", EXPORTS, ids=[e[0] for e in EXPORTS])
def test_every_export_imports_every_object_exactly(export, needs_images, layout, classes):
    ds = load_instance_dataset(LS / export, images=IMAGES if needs_images else None)
    assert ds.layout == layout and ds.class_names == classes
    assert ds.count_objects() == N_OBJECTS
    rows = per_object_iou(ds)  # also: names are the user's images, without the upload prefix
    assert len(rows) == N_OBJECTS
    assert all(got == want for _, _, got, want in rows), "a class differs"
    # BRUSH_TO_COCO's contours through pixel centres are filled as such: exact, not 1/2 px small
    assert min(iou for _, iou, _, _ in rows) == 1.0


def test_brush_to_coco_of_polygons_warns_about_its_loose_boxes():
    with pytest.warns(UserWarning, match=r"BRUSH_TO_COCO\.zip/result_coco\.json: 14 annotation bbox\(es\) "
                                         r"end up to 1 px past"):
        load_instance_dataset(LS / "polygons" / "BRUSH_TO_COCO.zip", images=IMAGES)


def test_plain_coco_needs_the_users_images_and_says_so():
    # file_name points into Label Studio's upload folder: "../lsdata/media/upload/1/<hex>-NAME.png"
    with pytest.raises(InputError, match=r"COCO\.zip/result\.json: image '[0-9a-f]{8}-IXMtest_.*\.png' "
                                         r"\(or 'IXMtest_.*\.png'\) of image id 0 was not found.*--images"):
        load_instance_dataset(LS / "polygons" / "COCO.zip")


def test_json_without_config_takes_classes_from_the_labels_used(tmp_path):
    shutil.copy(LS / "polygons" / "JSON.json", tmp_path / "export.json")
    ds = load_instance_dataset(tmp_path / "export.json", images=IMAGES)
    assert ds.class_names == sorted(CONFIG_ORDER)
    assert all(got == want for _, _, got, want in per_object_iou(ds))


def test_label_config_is_read():
    cfg = read_label_config(LS / "brush" / "label_config.xml")
    assert cfg.classes == CONFIG_ORDER and cfg.image_key == "image"
    points = read_label_config(LS / "points" / "label_config.xml")
    assert points.classes == []  # keypoint labels are no region classes


def test_convert_names_outputs_after_the_users_images(tmp_path):
    out = convert_dataset(LS / "polygons" / "COCO.zip", tmp_path / "out", to="labels", images=IMAGES)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{n}.png" for n in NAMES]
    for n in NAMES:  # the user's images, byte for byte
        assert (out / "images" / f"{n}.png").read_bytes() == (IMAGES / f"{n}.png").read_bytes()
    again = load_instance_dataset(out)
    assert again.class_names == COCO_ORDER
    assert min(iou for _, iou, _, _ in per_object_iou(again)) == 1.0


def test_upload_prefix_and_references():
    assert strip_upload_prefix("45af8a0a-cells.png") == "cells.png"
    assert strip_upload_prefix("45af8a0a.png") == "45af8a0a.png"  # nothing after the prefix
    assert strip_upload_prefix("cells-45af8a0a.png") == "cells-45af8a0a.png"
    assert reference_basename("/data/upload/3/45af8a0a-my%20cells.png") == "45af8a0a-my cells.png"
    assert reference_basename("/data/local-files/?d=scans/plate%201/a.tif") == "a.tif"
    assert reference_basename("s3://bucket/dir/b.png") == "b.png"


# ---- the brush RLE ----------------------------------------------------------------------------

def _pack(bits: str) -> list[int]:
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]


def test_brush_rle_decodes_a_stream_assembled_from_the_format():
    # thi.ng rle-pack as Label Studio documents it: 32-bit count, 5-bit word size - 1, four 4-bit
    # run-length sizes - 1; records: repeat bit, 2-bit size index, run length - 1, word(s)
    header = f"{5:032b}" + f"{8 - 1:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    repeat_7_three_times = "1" + "00" + f"{2:03b}" + f"{7:08b}"
    literal_1_2 = "0" + "00" + f"{1:03b}" + f"{1:08b}" + f"{2:08b}"
    assert decode_brush_rle(_pack(header + repeat_7_three_times + literal_1_2)).tolist() == [7, 7, 7, 1, 2]
    # 12-bit words and a 16-bit run length
    header = f"{65536:032b}" + f"{12 - 1:05b}" + "".join(f"{s - 1:04b}" for s in (2, 4, 8, 16))
    out = decode_brush_rle(_pack(header + "1" + "11" + f"{65535:016b}" + f"{4095:012b}"))
    assert out.dtype == np.uint16 and len(out) == 65536 and (out == 4095).all()


def test_brush_rle_refuses_bad_streams_before_allocating():
    header = f"{2**32 - 1:032b}" + f"{7:05b}" + "0010001101111111"
    with pytest.raises(ShapeError, match="4294967295 values, not the 16"):
        decode_brush_rle(_pack(header + "1" + "00" + "111" + "0" * 8), length=16)
    header = f"{4:032b}" + f"{7:05b}" + "0010001101111111"
    with pytest.raises(ShapeError, match="run goes past its end"):
        decode_brush_rle(_pack(header + "1" + "00" + "111" + "0" * 8))
    with pytest.raises(ShapeError, match="truncated"):
        decode_brush_rle(_pack(header + "0" + "00" + "011" + "0" * 8))
    with pytest.raises(ShapeError, match="not a list of bytes"):
        decode_brush_rle([0, 0, 0, 4, 300, 0, 0, 0])


def test_brush_rle_matches_label_studios_own_decoder():
    """BRUSH_TO_PNG is Label Studio's decoding of the same regions (label-studio-sdk's
    brush.decode_rle, alpha channel): ours must give the same values, pixel for pixel."""
    tasks = json.loads((LS / "brush" / "JSON.json").read_text())
    with zipfile.ZipFile(LS / "brush" / "BRUSH_TO_PNG.zip") as zf:
        pngs = {n: np.array(Image.open(zf.open(n))) for n in zf.namelist()}
    compared = 0
    for t in tasks:
        ann = t["annotations"][0]
        counters: dict = {}
        for r in ann["result"]:
            key = f"{r['from_name']}-{'-'.join(r['value']['brushlabels'])}"
            i = counters.get(key, 0)
            counters[key] = i + 1
            theirs = pngs[f"task-{t['id']}-annotation-{ann['id']}-by-{ann['completed_by']}-{key}-{i}.png"]
            h, w = r["original_height"], r["original_width"]
            ours = decode_brush_rle(r["value"]["rle"], length=4 * h * w).reshape(h, w, 4)[:, :, 3]
            assert np.array_equal(ours, theirs)
            assert np.array_equal(brush_rle_mask(r["value"]["rle"], h, w), theirs > 0)
            compared += 1
    assert compared == N_OBJECTS == len(pngs)


def test_bad_brush_region_is_one_line_naming_file_task_and_region(tmp_path):
    tasks = json.loads((LS / "brush" / "JSON.json").read_text())
    for r in tasks[1]["annotations"][0]["result"]:
        r["original_width"] = 700  # the RLE holds 696 x 520 x 4 values
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    with pytest.raises(InputError) as err:
        load_instance_dataset(tmp_path / "export.json", images=IMAGES)
    first = tasks[1]["annotations"][0]["result"][0]["id"]
    assert str(err.value) == (f"{tmp_path / 'export.json'}: task {tasks[1]['id']}, region '{first}' has a "
                              "brush RLE of 1447680 values, not the 1456000 of its 700x520 image")
    tasks = json.loads((LS / "brush" / "JSON.json").read_text())
    region = tasks[0]["annotations"][0]["result"][2]
    region["value"]["rle"] = region["value"]["rle"][:12]  # cut short
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    sample = load_instance_dataset(tmp_path / "export.json", images=IMAGES).by_name()[NAMES[1]]
    with pytest.raises(InputError) as err:
        sample.load_instances()
    assert str(err.value) == (f"{tmp_path / 'export.json'}: task {tasks[0]['id']}, region '{region['id']}' "
                              f"on '{NAMES[1]}.png' has a truncated brush RLE")


# ---- what Label Studio exports besides masks ------------------------------------------------

@pytest.mark.parametrize("export", ["boxes/JSON.json", "boxes/JSON_MIN.json", "boxes/COCO.zip"])
def test_rectangles_become_box_masks(export):
    if export.endswith(".zip"):
        with pytest.warns(UserWarning, match=r"COCO\.zip/result\.json: 67 annotation\(s\) have a box but no mask"):
            ds = load_instance_dataset(LS / export, images=IMAGES)
    else:
        ds = load_instance_dataset(LS / export, images=IMAGES)
    ref = reference()
    for s in ds.samples:
        lab, classes = ref[s.name]
        masks, cls = s.load_instances()
        boxes = []
        for i in sorted(classes):
            ys, xs = np.nonzero(lab == i)
            box = np.zeros(lab.shape, bool)
            box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
            boxes.append((box, classes[i]))
        got = sorted((m.tobytes(), ds.class_names[c - 1]) for m, c in zip(masks, cls))
        assert got == sorted((b.tobytes(), c) for b, c in boxes)


def test_turned_rectangle_and_ellipse(tmp_path):
    h, w = 520, 696
    # 40 x 20 px box at (100, 200) turned 90 degrees clockwise around its top-left corner:
    # it then covers x in [80, 100), y in [200, 240)
    rect = {"x": 100 / w * 100, "y": 200 / h * 100, "width": 40 / w * 100, "height": 20 / h * 100,
            "rotation": 90, "rectanglelabels": ["cell"]}
    ellipse = {"x": 300 / w * 100, "y": 300 / h * 100, "radiusX": 30 / w * 100, "radiusY": 10 / h * 100,
               "rotation": 0, "ellipselabels": ["cell"]}
    task = {"id": 1, "data": {"image": f"/data/upload/1/0123abcd-{NAMES[0]}.png"}, "annotations": [{
        "id": 1, "result": [
            {"id": "r", "type": "rectanglelabels", "from_name": "b", "to_name": "image",
             "original_width": w, "original_height": h, "value": rect},
            {"id": "e", "type": "ellipselabels", "from_name": "e", "to_name": "image",
             "original_width": w, "original_height": h, "value": ellipse}]}]}
    (tmp_path / "export.json").write_text(json.dumps([task]))
    masks, _ = load_instance_dataset(tmp_path / "export.json", images=IMAGES)[0].load_instances()
    want = np.zeros((h, w), bool)
    want[200:240, 80:100] = True
    assert np.array_equal(masks[0], want)
    ys, xs = np.nonzero(masks[1])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (270, 329, 290, 309)
    assert abs(masks[1].sum() - np.pi * 30 * 10) < 0.02 * np.pi * 30 * 10


def test_keypoints_are_left_out_with_a_warning():
    with pytest.warns(UserWarning, match=r"points/JSON_MIN\.json: 67 keypoint\(s\) are not object outlines"):
        ds = load_instance_dataset(LS / "points" / "JSON_MIN.json", images=IMAGES)
    assert not ds.has_objects()
    with pytest.warns(UserWarning, match=r"points/COCO\.zip/result\.json: 2 keypoint annotation\(s\)"):
        assert not load_instance_dataset(LS / "points" / "COCO.zip", images=IMAGES).has_objects()


def test_latest_annotation_of_a_task_is_read(tmp_path):
    tasks = json.loads((LS / "polygons" / "JSON.json").read_text())
    latest = tasks[0]["annotations"][0]
    older = dict(latest, id=90, result=latest["result"][:1], updated_at="2020-01-01T00:00:00Z",
                 created_at="2020-01-01T00:00:00Z")
    cancelled = dict(latest, id=91, result=[], was_cancelled=True, updated_at="2030-01-01T00:00:00Z")
    tasks[0]["annotations"] = [older, latest, cancelled]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    with pytest.warns(UserWarning, match=r"export\.json: 1 task\(s\) have several annotations; the latest"):
        ds = load_instance_dataset(tmp_path / "export.json", images=IMAGES)
    assert ds.count_objects() == N_OBJECTS


def test_brush_png_needs_the_json_export_beside_it(tmp_path):
    shutil.copy(LS / "brush" / "BRUSH_TO_PNG.zip", tmp_path)
    with pytest.raises(InputError, match=r"BRUSH_TO_PNG\.zip: BRUSH_TO_PNG names its masks after task ids "
                                         r"only .* put the project's JSON or JSON_MIN export beside it"):
        load_instance_dataset(tmp_path / "BRUSH_TO_PNG.zip", images=IMAGES)
    shutil.copy(LS / "brush" / "JSON_MIN.json", tmp_path)  # no labelling config: classes by name
    ds = load_instance_dataset(tmp_path / "BRUSH_TO_PNG.zip", images=IMAGES)
    assert ds.class_names == sorted(CONFIG_ORDER)
    assert min(iou for _, iou, _, _ in per_object_iou(ds)) == 1.0


def test_a_folder_with_several_exports_asks_for_one():
    with pytest.raises(InputError, match=r"polygons: holds several annotation files \(JSON\.json, "
                                         r"JSON_MIN\.json\); name the one to read"):
        detect_layout(LS / "polygons")
    with pytest.raises(InputError, match="labelling config, not an export"):
        detect_layout(LS / "polygons" / "label_config.xml")


def test_unpacked_zip_folder_reads_like_the_zip(tmp_path):
    with zipfile.ZipFile(LS / "polygons" / "COCO_WITH_IMAGES.zip") as zf:
        zf.extractall(tmp_path / "export")
    ds = load_instance_dataset(tmp_path / "export")
    assert ds.layout == "coco" and min(iou for _, iou, _, _ in per_object_iou(ds)) == 1.0


def test_zip_member_outside_the_archive_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../escape.json", "[]")
    with pytest.raises(InputError, match=r"evil\.zip: zip member '\.\./escape\.json' points outside"):
        load_instance_dataset(tmp_path / "evil.zip")
    assert not (tmp_path.parent / "escape.json").exists()


# ---- an export of a project nobody annotated --------------------------------------------------

@pytest.mark.parametrize("export", ["empty/JSON.json", "empty/COCO.zip"])
def test_empty_export_converts_with_a_warning_and_training_refuses_it(tmp_path, export):
    with pytest.warns(UserWarning, match=rf"{export.replace('.', '[.]')}: no annotated objects in its 2 image\(s\)"):
        out = convert_dataset(LS / export, tmp_path / "out", to="labels", images=IMAGES)
    for n in NAMES:
        assert not np.array(Image.open(out / "labels" / f"{n}.png")).any()
    ds = load_instance_dataset(LS / export, images=IMAGES)
    with pytest.raises(InputError, match=rf"{export.split('/')[-1].replace('.', '[.]')}.*: no annotated objects in "
                                         r"its 2 image\(s\), so it cannot be used for training"):
        ds.require_objects(purpose="training")


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore::DeprecationWarning")
    return subprocess.run([sys.executable, "-m", "morphoscope", "convert", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_cli_prints_one_line_errors_and_warnings(tmp_path):
    run = _cli(LS / "polygons" / "JSON.json", tmp_path / "a", "--to", "labels", cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {LS / 'polygons' / 'JSON.json'}: image ")
    assert "--images" in lines[0]
    run = _cli(LS / "empty" / "JSON.json", tmp_path / "b", "--to", "coco", "--images", IMAGES, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"warning: {LS / 'empty' / 'JSON.json'}: no annotated objects in its 2 image(s); the output holds "
        "empty annotations (was the export made before anything was annotated?)"]
    coco = json.loads((tmp_path / "b" / "annotations.json").read_text())
    assert sorted(im["file_name"] for im in coco["images"]) == [f"{n}.png" for n in NAMES]
    assert coco["annotations"] == []
