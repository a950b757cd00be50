"""Writing instance predictions: label TIFF, per-class masks, overlay PNG and COCO JSON (see
docs/outputs.md). Every file goes through an atomic rename."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from morphoscope.formats.coco import masks_to_coco_annotations
from morphoscope.io.atomic import atomic_write
from morphoscope.io.images import to_display_rgb, write_label_tiff, write_png

# Class colours (Okabe-Ito, colour-blind safe); class k uses PALETTE[(k-1) % len]
PALETTE = np.array([(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                    (213, 94, 0), (204, 121, 167), (255, 255, 255)], np.uint8)


def safe_class_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def output_paths(out_dir: Path, name: str, class_names) -> list[Path]:
    return ([out_dir / f"{name}_labels.tif", out_dir / f"{name}_overlay.png"]
            + [out_dir / f"{name}_{safe_class_name(c)}.png" for c in class_names])


def overlay(image: np.ndarray, labels: np.ndarray, label_classes: np.ndarray) -> np.ndarray:
    """RGB image with each object's outline (inner boundary) in its class colour.

    ``label_classes[k]`` is the class of label ``k`` (index 0 unused).
    """
    from skimage.segmentation import find_boundaries

    rgb = to_display_rgb(image)
    edges = find_boundaries(labels, mode="inner")
    cls = label_classes[labels[edges]]
    rgb[edges] = PALETTE[(cls - 1) % len(PALETTE)]
    return rgb


def write_instance_outputs(out_dir: Path, name: str, image: np.ndarray, labels: np.ndarray,
                           label_classes: np.ndarray, class_names, *, overwrite: bool = False) -> None:
    """Label TIFF, overlay PNG and one 0/255 mask PNG per class for one image."""
    write_label_tiff(out_dir / f"{name}_labels.tif", labels, overwrite=overwrite)
    write_png(out_dir / f"{name}_overlay.png", overlay(image, labels, label_classes), overwrite=overwrite)
    per_pixel_class = label_classes[labels]
    for k, cname in enumerate(class_names, start=1):
        mask = ((per_pixel_class == k) & (labels > 0)).astype(np.uint8) * 255
        write_png(out_dir / f"{name}_{safe_class_name(cname)}.png", mask, overwrite=overwrite)


def coco_annotations_from_labels(labels: np.ndarray, label_classes: np.ndarray, scores: np.ndarray,
                                 *, image_id: int, start_id: int) -> list[dict]:
    """COCO result annotations (RLE, score, label) for labels 1..N of one image."""
    n = int(labels.max(initial=0))
    anns = []
    if n:
        from scipy import ndimage

        slices = ndimage.find_objects(labels)
        mask = np.zeros(labels.shape, np.uint8)
        for k in range(1, n + 1):
            sl = slices[k - 1]
            if sl is None:
                continue
            mask[sl] = labels[sl] == k
            ann = masks_to_coco_annotations(mask[None], [int(label_classes[k])], image_id=image_id,
                                            scores=[float(scores[k])])[0]
            mask[sl] = 0
            ann["id"] = start_id + len(anns)
            ann["label"] = k
            anns.append(ann)
    return anns


def write_predictions_json(path: Path, images: list[dict], annotations: list[dict], class_names,
                           info: dict, *, overwrite: bool = False) -> None:
    data = {"info": info, "images": images,
            "categories": [{"id": k, "name": c} for k, c in enumerate(class_names, start=1)],
            "annotations": annotations}
    with atomic_write(path, overwrite=overwrite, mode="w") as fh:
        json.dump(data, fh)
