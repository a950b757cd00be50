"""COCO JSON in and out, with masks as polygons or RLE (``iscrowd=1`` RLE included, as Label Studio
and CVAT export them). Mask encoding and decoding is pycocotools'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from morphoscope.errors import InputError

# Tolerance for coordinates on the image's far edge: polygon vertices lie on pixel corners, so
# x == width is inside; anything further out than half a pixel is an annotation error.
EDGE_TOLERANCE = 0.5


def rle_encode(mask: np.ndarray) -> dict:
    """Binary ``(H, W)`` mask -> COCO compressed RLE with a JSON-serialisable ``counts`` string."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) -> binary ``(H, W)`` uint8 mask."""
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle)


def segmentation_to_mask(seg, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygon list, RLE or uncompressed RLE) -> binary mask."""
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), np.uint8)
        rles = mask_utils.frPyObjects(polys, height, width)
        return mask_utils.decode(mask_utils.merge(rles))
    if isinstance(seg, dict):
        if list(seg.get("size", [])) != [height, width]:
            raise ValueError(f"RLE size {seg.get('size')} differs from the image's {[height, width]}")
        return rle_decode(seg)
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def load_coco(path: str | Path) -> dict:
    """Read and check a COCO JSON file: every reference resolves, every annotation lies inside its
    image and belongs to a declared category. Raises :class:`InputError` naming the file and item."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("COCO file not found", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise InputError("not a COCO file: needs 'images' and 'annotations'", path=path)
    cats = data.get("categories") or []
    if not cats:
        raise InputError("COCO file declares no categories", path=path)
    cat_ids = {c["id"] for c in cats}
    images = {im["id"]: im for im in data["images"]}
    for im in data["images"]:
        for key in ("file_name", "width", "height"):
            if key not in im:
                raise InputError(f"image id {im.get('id')} has no '{key}'", path=path)
    for ann in data["annotations"]:
        aid = ann.get("id")
        if ann.get("image_id") not in images:
            raise InputError(f"annotation {aid} refers to image id {ann.get('image_id')}, which is not declared", path=path)
        if ann.get("category_id") not in cat_ids:
            raise InputError(
                f"annotation {aid} has category_id {ann.get('category_id')}, which is not declared "
                f"in 'categories' (declared: {sorted(cat_ids)})", path=path)
        im = images[ann["image_id"]]
        w, h = im["width"], im["height"]
        seg = ann.get("segmentation")
        if seg is None:
            raise InputError(f"annotation {aid} has no segmentation mask", path=path)
        if isinstance(seg, list):
            for poly in seg:
                xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
                if len(xs) and (xs.min() < -EDGE_TOLERANCE or ys.min() < -EDGE_TOLERANCE
                                or xs.max() > w + EDGE_TOLERANCE or ys.max() > h + EDGE_TOLERANCE):
                    raise InputError(
                        f"annotation {aid} lies outside its image '{im['file_name']}' ({w}x{h}): "
                        f"x in [{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}]", path=path)
        elif isinstance(seg, dict):
            if list(seg.get("size", [])) != [h, w]:
                raise InputError(
                    f"annotation {aid}: RLE size {seg.get('size')} does not match image "
                    f"'{im['file_name']}' ({h}x{w})", path=path)
        bbox = ann.get("bbox")
        if bbox and (bbox[0] < -EDGE_TOLERANCE or bbox[1] < -EDGE_TOLERANCE
                     or bbox[0] + bbox[2] > w + EDGE_TOLERANCE or bbox[1] + bbox[3] > h + EDGE_TOLERANCE):
            raise InputError(f"annotation {aid}: bbox {bbox} lies outside image '{im['file_name']}' ({w}x{h})", path=path)
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
