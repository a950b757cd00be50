"""Object shapes of annotation tools -> binary masks, and the checks that keep rasterising them
bounded by the image size whatever a file says.

Two polygon conventions meet here. Polygons drawn in a tool (COCO, Label Studio, CVAT) are areas
in continuous image coordinates: pixel ``(row, col)`` covers ``[col, col+1) x [row, row+1)``, so
a polygon through pixel corners covers exactly the pixels inside it; pycocotools fills them.
Contours traced from a mask by OpenCV (Label Studio's BRUSH_TO_COCO) instead run through the
centres of the object's boundary pixels: the object is every pixel whose centre lies inside or on
that contour (:func:`pixel_centre_polygons_mask`).

Every rasteriser here is a plain function of ``(..., height, width)``, so that lazily rasterised
objects (``functools.partial`` of these) can be pickled into data-loader workers.
"""

from __future__ import annotations

import math

import numpy as np
from pycocotools import mask as mask_utils

# Coordinates further out than this from the image are an annotation error (vertices on the far
# edge are legitimately at x == width).
EDGE_TOLERANCE = 0.5


class ShapeError(ValueError):
    """A shape that cannot be rasterised; readers turn it into an InputError naming file and item."""


def check_points(xs, ys, height: int, width: int, *, tolerance: float = EDGE_TOLERANCE) -> None:
    """Raise :class:`ShapeError` for non-finite coordinates or ones outside the image.

    NaN passes every ``<``/``>`` bounds test, and pycocotools turns it into a polygon billions
    of pixels long: this check must come first."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ShapeError("has a non-finite coordinate (NaN or infinity)")
    if len(xs) and (xs.min() < -tolerance or ys.min() < -tolerance
                    or xs.max() > width + tolerance or ys.max() > height + tolerance):
        raise ShapeError(f"lies outside its image ({width}x{height}): x in [{xs.min():g}, {xs.max():g}], "
                         f"y in [{ys.min():g}, {ys.max():g}]")


def polygons_mask(polygons, height: int, width: int) -> np.ndarray:
    """Area polygons ``[[x0, y0, x1, y1, ...], ...]`` (union) -> bool mask, filled by pycocotools."""
    polys = [[float(v) for v in p] for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), bool)
    for p in polys:
        check_points(p[0::2], p[1::2], height, width)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, height, width))).astype(bool)


def pixel_centre_polygons_mask(polygons, height: int, width: int) -> np.ndarray:
    """Contours through boundary-pixel centres (OpenCV's ``findContours``) -> bool mask: the
    pixels whose centres lie inside a contour or on it."""
    from skimage.draw import polygon as fill, polygon_perimeter

    mask = np.zeros((height, width), bool)
    for p in polygons:
        xs, ys = np.asarray(p[0::2], float), np.asarray(p[1::2], float)
        check_points(xs, ys, height - 1, width - 1)
        rr, cc = fill(ys, xs, shape=(height, width))
        mask[rr, cc] = True
        rr, cc = polygon_perimeter(np.round(ys).astype(int), np.round(xs).astype(int), shape=(height, width))
        mask[rr, cc] = True
    return mask


def rotated_box_polygon(x: float, y: float, w: float, h: float, angle_deg: float, *,
                        pivot: tuple[float, float]) -> list[float]:
    """The four corners of a box at ``(x, y)`` of size ``w x h`` turned by ``angle_deg`` (clockwise
    on screen, y pointing down) around ``pivot``, as one flat polygon."""
    a = math.radians(angle_deg)
    px, py = pivot
    out = []
    for cx, cy in ((x, y), (x + w, y), (x + w, y + h), (x, y + h)):
        out += [px + math.cos(a) * (cx - px) - math.sin(a) * (cy - py),
                py + math.sin(a) * (cx - px) + math.cos(a) * (cy - py)]
    return out


def box_mask(polygon, height: int, width: int) -> np.ndarray:
    """A (possibly turned) box given as its corner polygon -> bool mask."""
    return polygons_mask([polygon], height, width)


def ellipse_mask(cx: float, cy: float, rx: float, ry: float, angle_deg: float, height: int,
                 width: int) -> np.ndarray:
    """Pixels whose centres lie inside the ellipse (continuous coordinates, angle clockwise on
    screen). Only the ellipse's bounding square is evaluated."""
    check_points([cx], [cy], height, width, tolerance=max(rx, ry) + EDGE_TOLERANCE)
    if not (math.isfinite(rx) and math.isfinite(ry) and math.isfinite(angle_deg)) or rx <= 0 or ry <= 0:
        raise ShapeError(f"has invalid radii ({rx:g}, {ry:g}) or angle")
    r = max(rx, ry)
    r0, r1 = max(0, math.floor(cy - r)), min(height, math.ceil(cy + r) + 1)
    c0, c1 = max(0, math.floor(cx - r)), min(width, math.ceil(cx + r) + 1)
    mask = np.zeros((height, width), bool)
    if r0 >= r1 or c0 >= c1:
        return mask
    yy, xx = np.mgrid[r0:r1, c0:c1] + 0.5
    a = math.radians(angle_deg)
    dx, dy = xx - cx, yy - cy
    u = (dx * math.cos(a) + dy * math.sin(a)) / rx
    v = (-dx * math.sin(a) + dy * math.cos(a)) / ry
    mask[r0:r1, c0:c1] = u * u + v * v <= 1.0
    return mask


def check_uncompressed_rle(counts, height: int, width: int) -> None:
    """Uncompressed RLE counts must be non-negative integers summing to ``height * width``;
    pycocotools writes past its buffer otherwise."""
    c = np.asarray(counts)
    if c.ndim != 1 or (len(c) and not np.issubdtype(c.dtype, np.number)):
        raise ShapeError("has RLE counts that are not a list of numbers")
    if len(c) and (not np.isfinite(c).all() or (c < 0).any() or (c != np.round(c)).any()):
        raise ShapeError("has RLE counts that are not non-negative integers")
    total = int(c.sum()) if len(c) else 0
    if total != height * width:
        raise ShapeError(f"has RLE counts summing to {total} pixels, not the {height}x{width} = "
                         f"{height * width} of its size")


def compressed_rle_counts(counts: str) -> list[int]:
    """The run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString``, which
    pycocotools does not expose), to check them before pycocotools decodes into a fixed buffer."""
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ShapeError("has a truncated compressed RLE string")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ShapeError("has a compressed RLE string with characters outside COCO's alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def check_compressed_rle(counts: str, height: int, width: int) -> None:
    check_uncompressed_rle(compressed_rle_counts(counts), height, width)


def coco_rle_mask(rle: dict, height: int, width: int) -> np.ndarray:
    """COCO RLE (compressed or not) -> bool mask, after checking its size and run lengths."""
    if list(rle.get("size", [])) != [height, width]:
        raise ShapeError(f"has RLE size {rle.get('size')}, not its image's {[height, width]}")
    counts = rle.get("counts")
    if isinstance(counts, list):
        check_uncompressed_rle(counts, height, width)
        rle = mask_utils.frPyObjects(rle, height, width)
    elif isinstance(counts, (str, bytes)):
        text = counts.decode("ascii") if isinstance(counts, bytes) else counts
        check_compressed_rle(text, height, width)
        rle = {"size": [height, width], "counts": text.encode("ascii")}
    else:
        raise ShapeError("has an RLE without 'counts'")
    return mask_utils.decode(rle).astype(bool)


def cvat_mask(counts, left: int, top: int, box_width: int, box_height: int, height: int,
              width: int) -> np.ndarray:
    """CVAT's mask RLE -> bool mask: run lengths over the mask's ``box_width x box_height`` box
    at ``(left, top)``, row by row, starting with a run of 0s (CVAT's MaskConverter)."""
    if box_width <= 0 or box_height <= 0:
        raise ShapeError(f"has an empty mask box ({box_width}x{box_height})")
    if left < 0 or top < 0 or left + box_width > width or top + box_height > height:
        raise ShapeError(f"has a mask box at ({left}, {top}) of {box_width}x{box_height} outside its "
                         f"image ({width}x{height})")
    check_uncompressed_rle(counts, box_height, box_width)
    # read row-major runs as column-major ones of the transposed box, as CVAT itself does
    tight = mask_utils.decode(mask_utils.frPyObjects(
        {"counts": [int(c) for c in counts], "size": [box_width, box_height]}, box_width, box_height)).T
    mask = np.zeros((height, width), bool)
    mask[top:top + box_height, left:left + box_width] = tight.astype(bool)
    return mask
