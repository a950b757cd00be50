"""COCO JSON in and out, with masks as polygons or RLE (``iscrowd=1`` RLE included, as Label Studio
and CVAT export them). Mask encoding and decoding is pycocotools'; :mod:`.shapes` checks every
shape first, so that memory stays bounded by the image size whatever the file says."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from morphoscope.errors import InputError
from morphoscope.formats.common import shown
from morphoscope.formats.shapes import (
    EDGE_TOLERANCE,
    ShapeError,
    check_compressed_rle,
    check_points,
    check_uncompressed_rle,
    coco_rle_mask,
    polygons_mask,
)

__all__ = ["EDGE_TOLERANCE", "BBOX_TOLERANCE", "load_coco", "masks_to_coco_annotations",
           "rle_decode", "rle_encode", "segmentation_to_mask", "is_label_studio_coco"]

# OpenCV's boundingRect counts both end pixels, so Label Studio's BRUSH_TO_COCO writes boxes that
# end 1 px past the image for objects on its far edge; tolerated with a warning.
BBOX_TOLERANCE = 1.0


def rle_encode(mask: np.ndarray) -> dict:
    """Binary ``(H, W)`` mask -> COCO compressed RLE with a JSON-serialisable ``counts`` string."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) -> binary ``(H, W)`` uint8 mask."""
    h, w = rle["size"]
    try:
        return coco_rle_mask(rle, h, w).astype(np.uint8)
    except ShapeError as exc:
        raise ValueError(f"RLE {exc}") from None


def segmentation_to_mask(seg, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygon list, RLE or uncompressed RLE) -> binary mask.

    Raises ValueError for shapes that are not finite, lie outside the image or do not fit it."""
    try:
        if isinstance(seg, list):
            return polygons_mask(seg, height, width).astype(np.uint8)
        if isinstance(seg, dict):
            return coco_rle_mask(seg, height, width).astype(np.uint8)
    except ShapeError as exc:
        raise ValueError(f"segmentation {exc}") from None
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def is_label_studio_coco(data: dict) -> str | None:
    """``"COCO"`` for Label Studio's COCO exports, ``"BRUSH_TO_COCO"`` for its converter's, else None."""
    contributor = str((data.get("info") or {}).get("contributor", ""))
    return {"Label Studio": "COCO", "Label Studio Converter": "BRUSH_TO_COCO"}.get(contributor)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_coco(path: str | Path) -> dict:
    """Read and check a COCO JSON file: ids are unique, every reference resolves, every shape is
    finite and lies inside its image, every annotation belongs to a declared category. Raises
    :class:`InputError` naming the file and the item; warns (naming the file) about boxes that end
    up to 1 px past their image."""
    path = Path(path)
    where = shown(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError("COCO file not found", path=where) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path=where) from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise InputError("not a COCO file: needs 'images' and 'annotations'", path=where)
    if not isinstance(data["images"], list) or not isinstance(data["annotations"], list):
        raise InputError("'images' and 'annotations' must be lists", path=where)
    cats = data.get("categories") or []
    if not cats and data["annotations"]:
        raise InputError("COCO file declares no categories", path=where)
    cat_ids = set()
    for c in cats:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise InputError(f"category {c!r} needs an 'id' and a 'name'", path=where)
        if c["id"] in cat_ids:
            raise InputError(f"category id {c['id']} is declared twice", path=where)
        cat_ids.add(c["id"])

    images: dict = {}
    for im in data["images"]:
        if not isinstance(im, dict):
            raise InputError(f"image entry {im!r} is not an object", path=where)
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                raise InputError(f"image id {im.get('id')} has no '{key}'", path=where)
        if im["id"] in images:
            # merging them would give each image the other's objects
            raise InputError(f"image id {im['id']} is declared twice ('{images[im['id']]['file_name']}' "
                             f"and '{im['file_name']}')", path=where)
        w, h = im["width"], im["height"]
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            raise InputError(f"image id {im['id']} ('{im['file_name']}') has width {w!r} and height "
                             f"{h!r}; they must be positive integers", path=where)
        images[im["id"]] = im

    ann_ids: set = set()
    loose_boxes = 0
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise InputError(f"annotation entry {ann!r} is not an object", path=where)
        aid = ann.get("id")
        if aid is not None:
            if aid in ann_ids:
                raise InputError(f"annotation id {aid} is used twice", path=where)
            ann_ids.add(aid)
        if ann.get("image_id") not in images:
            raise InputError(f"annotation {aid} refers to image id {ann.get('image_id')}, which is not declared", path=where)
        if ann.get("category_id") not in cat_ids:
            raise InputError(
                f"annotation {aid} has category_id {ann.get('category_id')}, which is not declared "
                f"in 'categories' (declared: {sorted(cat_ids)})", path=where)
        im = images[ann["image_id"]]
        w, h = im["width"], im["height"]
        seg = ann.get("segmentation")
        bbox = ann.get("bbox")
        try:
            if isinstance(seg, list) and seg:
                for poly in seg:
                    if not isinstance(poly, list) or len(poly) % 2 or not all(_is_number(v) for v in poly):
                        raise ShapeError("has a polygon that is not a flat list of x, y numbers")
                    check_points(poly[0::2], poly[1::2], h, w)
            elif isinstance(seg, dict):
                if list(seg.get("size", [])) != [h, w]:
                    raise ShapeError(f"has RLE size {seg.get('size')}, which does not match its image "
                                     f"'{im['file_name']}' ({h}x{w})")
                counts = seg.get("counts")
                if isinstance(counts, list):
                    check_uncompressed_rle(counts, h, w)
                elif isinstance(counts, str):
                    check_compressed_rle(counts, h, w)
                else:
                    raise ShapeError("has an RLE without 'counts'")
            elif seg not in (None, []):
                raise ShapeError(f"has a segmentation of type {type(seg).__name__}")
            elif "keypoints" not in ann and not bbox:
                raise ShapeError("has no segmentation mask")
            if bbox is not None:
                if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)
                        and np.isfinite(bbox).all()):
                    raise ShapeError(f"has bbox {bbox}, which is not 4 finite numbers")
                x, y, bw, bh = bbox
                over = max(-x, -y, x + bw - w, y + bh - h)
                if over > BBOX_TOLERANCE:
                    raise ShapeError(f"has bbox {bbox}, which lies outside image '{im['file_name']}' ({w}x{h})")
                if over > EDGE_TOLERANCE:
                    loose_boxes += 1
        except ShapeError as exc:
            msg = str(exc)
            if msg.startswith("lies outside its image"):
                msg = msg.replace("its image", f"its image '{im['file_name']}'", 1)
            raise InputError(f"annotation {aid} {msg}", path=where) from None
    if loose_boxes:
        warnings.warn(f"{where}: {loose_boxes} annotation bbox(es) end up to 1 px past their image "
                      "(tolerated: OpenCV-style boxes that count both end pixels; boxes are not used "
                      "for masks)", stacklevel=2)
    return data


def masks_to_coco_annotations(
    masks, categories, *, image_id: int, start_id: int = 1, scores=None
) -> list[dict]:
    """Binary masks ``(N, H, W)`` with category ids -> COCO annotations (RLE), or detection
    results (with ``score``, no ``id``) when ``scores`` is given."""
    out = []
    for i, (m, c) in enumerate(zip(masks, categories)):
        rle = rle_encode(m)
        area = float(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}))
        bbox = mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}).tolist()
        ann = {"image_id": int(image_id), "category_id": int(c), "segmentation": rle,
               "area": area, "bbox": [float(v) for v in bbox]}
        if scores is None:
            ann.update(id=start_id + i, iscrowd=0)
        else:
            ann["score"] = float(scores[i])
        out.append(ann)
    return out
