"""Test data of the report tests: a prediction folder (docs/outputs.md) made from annotated
label images -- some objects dropped, some eroded, false ones added, scores higher for the true
objects -- with overlays, and the matching GT folder. Uses real BBBC039 images when
../shared/data is present, else drawn shapes. (Uniquely named, not conftest, so that test files
can import it.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BBBC_TRAIN = DATA / "bbbc039" / "training"


def perturb(labels: np.ndarray, rng) -> tuple[np.ndarray, dict[int, float]]:
    out = np.zeros(labels.shape, np.uint16)
    boxes = ndi.find_objects(labels)
    objs, true = [], []
    for v, sl in enumerate(boxes, start=1):
        if sl is None or rng.random() < 0.1:
            continue
        m = labels[sl] == v
        if rng.random() < 0.3:
            m = ndi.binary_erosion(m, iterations=3)
            if not m.any():
                continue
        objs.append((sl, m))
        true.append(True)
    free = ndi.binary_erosion(labels == 0, np.ones((9, 9)))
    spots = np.argwhere(free)
    for y, x in spots[rng.choice(len(spots), min(len(spots), 8), replace=False)]:
        objs.append(((slice(y - 3, y + 4), slice(x - 3, x + 4)), np.ones((7, 7), bool)))
        true.append(False)
    scores = [float(rng.uniform(0.45, 1.0) if t else rng.uniform(0.05, 0.6)) for t in true]
    order = np.argsort(scores)[::-1]  # label 1 = highest score
    out_scores = {}
    for label, i in enumerate(order, start=1):
        sl, m = objs[i]
        region = out[sl]
        region[m & (region == 0)] = label
        out_scores[label] = scores[i]
    present = set(np.unique(out).tolist()) - {0}
    return out, {k: s for k, s in out_scores.items() if k in present}


def make_data(root: Path, *, n_images: int = 3, seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/gt`` (images/ + labels/) and ``root/pred`` (a prediction folder)."""
    import tifffile
    from PIL import Image
    from skimage.segmentation import find_boundaries

    from morphoscope.formats.coco import masks_to_coco_annotations
    from morphoscope.io.images import read_image, read_label_image, to_display_rgb
    from morphoscope.morphology.synthetic import random_shapes_labels

    rng = np.random.default_rng(seed)
    gt, pred = root / "gt", root / "pred"
    for d in (gt / "images", gt / "labels", pred):
        d.mkdir(parents=True, exist_ok=True)
    samples = []
    if (BBBC_TRAIN / "labels").is_dir():
        for p in sorted((BBBC_TRAIN / "labels").glob("*.png"))[1:1 + 7 * n_images:7]:
            samples.append((p.stem, read_label_image(p),
                            read_image(BBBC_TRAIN / "images" / f"{p.stem}.tif")))
    else:
        for i in range(n_images):
            lab = random_shapes_labels((160, 200), cell=20, seed=i).astype(np.uint16)
            img = (ndi.gaussian_filter((lab > 0).astype(float), 1.5) * 3000
                   + rng.normal(300, 30, lab.shape)).astype(np.uint16)
            samples.append((f"img{i}", lab, img))
    images, anns = [], []
    for image_id, (name, lab, img) in enumerate(samples, start=1):
        tifffile.imwrite(gt / "images" / f"{name}.tif", img)
        Image.fromarray(lab.astype(np.uint16)).save(gt / "labels" / f"{name}.png")
        p_lab, scores = perturb(lab, rng)
        tifffile.imwrite(pred / f"{name}_labels.tif", p_lab, compression="zlib")
        rgb = to_display_rgb(img)
        rgb[find_boundaries(p_lab, mode="inner")] = (255, 200, 0)
        Image.fromarray(rgb).save(pred / f"{name}_overlay.png")
        h, w = lab.shape
        images.append({"id": image_id, "file_name": f"{name}.tif", "width": w, "height": h})
        ids = [int(v) for v in np.unique(p_lab) if v]
        res = masks_to_coco_annotations((p_lab == v for v in ids), [1] * len(ids),
                                        image_id=image_id, scores=[scores[v] for v in ids])
        for a, v in zip(res, ids):
            anns.append({"id": len(anns) + 1, **a, "label": v})
    info = {"model": "test-model", "score_threshold": 0.05, "device": "cpu",
            "morphoscope": "test"}
    (pred / "predictions.json").write_text(json.dumps(
        {"info": info, "images": images, "categories": [{"id": 1, "name": "nucleus"}],
         "annotations": anns}))
    return pred, gt
