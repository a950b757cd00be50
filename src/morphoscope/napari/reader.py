"""napari reader: a prediction folder of ``morphoscope predict`` (or ``NAME_labels.tif`` inside
one) -> the input image when it can be found, one Labels layer per class and the measurements.

* Objects come from ``predictions.json`` (COCO RLE per object, ``label`` = its value in
  ``NAME_labels.tif``), so every object is whole even where objects overlap; each class gets its
  own Labels layer named ``NAME <class>``.
* ``measurements.csv`` (``--measure``) becomes each layer's ``features`` (keyed by label): napari
  shows an object's measurements under the pointer.
* Scale comes from ``NAME_labels.tif``'s pixel size (µm) and, for stacks, z spacing.
* The input image (``file_name`` in predictions.json) is looked for in the folder, beside it and
  in the folders beside it; when found it is added below the labels.

A folder opens every image in it; ``NAME_labels.tif`` (or ``NAME_labels_by_class.tif``) opens
that image only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PREDICTIONS_JSON = "predictions.json"
MEASUREMENTS_CSV = "measurements.csv"
LABELS_SUFFIX = "_labels.tif"
BY_CLASS_SUFFIX = "_labels_by_class.tif"  # multi-class models: one label plane per class


def prediction_target(path) -> tuple[Path, str | None] | None:
    """``(folder, NAME or None for all)`` when ``path`` is a prediction folder or a
    ``NAME_labels.tif`` (or ``NAME_labels_by_class.tif``) inside one; else None."""
    p = Path(path)
    if p.is_dir() and (p / PREDICTIONS_JSON).is_file():
        return p, None
    if p.is_file() and (p.parent / PREDICTIONS_JSON).is_file():
        for suffix in (BY_CLASS_SUFFIX, LABELS_SUFFIX):
            if p.name.endswith(suffix) and (p.parent / f"{p.name[: -len(suffix)]}{LABELS_SUFFIX}").is_file():
                return p.parent, p.name[: -len(suffix)]
    return None


def get_reader(path):
    """npe2 reader contribution: a reader function for a prediction folder or a label TIFF in
    one, None for anything else (napari then asks other readers)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if prediction_target(path) is None:
        return None
    return read_prediction


def read_prediction(path) -> list[tuple]:
    """Layer data tuples of a prediction folder (every image) or of one ``NAME_labels.tif``."""
    if isinstance(path, (list, tuple)):
        return [layer for p in path for layer in read_prediction(p)]
    target = prediction_target(path)
    if target is None:
        raise ValueError(f"{path} is not a morphoscope prediction folder or a NAME_labels.tif in one")
    folder, only = target
    data = json.loads((folder / PREDICTIONS_JSON).read_text())
    names = [only] if only else sorted(p.name[: -len(LABELS_SUFFIX)] for p in folder.glob(f"*{LABELS_SUFFIX}"))
    table = _read_measurements(folder)
    layers = []
    for name in names:
        layers += image_layers(folder, name, data, table)
    return layers


def image_layers(folder: Path, name: str, data: dict, table=None) -> list[tuple]:
    """The layers of input ``name``: its image (if found) and one Labels layer per class."""
    from morphoscope.io.metadata import read_metadata
    from morphoscope.napari.layers import class_layers

    labels_path = folder / f"{name}{LABELS_SUFFIX}"
    meta = read_metadata(labels_path)
    plane_axes = meta.plane_axes
    shape = tuple(meta.shape[meta.axes.index(a)] for a in plane_axes + "YX")
    entries = _entries_of(folder, name, data)
    anns = {}
    for a in data.get("annotations", []):
        anns.setdefault(a["image_id"], []).append(a)
    planes = [_plane_objects(entry, anns.get(entry["id"], []), plane_axes) for entry in entries]
    class_names = [c["name"] for c in sorted(data.get("categories", []), key=lambda c: c["id"])]
    rows = table[table["image"].astype(str) == name] if table is not None and "image" in table else None
    sizes = {"pixel_size": meta.pixel_size, "z_spacing": meta.z_spacing, "time_interval": meta.time_interval}
    layers = class_layers(name, planes, class_names, shape=shape, table=rows, plane_axes=plane_axes,
                          metadata={"morphoscope_folder": str(folder), "image": name}, **sizes)
    image = _find_input(folder, entries[0]["file_name"]) if entries and entries[0].get("file_name") else None
    if image is not None:
        layer = _image_layer(image, name, shape, **sizes)
        if layer is not None:
            layers.insert(0, layer)
    return layers


def _entries_of(folder: Path, name: str, data: dict) -> list[dict]:
    """The predictions.json image entries (one per plane) of input ``name``: those whose file
    name has ``name`` as its stem (how predict names its outputs), else the input's record."""
    images = data.get("images", [])
    entries = [im for im in images if Path(str(im.get("file_name", ""))).stem == name]
    if not entries:
        from urllib.parse import quote

        record = folder / ".morphoscope" / f"{quote(name, safe='')}.json"
        if record.is_file():
            files = {im["entry"]["file_name"] for im in json.loads(record.read_text()).get("images", [])}
            entries = [im for im in images if im.get("file_name") in files]
    if not entries and len(images) == 1:
        entries = images
    return entries


def _plane_objects(entry: dict, annotations: list[dict], plane_axes: str):
    """The objects of one predictions.json image entry (decoded from their RLE, cut to their
    boxes), with their labels."""
    from pycocotools import mask as mask_utils

    from morphoscope.engine.objects import Objects
    from morphoscope.napari.layers import PlaneObjects

    h, w = int(entry["height"]), int(entry["width"])
    crops, origins, scores, classes, labels = [], [], [], [], []
    for a in sorted(annotations, key=lambda a: a["label"]):
        rle = a["segmentation"]
        mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)
        x, y, bw, bh = (round(v) for v in a["bbox"])
        crops.append(np.ascontiguousarray(mask[y:y + max(bh, 1), x:x + max(bw, 1)]))
        origins.append((y, x))
        scores.append(float(a.get("score", 1.0)))
        classes.append(int(a["category_id"]))
        labels.append(int(a["label"]))
    plane = entry.get("plane") or {}
    index = tuple(int(plane.get(a, 0)) for a in plane_axes)
    objects = Objects((h, w), crops, np.asarray(origins, np.int64).reshape(-1, 2), scores, classes)
    return PlaneObjects(index, objects, np.asarray(labels, np.int64))


def _read_measurements(folder: Path):
    path = folder / MEASUREMENTS_CSV
    if not path.is_file():
        return None
    from morphoscope.morphology import read_table

    return read_table(path)


def _find_input(folder: Path, file_name: str) -> Path | None:
    """The input image ``file_name``: in the prediction folder, beside it, or in a folder beside
    it (the usual ``images/`` and ``predictions/`` layout)."""
    name = Path(file_name).name
    places = [folder, folder.parent]
    try:
        places += sorted(d for d in folder.parent.iterdir() if d.is_dir() and d != folder)
    except OSError:
        pass
    for place in places:
        candidate = place / name
        if candidate.is_file():
            return candidate
    return None


def _image_layer(path: Path, name: str, shape, *, pixel_size=None, z_spacing=None, time_interval=None):
    """The input image as an Image layer of the labels' geometry (None when it does not fit)."""
    from morphoscope.errors import MorphoscopeError
    from morphoscope.io.metadata import read_metadata
    from morphoscope.io.stacks import read_stack
    from morphoscope.napari.layers import physical_scale

    try:
        rgb = read_metadata(path).is_rgb
        stack = read_stack(path)
    except (MorphoscopeError, OSError, ValueError):  # an image we cannot read is not shown
        return None
    planes = stack.plane_axes
    order = [stack.axes.index(a) for a in planes + "YX"]
    if "C" in stack.axes:
        order.append(stack.axes.index("C"))
    data = np.transpose(stack.data, order)
    if tuple(data.shape[: len(shape)]) != tuple(shape):
        return None
    scale, units = physical_scale(planes, pixel_size=pixel_size or stack.pixel_size,
                                  z_spacing=z_spacing or stack.z_spacing,
                                  time_interval=time_interval or stack.time_interval)
    kwargs = {"name": name, "scale": scale, "units": units, "metadata": {"path": str(path)}}
    if "C" in stack.axes and not rgb:
        data = np.moveaxis(data, -1, 0)
        kwargs["channel_axis"] = 0
    elif rgb:
        kwargs["rgb"] = True
    else:  # microscopy images rarely fill their type's range: show the 0.5-99.8 percentiles
        step = max(1, int(np.sqrt(data.size / 4_000_000)))
        lo, hi = (float(v) for v in np.percentile(data[..., ::step, ::step], [0.5, 99.8]))
        if hi > lo:
            kwargs["contrast_limits"] = (lo, hi)
    return data, kwargs, "image"
