"""Make the CVAT exports in tests/data/cvat/ (see its README.md).

CVAT itself needs Docker (PostgreSQL, Redis, its server and UI), which cannot run here, so the
exports are written by CVAT's own writer code paths instead of a live server:

* "CVAT for images 1.1" (annotations.xml): the element order, attributes and number formats of
  CVAT's dumper ``dump_as_cvat_annotation`` in cvat/apps/dataset_manager/formats/cvat.py
  (``{:.2f}`` coordinates, ``<mask rle="..." left top width height>`` with the run lengths of
  ``MaskConverter.rle`` from formats/transformations.py: row-major over the mask's tight box,
  starting with a run of 0s), written with xml.sax's XMLGenerator as CVAT does.
* "COCO 1.0": datumaro's ``coco_instances`` exporter (PyPI datumaro; CVAT runs its own fork of
  the same exporter) called as CVAT's formats/coco.py calls it, on items built as CVAT's
  GetCVATDataExtractor builds them (polygons as Polygon; masks as the RleMask that
  ``MaskConverter.cvat_rle_to_dm_rle`` makes; ``occluded`` as an attribute).

    python3 -m venv /tmp/dmvenv && /tmp/dmvenv/bin/pip install datumaro
    /tmp/dmvenv/bin/python scripts/make_cvat_fixtures.py \
        --pair tests/data/bbbc039-pair --out tests/data/cvat

The objects are those of tests/data/bbbc039-pair (made by make_labelstudio_fixtures.py), with one
change: one large nucleus gets a 3x3 hole (a mask with a hole is what polygons cannot carry), and
``reference/`` holds the label images with that hole. Objects with an even label are polygons
(traced exactly along their pixel borders), the others masks. The XML also carries a ``points``
shape and a ``tag`` (not objects: a reader must leave them out), and boxes.xml one box per object.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import zipfile
from collections import OrderedDict
from pathlib import Path
from xml.sax.saxutils import XMLGenerator

import numpy as np
from fixture_tools import CLASSES, IMAGES, fill_polygon, read_pair, trace_polygon
from PIL import Image
from pycocotools import mask as mask_utils

HOLE_IMAGE = IMAGES[1]
CREATED = "2026-11-29 12:00:00.000000+00:00"


def punch_hole(labels: np.ndarray, classes: dict[int, str]) -> int:
    """Give the largest 'large nucleus' a 3x3 hole around its centre pixel; returns its label."""
    big = max((i for i, c in classes.items() if c == "large nucleus"), key=lambda i: (labels == i).sum())
    ys, xs = np.nonzero(labels == big)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    assert (labels[cy - 2:cy + 3, cx - 2:cx + 3] == big).all(), "hole must lie inside the object"
    labels[cy - 1:cy + 2, cx - 1:cx + 2] = 0
    return big


def cvat_rle(mask: np.ndarray) -> list[int]:
    """CVAT's MaskConverter.dm_mask_to_cvat_rle: run lengths of the tight box, row-major, starting
    with 0s, followed by left, top, right, bottom (inclusive)."""
    ys, xs = np.nonzero(mask)
    top, left, bottom, right = ys.min(), xs.min(), ys.max(), xs.max()
    arr = mask[top:bottom + 1, left:right + 1].reshape(-1)
    n = len(arr)
    runs = np.diff(np.nonzero(arr[1:] != arr[:-1])[0], prepend=-1, append=n - 1).tolist()
    if arr[0] != 0:
        runs.insert(0, 0)
    return runs + [int(left), int(top), int(right), int(bottom)]


class Writer:
    """The indentation logic of CVAT's XmlAnnotationWriter."""

    def __init__(self, fh):
        self.x = XMLGenerator(fh, "utf-8")
        self.level = 0

    def indent(self):
        self.x.ignorableWhitespace("\n" + "  " * self.level)

    def open(self, tag, attrs=None):
        self.indent()
        self.x.startElement(tag, attrs or {})
        self.level += 1

    def close(self, tag):
        self.level -= 1
        self.indent()
        self.x.endElement(tag)

    def leaf(self, tag, text):
        self.indent()
        self.x.startElement(tag, {})
        self.x.characters(text)
        self.x.endElement(tag)


def write_meta(w: Writer, task_name: str):
    w.open("meta")
    w.open("task")
    for k, v in [("id", "1"), ("name", task_name), ("size", str(len(IMAGES))), ("mode", "annotation"),
                 ("overlap", "0"), ("bugtracker", ""), ("created", CREATED), ("updated", CREATED),
                 ("subset", "default"), ("start_frame", "0"), ("stop_frame", str(len(IMAGES) - 1)),
                 ("frame_filter", "")]:
        w.leaf(k, v)
    w.open("segments")
    w.open("segment")
    for k, v in [("id", "1"), ("start", "0"), ("stop", str(len(IMAGES) - 1)), ("url", "http://localhost:8080/api/jobs/1")]:
        w.leaf(k, v)
    w.close("segment")
    w.close("segments")
    w.open("owner")
    w.leaf("username", "fixtures")
    w.leaf("email", "fixtures@example.org")
    w.close("owner")
    w.leaf("assignee", "")
    w.open("labels")
    for name, color in zip(CLASSES + ["mitosis"], ["#1f77b4", "#ff7f0e", "#2ca02c"]):
        w.open("label")
        w.leaf("name", name)
        w.leaf("color", color)
        w.leaf("type", "any" if name != "mitosis" else "tag")
        w.leaf("attributes", "")
        w.close("label")
    w.close("labels")
    w.close("task")
    w.leaf("dumped", CREATED)
    w.close("meta")


def shape_kind(i: int, name: str, hole_label: int) -> str:
    return "mask" if (i % 2 or (name == HOLE_IMAGE and i == hole_label)) else "polygon"


def write_xml(path: Path, labels_of, classes_of, hole_label: int, *, boxes: bool) -> None:
    buf = io.StringIO()
    w = Writer(buf)
    w.x.startDocument()
    w.x.startElement("annotations", {})
    w.level += 1
    w.leaf("version", "1.1")
    write_meta(w, "bbbc039 boxes" if boxes else "bbbc039 nuclei")
    for frame, name in enumerate(IMAGES):
        lab = labels_of[name]
        h, wd = lab.shape
        w.open("image", OrderedDict([("id", str(frame)), ("name", f"{name}.png"), ("width", str(wd)), ("height", str(h))]))
        for i, cls in sorted(classes_of[name].items()):
            mask = lab == i
            attrs = OrderedDict([("label", cls), ("source", "manual"), ("occluded", "0")])
            if boxes:
                ys, xs = np.nonzero(mask)
                attrs.update([("xtl", f"{xs.min():.2f}"), ("ytl", f"{ys.min():.2f}"),
                              ("xbr", f"{xs.max() + 1:.2f}"), ("ybr", f"{ys.max() + 1:.2f}")])
                attrs["z_order"] = "0"
                w.open("box", attrs)
                w.close("box")
            elif shape_kind(i, name, hole_label) == "mask":
                pts = cvat_rle(mask)
                attrs.update([("rle", f"{pts[:-4]}"[1:-1]), ("left", str(pts[-4])), ("top", str(pts[-3])),
                              ("width", str(pts[-2] - pts[-4] + 1)), ("height", str(pts[-1] - pts[-3] + 1))])
                attrs["z_order"] = "0"
                w.open("mask", attrs)
                w.close("mask")
            else:
                poly = trace_polygon(mask)
                assert np.array_equal(fill_polygon(poly, h, wd), mask)
                attrs["points"] = ";".join(f"{x:.2f},{y:.2f}" for x, y in poly)
                attrs["z_order"] = "0"
                w.open("polygon", attrs)
                w.close("polygon")
        if not boxes and frame == 0:
            # not objects: a point and an image tag, which a reader must leave out
            ys, xs = np.nonzero(lab == min(classes_of[name]))
            w.open("points", OrderedDict([("label", "small nucleus"), ("source", "manual"), ("occluded", "0"),
                                          ("points", f"{xs.mean() + 0.5:.2f},{ys.mean() + 0.5:.2f}"), ("z_order", "0")]))
            w.close("points")
            w.open("tag", OrderedDict([("label", "mitosis"), ("source", "manual")]))
            w.close("tag")
        w.close("image")
    w.level -= 1
    w.indent()
    w.x.endElement("annotations")
    w.x.endDocument()
    path.write_text(buf.getvalue() + "\n", encoding="utf-8")


def write_coco(zip_path: Path, pair: Path, labels_of, classes_of, hole_label: int) -> None:
    from datumaro.components.annotation import Polygon, RleMask
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image as DmImage

    items = []
    for frame, name in enumerate(IMAGES):
        lab = labels_of[name]
        h, wd = lab.shape
        anns = []
        for i, cls in sorted(classes_of[name].items()):
            mask = lab == i
            label = CLASSES.index(cls)
            if shape_kind(i, name, hole_label) == "mask":
                # MaskConverter.cvat_rle_to_dm_rle: CVAT's RLE -> full-image COCO RLE
                pts = cvat_rle(mask)
                left, top, right, bottom = pts[-4:]
                bh, bw = bottom - top + 1, right - left + 1
                tight = mask_utils.decode(mask_utils.frPyObjects([{"counts": pts[:-4], "size": [bw, bh]}], h=bh, w=bw)[0]).transpose()
                full = np.zeros((h, wd), np.uint8)
                full[top:bottom + 1, left:right + 1] = tight
                assert np.array_equal(full.astype(bool), mask)
                anns.append(RleMask(rle=mask_utils.encode(np.asfortranarray(full)), label=label, z_order=0,
                                    attributes={"occluded": False}, group=0))
            else:
                poly = trace_polygon(mask)
                anns.append(Polygon([float(v) for p in poly for v in p], label=label, z_order=0,
                                    attributes={"occluded": False}, group=0))
        items.append(DatasetItem(id=name, annotations=anns, attributes={"frame": frame},
                                 media=DmImage.from_file(path=str(pair / "images" / f"{name}.png"), size=(h, wd))))
    ds = Dataset.from_iterable(items, categories=CLASSES)
    tmp = zip_path.parent / ".coco_tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    ds.export(str(tmp), "coco_instances", save_media=False, merge_images=False)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(tmp.rglob("*")):
            zf.write(p, p.relative_to(tmp).as_posix())
    shutil.rmtree(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "reference").mkdir(parents=True)
    labels_of, classes_of = read_pair(args.pair)
    hole_label = punch_hole(labels_of[HOLE_IMAGE], classes_of[HOLE_IMAGE])
    for name, lab in labels_of.items():
        Image.fromarray(lab).save(out / "reference" / f"{name}.png")
    (out / "reference" / "hole.json").write_text(json.dumps({"image": HOLE_IMAGE, "label": hole_label}) + "\n")

    xml = out / "annotations.xml"
    write_xml(xml, labels_of, classes_of, hole_label, boxes=False)
    with zipfile.ZipFile(out / "cvat_for_images_1.1.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(xml, "annotations.xml")
    xml.unlink()  # CVAT hands out zips only
    write_xml(out / "boxes.xml", labels_of, classes_of, hole_label, boxes=True)
    write_coco(out / "coco_1.0.zip", args.pair, labels_of, classes_of, hole_label)


if __name__ == "__main__":
    main()
