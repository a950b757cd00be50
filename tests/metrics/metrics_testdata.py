"""Test data of the metrics tests: real BBBC039 label images as GT, perturbed copies of them as
predictions, and a prediction folder in the format of docs/outputs.md. (A uniquely named module,
not conftest, so that test files can import its helpers.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from morphoscope.formats.coco import masks_to_coco_annotations

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BBBC_VAL = DATA / "bbbc039" / "validation"
# 142 nuclei (more than COCO's default 100 detections), 43 nuclei, and an image without nuclei.
PREFIXES = ("IXMtest_C18_s1_", "IXMtest_B24_s9_", "IXMtest_L10_s6_")
# Predicted with the shipped model: the three above and two more.
SHIPPED_PREFIXES = (*PREFIXES, "IXMtest_A02_s1_", "IXMtest_P21_s5_")


def perturb(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[int, float]]:
    """A plausible prediction of ``labels``: ~10% of objects dropped, ~30% eroded by 2 px, one
    fake object added in the background; random scores. Labels are ordered by score, highest
    first (as 'morphoscope predict' writes them)."""
    out = np.zeros_like(labels, dtype=np.uint16)
    boxes = ndi.find_objects(labels)
    kept = []
    for v in np.unique(labels)[1:]:
        if rng.random() < 0.1:
            continue
        sl = boxes[v - 1]
        m = labels[sl] == v
        if rng.random() < 0.3:
            m = ndi.binary_erosion(m, iterations=2)
            if not m.any():
                continue
        kept.append((sl, m))
    # The fake object: a 12x12 square on background.
    free = ndi.binary_erosion(labels == 0, np.ones((13, 13)))
    y, x = np.argwhere(free)[len(np.argwhere(free)) // 2]
    square = np.ones((12, 12), bool)
    kept.append(((slice(y - 6, y + 6), slice(x - 6, x + 6)), square))
    scores = np.sort(rng.uniform(0.05, 1.0, len(kept)))[::-1]
    order = rng.permutation(len(kept))  # which object gets which score (and label)
    for label, i in enumerate(order, start=1):
        sl, m = kept[i]
        out[sl][m] = label
    return out, {k: float(s) for k, s in enumerate(scores, start=1)}


def label_results(labels: np.ndarray, scores: dict[int, float], *, image_id: int) -> list[dict]:
    """COCO results (RLE, bbox, score, 'label') of the objects of a label image."""
    ids = np.unique(labels)[1:]
    anns = masks_to_coco_annotations(labels[None] == ids[:, None, None], [1] * len(ids),
                                     image_id=image_id, scores=[scores[int(v)] for v in ids])
    for a, v in zip(anns, ids):
        a["label"] = int(v)
    return anns


def label_gt(labels: np.ndarray, *, image_id: int, start_id: int) -> list[dict]:
    ids = np.unique(labels)[1:]
    return masks_to_coco_annotations(labels[None] == ids[:, None, None], [1] * len(ids),
                                     image_id=image_id, start_id=start_id)


def write_pred_dir(folder: Path, names, preds, *, category: str = "nucleus") -> Path:
    """A 'morphoscope predict' output folder (NAME_labels.tif + predictions.json)."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for image_id, (name, (labels, scores)) in enumerate(zip(names, preds), start=1):
        tifffile.imwrite(folder / f"{name}_labels.tif", labels.astype(np.uint16),
                         compression="zlib")
        h, w = labels.shape
        images.append({"id": image_id, "file_name": f"{name}.tif", "width": w, "height": h})
        for a in label_results(labels, scores, image_id=image_id):
            anns.append({"id": len(anns) + 1, **a})
    data = {"info": {"model": "test"}, "images": images,
            "categories": [{"id": 1, "name": category}], "annotations": anns}
    (folder / "predictions.json").write_text(json.dumps(data))
    return folder
