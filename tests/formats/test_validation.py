"""Validation that says what is wrong, in one line naming the file and the item, on real exports
made faulty in one place each; and memory that stays bounded by the image size whatever a file
says."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from formats_testdata import IMAGES, LS, NAMES

from morphoscope.errors import InputError
from morphoscope.formats import load_instance_dataset, rle_encode, segmentation_to_mask
from morphoscope.formats.shapes import compressed_rle_counts


@pytest.fixture
def coco(tmp_path):
    """Label Studio's COCO export of the polygon project, unpacked beside the user's images."""
    with zipfile.ZipFile(LS / "polygons" / "COCO.zip") as zf:
        data = json.loads(zf.read("result.json"))
    path = tmp_path / "result.json"

    def write(change=None):
        d = json.loads(json.dumps(data))
        if change:
            change(d)
        path.write_text(json.dumps(d))
        return path
    return write


def _one_line_error(path, **kw) -> str:
    with pytest.raises(InputError) as err:
        ds = load_instance_dataset(path, images=IMAGES, **kw)
        for s in ds.samples:
            s.load_instances()
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    return msg[len(f"{path}: "):]


def test_duplicate_image_ids(coco):
    def dup(d):
        d["images"][1]["id"] = d["images"][0]["id"]
    msg = _one_line_error(coco(dup))
    assert msg.startswith("image id 0 is declared twice ('../lsdata/media/upload/1/")


def test_duplicate_annotation_ids(coco):
    def dup(d):
        d["annotations"][5]["id"] = d["annotations"][4]["id"]
    assert _one_line_error(coco(dup)) == "annotation id 4 is used twice"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_polygon_vertex(coco, value):
    def bad(d):
        d["annotations"][3]["segmentation"][0][6] = value
    assert _one_line_error(coco(bad)) == "annotation 3 has a non-finite coordinate (NaN or infinity)"
    with pytest.raises(ValueError, match="non-finite"):
        segmentation_to_mask([[10, 10, value, 20, 30, 30]], 520, 696)


def test_rle_runs_longer_than_the_image(coco):
    # a compressed RLE of a taller mask, labelled with the image's size: pycocotools would write
    # past its buffer
    tall = np.zeros((600, 696), np.uint8)
    tall[550:560, 10:20] = 1

    def bad(d):
        d["annotations"][2]["segmentation"] = dict(rle_encode(tall), size=[520, 696])
    assert _one_line_error(coco(bad)) == (
        "annotation 2 has RLE counts summing to 417600 pixels, not the 520x696 = 361920 of its size")


def test_compressed_rle_counts_match_pycocotools():
    img = np.zeros((520, 696), np.uint8)
    img[100:140, 100:140] = 1
    img[110:130, 110:130] = 0
    img[300, :] = 1
    counts = compressed_rle_counts(rle_encode(img)["counts"])
    flat = img.ravel(order="F")  # COCO runs go down the columns, starting with 0s
    edges = np.flatnonzero(np.diff(flat)) + 1
    want = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    assert counts == want and sum(counts) == img.size


def test_boxes_one_pixel_past_the_edge_warn_and_further_fail(coco):
    def one_past(d):
        b = d["annotations"][0]["bbox"]  # an object on the top edge; push its box 1 px over
        d["annotations"][0]["bbox"] = [b[0], -1.0, b[2], b[3] + 1]
    path = coco(one_past)
    with pytest.warns(UserWarning, match=rf"{path}: 1 annotation bbox\(es\) end up to 1 px past"):
        load_instance_dataset(path, images=IMAGES)

    def two_past(d):
        b = d["annotations"][0]["bbox"]
        d["annotations"][0]["bbox"] = [b[0], -2.0, b[2], b[3] + 2]
    assert _one_line_error(coco(two_past)).startswith("annotation 0 has bbox [233.0, -2.0, 14.0, 8.0], "
                                                      "which lies outside image")


def test_image_size_must_be_positive_integers(coco):
    def bad(d):
        d["images"][0]["width"] = 0
    assert "has width 0 and height 520; they must be positive integers" in _one_line_error(coco(bad))


def test_declared_size_must_match_the_image(coco):
    def bad(d):
        d["images"][0]["width"] = 700
        for a in d["annotations"]:
            a["bbox"] = [0, 0, 1, 1]
    msg = _one_line_error(coco(bad))
    assert "is declared 520x700 but the file" in msg and "is 520x696" in msg


def test_label_studio_json_nan_point(tmp_path):
    tasks = json.loads((LS / "polygons" / "JSON.json").read_text())
    region = tasks[0]["annotations"][0]["result"][2]
    region["value"]["points"][1][0] = float("nan")  # Python's json writes NaN; so do some tools
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    assert _one_line_error(path) == (f"task {tasks[0]['id']}, region '{region['id']}' has a non-finite "
                                     "coordinate (NaN or infinity)")


_BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (__LIMIT__, __LIMIT__))
from morphoscope.errors import InputError
from morphoscope.formats import convert_dataset
try:
    convert_dataset(sys.argv[1], sys.argv[2], to="labels", images=sys.argv[3])
except InputError as exc:
    print(exc)
    sys.exit(2)
"""


def test_nan_vertex_keeps_memory_bounded(coco, tmp_path):
    """A NaN vertex used to grow evaluate / convert to 20 GB inside pycocotools. Under a 1.5 GiB
    address-space limit the conversion must stop with the one-line error, not crash."""
    def bad(d):
        d["annotations"][3]["segmentation"][0][6] = float("nan")
    path = coco(bad)
    limit = 3 * 2**29
    run = subprocess.run([sys.executable, "-c", _BOUNDED.replace("__LIMIT__", str(limit)), str(path),
                          str(tmp_path / "out"), str(IMAGES)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stdout.strip() == f"{path}: annotation 3 has a non-finite coordinate (NaN or infinity)"
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != limit  # the limit stayed in the child


def test_names_follow_the_users_images_when_file_names_carry_the_upload_prefix(coco, tmp_path):
    # a plain COCO file (not Label Studio's: no info) whose file_name kept the upload prefix
    def generic(d):
        d.pop("info")
        for im in d["images"]:
            im["file_name"] = im["file_name"].rsplit("/", 1)[-1]
    ds = load_instance_dataset(coco(generic), images=IMAGES)
    assert sorted(s.name for s in ds.samples) == NAMES
