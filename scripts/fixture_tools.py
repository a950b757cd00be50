"""Shared by make_labelstudio_fixtures.py and make_cvat_fixtures.py: the two BBBC039 images that
every annotation-tool fixture is made from, their classes, and exact pixel-border polygons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# two of the smaller BBBC039 validation images (24 + 43 nuclei, 22 of them on the image border),
# so that every export of them stays commit-sized
IMAGES = [
    "IXMtest_O13_s3_w12D9C1C9C-C582-4080-B9BE-4807FA3E0843",
    "IXMtest_B24_s9_w18C4FE0DD-12CA-4711-9722-3E3105D1E691",
]
CLASSES = ["small nucleus", "large nucleus"]  # this order differs from sorted order on purpose


def make_pair(data: Path, out: Path) -> tuple[dict, dict]:
    """Write ``out/images/NAME.png`` (8-bit, min-max scaled from the 12-bit TIFF: the form a user
    uploads to an annotation tool), ``out/labels/NAME.png`` (the ground truth, copied) and
    ``out/labels/classes.json`` (class by area: "small nucleus" below the median object area of
    the two images, "large nucleus" otherwise). Returns ``{name: labels}``, ``{name: {id: class}}``."""
    import tifffile

    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    labels_of, areas = {}, []
    for name in IMAGES:
        img = tifffile.imread(data / "images" / f"{name}.tif")
        Image.fromarray(to_8bit(img)).save(out / "images" / f"{name}.png", optimize=True)
        shutil.copyfile(data / "labels" / f"{name}.png", out / "labels" / f"{name}.png")
        lab = np.array(Image.open(out / "labels" / f"{name}.png"))
        labels_of[name] = lab
        areas += np.unique(lab[lab > 0], return_counts=True)[1].tolist()
    median = float(np.median(areas))
    classes_of, sidecar = {}, {}
    for name, lab in labels_of.items():
        ids, counts = np.unique(lab[lab > 0], return_counts=True)
        classes_of[name] = {int(i): CLASSES[int(c >= median)] for i, c in zip(ids, counts)}
        sidecar[name] = {str(i): CLASSES.index(c) + 1 for i, c in classes_of[name].items()}
    (out / "labels" / "classes.json").write_text(json.dumps({"names": CLASSES, "objects": sidecar}, indent=1))
    return labels_of, classes_of


def read_pair(pair: Path) -> tuple[dict, dict]:
    meta = json.loads((pair / "labels" / "classes.json").read_text())
    labels_of = {n: np.array(Image.open(pair / "labels" / f"{n}.png")) for n in IMAGES}
    classes_of = {n: {int(i): meta["names"][c - 1] for i, c in meta["objects"][n].items()} for n in IMAGES}
    return labels_of, classes_of


def to_8bit(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    return np.round((img.astype(np.float64) - lo) / max(hi - lo, 1) * 255).astype(np.uint8)


def trace_polygon(mask: np.ndarray) -> list[tuple[int, int]]:
    """The border of one 4-connected object as a polygon through pixel corners (x, y).

    Every pixel side between the object and the background is an edge, oriented clockwise (in
    image coordinates); at a corner shared by two diagonal object pixels the walk turns away from
    the object (left), so the object's two parts stay in one ring that touches itself there."""
    m = np.pad(mask.astype(bool), 1)
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    rows, cols = np.nonzero(m)
    for r, c in zip(rows.tolist(), cols.tolist()):
        x, y = c - 1, r - 1  # pixel (y, x) spans corners x..x+1, y..y+1
        if not m[r - 1, c]:
            out.setdefault((x, y), []).append((x + 1, y))
        if not m[r, c + 1]:
            out.setdefault((x + 1, y), []).append((x + 1, y + 1))
        if not m[r + 1, c]:
            out.setdefault((x + 1, y + 1), []).append((x, y + 1))
        if not m[r, c - 1]:
            out.setdefault((x, y + 1), []).append((x, y))
    start = min(out)
    ring = [start]
    prev, cur = None, start
    while True:
        options = out[cur]
        if len(options) == 1:
            nxt = options[0]
        else:  # a pinch corner: take the left turn (cross product of the two steps < 0)
            dx0, dy0 = cur[0] - prev[0], cur[1] - prev[1]
            nxt = min(options, key=lambda p: dx0 * (p[1] - cur[1]) - dy0 * (p[0] - cur[0]))
        options.remove(nxt)
        if not options:
            del out[cur]
        prev, cur = cur, nxt
        if cur == start:
            break
        ring.append(cur)
    if out:
        raise ValueError("object is not one ring of pixel borders (a hole or a second part)")
    # keep the corners only
    keep = []
    n = len(ring)
    for i in range(n):
        a, b, c = ring[i - 1], ring[i], ring[(i + 1) % n]
        if (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]) != 0:
            keep.append(b)
    return keep


def fill_polygon(points, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies inside the polygon (even-odd rule), as an independent check of the
    traced polygons; pixel centres never lie on a border through pixel corners."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    inside = np.zeros((height, width), bool)
    pts = np.asarray(points, float)
    for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0)):
        if y0 == y1:
            continue
        crosses = (ys > min(y0, y1)) & (ys < max(y0, y1))
        xcross = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < xcross)
    return inside


