"""Shared data of the interop tests: the bundled sample, its pixel size, export items built
from label images, and rasterising what the reading libraries give back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SAMPLE = "IXMtest_G13_s9"  # 73 nuclei, the smallest bundled sample
PIXEL_SIZE = 0.325  # µm, given on the command line (the bundled TIFFs carry none)
HERE = Path(__file__).parent


def export_item(out, name, planes, *, class_names=("nucleus",), pixel_size=PIXEL_SIZE, image=None,
                plane_axes="", z_spacing=None, measure=True):
    """An ``ExportItem`` of ``planes`` (``[(index dict, Objects)]``; objects in label order) as
    the prediction writer builds it, with the measurement table the writer makes."""
    from morphoscope.engine.writer import (
        ExportItem,
        ExportPlane,
        InputFile,
        label_arrays,
    )
    from morphoscope.morphology import concat_tables, measure_labels

    export_planes, tables, offset = [], [], 0
    for index, objects in planes:  # as OutputFolder._objects numbers them
        labels, classes, scores, kept = label_arrays(objects, by_class=len(class_names) > 1)
        export_planes.append(ExportPlane(dict(index), labels, objects.select(kept), offset))
        n = len(kept)
        table = measure_labels(labels, image=image, pixel_size=pixel_size, image_name=name,
                               scores={k: float(scores[k]) for k in range(1, n + 1)},
                               classes={k: int(classes[k]) for k in range(1, n + 1)}, class_names=list(class_names))
        for a, i in reversed(list(index.items())):
            table.insert(1, a.lower(), int(i))
        tables.append(table)
        offset += n
    plane_shape = tuple(max(i[a] for i, _ in planes) + 1 for a in plane_axes)
    item = InputFile(name=name, path=None, plane_axes=plane_axes, plane_shape=plane_shape,
                     axes=plane_axes + "YX", pixel_size=pixel_size, z_spacing=z_spacing, file_name=f"{name}.tif")
    return ExportItem(Path(out), item, list(class_names), export_planes, pixel_size=pixel_size,
                      table=concat_tables(tables) if measure else None)


def ground_truth_item(samples_dir, out):
    """The sample's ground-truth labels as an export item; returns ``(item, labels)``."""
    from skimage.io import imread

    from morphoscope.engine.objects import Objects

    labels = imread(samples_dir / "labels" / f"{SAMPLE}.png")
    image = imread(samples_dir / "images" / f"{SAMPLE}.tif")
    objects = Objects.from_labels(labels)  # equal scores: label order
    return export_item(out, SAMPLE, [({}, objects)], image=image), labels


def coco_masks(folder) -> dict[int, np.ndarray]:
    """{label: whole mask} of every object in a prediction folder's predictions.json."""
    from pycocotools import mask as mask_utils

    data = json.loads((Path(folder) / "predictions.json").read_text())
    masks = {}
    for a in data["annotations"]:
        rle = a["segmentation"]
        masks[a["label"]] = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    return masks


def fill(geometry, shape) -> np.ndarray:
    """Pixels of an image of ``shape`` whose centres lie inside ``geometry`` (shapely, image
    coordinates): how ImageJ and QuPath fill an outline."""
    import shapely

    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return shapely.contains_xy(geometry, cols + 0.5, rows + 0.5)


def roi_geometry(roi):
    """A roifile ImagejRoi as a shapely geometry: a polygon, or for a composite ROI its
    sub-paths combined by the even-odd rule (Java's shape filling)."""
    import shapely

    geometry = shapely.Polygon()
    for coords in roi.coordinates(multi=True):
        geometry = shapely.symmetric_difference(geometry, shapely.Polygon(np.asarray(coords, float)))
    return geometry


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
