"""Objects -> napari layer data: one Labels layer per class (so objects of different classes that
overlap both survive), each object painted with its label (its value in ``NAME_labels.tif``),
and the measurements of the class's objects as the layer's ``features`` table (napari maps rows
to labels through its ``index`` column)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PlaneObjects:
    """The objects of one plane: ``index`` into the stack's plane axes (``()`` for a 2D image),
    ``objects`` (an engine ``Objects``, highest score first) and each object's label."""

    index: tuple
    objects: object
    labels: np.ndarray


def physical_scale(plane_axes: str, *, pixel_size=None, z_spacing=None, time_interval=None):
    """napari ``scale`` and ``units`` for axes ``plane_axes + "YX"`` (1 and ``pixel`` where a
    size is unknown)."""
    scale, units = [], []
    for a in plane_axes:
        size = {"Z": z_spacing, "T": time_interval}.get(a)
        scale.append(float(size) if size else 1.0)
        units.append(("second" if a == "T" else "micrometer") if size else "pixel")
    for _ in "YX":
        scale.append(float(pixel_size) if pixel_size else 1.0)
        units.append("micrometer" if pixel_size else "pixel")
    return tuple(scale), tuple(units)


def class_layers(name: str, planes: list[PlaneObjects], class_names, *, shape, table=None,
                 plane_axes: str = "", pixel_size=None, z_spacing=None, time_interval=None,
                 metadata: dict | None = None) -> list[tuple]:
    """Layer data tuples ``(labels, kwargs, "labels")``, one per class of ``class_names`` that
    has objects (every class when none has any). ``shape`` is the stack's plane shape plus
    ``(Y, X)``. ``table`` (a measurement table: per-plane ``label`` and lower-case plane columns)
    becomes each layer's features, keyed by the objects' labels."""
    top = max((int(p.labels.max()) for p in planes if len(p.labels)), default=0)
    dtype = np.uint16 if top < 65535 else np.uint32
    scale, units = physical_scale(plane_axes, pixel_size=pixel_size, z_spacing=z_spacing,
                                  time_interval=time_interval)
    present = sorted({int(c) for p in planes for c in np.asarray(p.objects.classes)})
    classes = present or list(range(1, len(class_names) + 1))
    features = _features_by_class(table, planes, plane_axes, class_names)
    layers = []
    for k in classes:
        class_name = class_names[k - 1] if 1 <= k <= len(class_names) else str(k)
        data = np.zeros(tuple(shape), dtype)
        for p in planes:
            canvas = data[p.index] if p.index else data
            objs = p.objects
            for i in np.flatnonzero(np.asarray(objs.classes) == k):  # highest score first keeps overlaps
                crop, origin = objs.crops[i], objs.origins[i]
                window = canvas[origin[0]:origin[0] + crop.shape[0], origin[1]:origin[1] + crop.shape[1]]
                window[crop & (window == 0)] = p.labels[i]
        kwargs = {"name": f"{name} {class_name}" if name else class_name, "scale": scale, "units": units,
                  "metadata": {**(metadata or {}), "class": class_name}}
        if k in features:
            kwargs["features"] = features[k]
        layers.append((data, kwargs, "labels"))
    return layers


def _features_by_class(table, planes, plane_axes, class_names) -> dict:
    """{class id: features DataFrame with an ``index`` column holding the labels}."""
    if table is None or len(table) == 0:
        return {}
    lookup = {}  # (plane index, per-plane label) -> (label, class id)
    for p in planes:
        offset = int(p.labels.min()) - 1 if len(p.labels) else 0  # labels of a plane run offset+1..
        for i, label in enumerate(p.labels):
            lookup[(tuple(int(v) for v in p.index), int(label) - offset)] = (int(label), int(p.objects.classes[i]))
    plane_cols = [a.lower() for a in plane_axes]
    rows, keep = [], []
    for r, row in enumerate(table.to_dict("records")):
        index = tuple(int(row[c]) for c in plane_cols)
        hit = lookup.get((index, int(row["label"])))
        if hit is not None:
            rows.append(hit)
            keep.append(r)
    if not rows:
        return {}
    part = table.iloc[keep].reset_index(drop=True).copy()
    part.insert(0, "index", [label for label, _ in rows])
    if plane_cols:  # the table numbers each plane's objects from 1; the layer holds the stack's labels
        part["label_in_plane"] = part["label"]
        part["label"] = part["index"]
    classes = np.asarray([k for _, k in rows])
    return {int(k): part[classes == k].reset_index(drop=True) for k in np.unique(classes)}
