"""CVAT for images 1.1 (``annotations.xml``, alone or in the zip CVAT hands out).

Objects read: ``<polygon>``, ``<box>`` (also turned: ``rotation`` in degrees around its centre)
and ``<mask>`` (CVAT's own RLE: run lengths over the mask's ``left, top, width, height`` box, row
by row, starting with a run of 0s). Shapes that share a ``group_id`` on an image are one object,
as in CVAT's own COCO export. ``<points>``, ``<polyline>``, ``<ellipse>``, ``<cuboid>``,
``<skeleton>`` and ``<tag>`` are not object outlines and are left out with a warning (CVAT's COCO
1.0 export turns ellipses into masks). Video exports (``<track>``) are refused.

Classes are the labels of ``<meta>`` in their order, less those made only for tags, points,
polylines, cuboids or skeletons. A later ``z_order`` draws over an earlier one.

CVAT's COCO 1.0 export is COCO (polygons; masks as ``iscrowd`` uncompressed RLE, holes kept) and
is read by :mod:`.dataset`.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.formats.common import AnnotatedObject, ImageFinder, shown
from morphoscope.formats.shapes import (
    ShapeError,
    box_mask,
    check_points,
    check_uncompressed_rle,
    cvat_mask,
    polygons_mask,
    rotated_box_polygon,
)

__all__ = ["load_cvat_xml", "parse_cvat_rle"]

REGION_TAGS = ("polygon", "box", "mask")
OTHER_TAGS = ("points", "polyline", "ellipse", "cuboid", "skeleton", "tag")
NON_REGION_LABEL_TYPES = {"tag", "points", "polyline", "cuboid", "skeleton"}


def parse_cvat_rle(text: str) -> list[int]:
    """``"3, 5, 7"`` -> ``[3, 5, 7]`` (CVAT writes the run lengths comma-separated)."""
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ShapeError("has an 'rle' that is not comma-separated integers") from None


def _float(el, key: str) -> float:
    try:
        v = float(el.get(key))
    except (TypeError, ValueError):
        raise ShapeError(f"has {key}={el.get(key)!r}, not a number") from None
    if not np.isfinite(v):
        raise ShapeError("has a non-finite coordinate (NaN or infinity)")
    return v


def _int(el, key: str) -> int:
    try:
        return int(el.get(key))
    except (TypeError, ValueError):
        raise ShapeError(f"has {key}={el.get(key)!r}, not an integer") from None


def _points(el) -> list[float]:
    try:
        pts = [float(v) for pair in el.get("points", "").split(";") if pair for v in pair.split(",")]
    except ValueError:
        raise ShapeError("has 'points' that are not x,y;x,y;... numbers") from None
    if len(pts) % 2 or len(pts) < 6:
        raise ShapeError("has 'points' that are not at least 3 x,y pairs")
    return pts


def _union(rasterizers, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for fn in rasterizers:
        mask |= fn(height, width)
    return mask


def _shape(el, h: int, w: int):
    """A region element -> a rasteriser, its numbers checked now."""
    if el.tag == "polygon":
        pts = _points(el)
        check_points(pts[0::2], pts[1::2], h, w)
        return partial(polygons_mask, [pts])
    if el.tag == "box":
        x0, y0, x1, y1 = (_float(el, k) for k in ("xtl", "ytl", "xbr", "ybr"))
        rot = _float(el, "rotation") if el.get("rotation") else 0.0
        poly = rotated_box_polygon(x0, y0, x1 - x0, y1 - y0, rot, pivot=((x0 + x1) / 2, (y0 + y1) / 2))
        check_points(poly[0::2], poly[1::2], h, w)
        return partial(box_mask, poly)
    counts = parse_cvat_rle(el.get("rle", ""))
    left, top, bw, bh = (_int(el, k) for k in ("left", "top", "width", "height"))
    if bw <= 0 or bh <= 0 or left < 0 or top < 0 or left + bw > w or top + bh > h:
        raise ShapeError(f"has a mask box at ({left}, {top}) of {bw}x{bh} outside its image ({w}x{h})")
    check_uncompressed_rle(counts, bh, bw)
    return partial(cvat_mask, counts, left, top, bw, bh)


def load_cvat_xml(path: str | Path, *, images: str | Path | None = None):
    """Read CVAT for images 1.1 XML into an :class:`~.dataset.InstanceDataset`."""
    from morphoscope.formats.dataset import InstanceDataset, Sample

    path = Path(path)
    where = shown(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"not valid XML ({exc})", path=where) from None
    if root.tag != "annotations":
        raise InputError(f"not a CVAT export: the root element is <{root.tag}>, not <annotations>", path=where)
    if root.find("track") is not None:
        raise InputError("this is 'CVAT for video 1.1' (tracks); export the task as 'CVAT for images 1.1'",
                         path=where)
    declared, skip_types = [], set()
    for lab in root.iterfind("./meta//labels/label"):
        name = lab.findtext("name")
        if name is None or lab.findtext("parent"):  # skeleton points have a parent
            continue
        if (lab.findtext("type") or "any") in NON_REGION_LABEL_TYPES:
            skip_types.add(name)
            continue
        if name not in declared:
            declared.append(name)
    classes = list(declared)

    finder = ImageFinder(path, Path(images) if images is not None else None)
    samples, seen, ids, other = [], set(), set(), {}
    for im in root.iterfind("image"):
        name_attr = im.get("name")
        iwhere = f"image id {im.get('id')} ('{name_attr}')"
        if im.get("id") in ids:
            raise InputError(f"image id {im.get('id')} is declared twice", path=where)
        ids.add(im.get("id"))
        try:
            w, h = int(im.get("width")), int(im.get("height"))
            if w <= 0 or h <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"{iwhere} has width {im.get('width')!r} and height {im.get('height')!r}; "
                             "they must be positive integers", path=where) from None
        found = finder.find(name_attr or "")
        if found is None:
            raise finder.missing(name_attr or "", iwhere)
        stem = Path(found[1]).stem
        name = stem if stem not in seen else f"{stem}_{im.get('id')}"
        seen.add(name)
        groups: dict = {}  # group id (or a unique key) -> [(z_order, label, rasteriser, where)]
        for k, el in enumerate(im):
            if el.tag in OTHER_TAGS:
                other[el.tag] = other.get(el.tag, 0) + 1
                continue
            if el.tag not in REGION_TAGS:
                continue
            label = el.get("label")
            swhere = f"{el.tag} {k + 1} of {iwhere}"
            if label not in classes:
                if label in skip_types or label is None:
                    raise InputError(f"{swhere} has label {label!r}, which is not declared for regions "
                                     "in <meta>", path=where)
                classes.append(label)  # CVAT always declares its labels; be lenient all the same
            try:
                fn = _shape(el, h, w)
            except ShapeError as exc:
                raise InputError(f"{swhere} {exc}", path=where) from None
            try:
                z = int(el.get("z_order", 0))
            except ValueError:
                z = 0
            group = el.get("group_id")
            key = ("group", group) if group not in (None, "", "0") else ("shape", k)
            groups.setdefault(key, []).append((z, label, fn, swhere))
        objects = []
        for parts in sorted(groups.values(), key=lambda p: max(z for z, *_ in p)):
            z, label, fn, swhere = parts[0]
            rasterize = fn if len(parts) == 1 else partial(_union, [p[2] for p in parts])
            objects.append((classes.index(label) + 1, swhere, rasterize))
        samples.append(Sample(name=name, image_path=found[0], layout="cvat",
                              objects=[AnnotatedObject(c, s, f) for c, s, f in objects],
                              annotation_path=path, declared_size=(h, w)))
    if not samples:
        raise InputError("the export lists no <image>", path=where)
    for tag, n in other.items():
        extra = " (CVAT's COCO 1.0 export turns ellipses into masks)" if tag == "ellipse" else ""
        warnings.warn(f"{where}: {n} <{tag}> element(s) are not object outlines and were left out{extra}",
                      stacklevel=3)
    return InstanceDataset(path, "cvat", samples, classes or ["object"])
