"""Per-object measurements of 3D objects: volume, surface area, sphericity and equivalent
diameter of the objects of a label stack ``(Z, Y, X)``, in µm³ / µm² / µm with anisotropic voxels
(``pixel_size`` along X and Y, ``z_spacing`` along Z), plus position and intensities.

Every measurement is defined once, in :data:`morphoscope.morphology.definitions.MEASUREMENTS_3D`
(docs/volumes.md shows the table). The volume and equivalent diameter equal scikit-image's 3D
``regionprops`` (``area`` and ``equivalent_diameter_area`` with ``spacing``); the surface area is
scikit-image's marching cubes mesh (``marching_cubes`` + ``mesh_surface_area``) with the voxel
spacing.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import ndimage

from morphoscope.errors import InputError
from morphoscope.morphology.definitions import (
    INTENSITY,
    MEASUREMENTS_3D,
    POSITION_COLUMNS_3D,
    column_name,
)

SHAPE_3D = tuple(m.name for m in MEASUREMENTS_3D)


def check_label_stack(labels, *, path=None) -> np.ndarray:
    """``labels`` as a 3D ``(Z, Y, X)`` non-negative integer array, or :class:`InputError`."""
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"label stack must hold integers (0 = background, 1..N = objects), got dtype {arr.dtype}",
                         path=path)
    if arr.ndim != 3:
        raise InputError(f"label stack must be 3D (Z, Y, X), got shape {arr.shape}", path=path)
    if arr.size and arr.min() < 0:
        raise InputError("label stack has negative values", path=path)
    return arr


def voxel_spacing(pixel_size, z_spacing, *, path=None) -> tuple[float, float, float] | None:
    """``(dz, dy, dx)`` in µm when both sizes are known (positive numbers), else None (with a
    warning when only one is known: the objects are then measured in voxels)."""
    from morphoscope.morphology.measure import check_pixel_size

    px = check_pixel_size(pixel_size, path=path)
    dz = check_pixel_size(z_spacing, path=path)
    if px is None or dz is None:
        if (px is None) != (dz is None):
            warnings.warn(f"{'Z spacing' if dz is None else 'pixel size'} unknown: 3D objects are measured in "
                          "voxels, taken as cubes (give --pixel-size and --z-spacing)", stacklevel=3)
        return None
    return (dz, px, px)


def surface_area(mask: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> float:
    """Area of the marching-cubes mesh (level 0.5) around a 3D boolean mask padded by one voxel,
    with the voxel ``spacing`` (dz, dy, dx)."""
    from skimage.measure import marching_cubes, mesh_surface_area

    padded = np.pad(np.asarray(mask, np.float32), 1)
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=tuple(float(s) for s in spacing))
    return float(mesh_surface_area(verts, faces))


def sphericity(volume, area):
    """π^(1/3) (6V)^(2/3) / A (NaN where A is 0)."""
    v = np.asarray(volume, np.float64)
    a = np.asarray(area, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.pi ** (1 / 3) * (6 * v) ** (2 / 3) / a, np.nan)


def equivalent_diameter(volume):
    """(6V/π)^(1/3): the diameter of the ball of volume V."""
    return np.cbrt(6 * np.asarray(volume, np.float64) / np.pi)


def _check_volume_image(image, shape, *, path=None) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 4 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (3, 4) or img.shape[:3] != tuple(shape):
        raise InputError(f"intensity image has shape {img.shape}, but the label stack is {tuple(shape)} (Z, Y, X): "
                         "3D labels need the 3D image they were drawn on", path=path)
    if not np.issubdtype(img.dtype, np.number):
        raise InputError(f"intensity image has non-numeric dtype {img.dtype}", path=path)
    return img


def measure_volume(labels: np.ndarray, *, image: np.ndarray | None = None, pixel_size: float | None = None,
                   z_spacing: float | None = None, scores=None, classes=None, class_names=None,
                   image_name: str = "image", exclude_border: bool = False, path=None) -> pd.DataFrame:
    """Measure every 3D object of a label stack: one table row per object.

    ``labels`` (Z, Y, X): 0 = background, every other value one object. ``image`` (Z, Y, X) or
    (Z, Y, X, C): intensities (``intensity_*`` columns, ``_chN`` per channel). ``pixel_size``
    (X and Y) and ``z_spacing`` in µm: with both, ``volume_um3``, ``surface_area_um2``,
    ``equivalent_diameter_um``; otherwise the voxels are taken as cubes of side 1 (``_px3``,
    ``_px2``, ``_px``). ``scores`` / ``classes`` / ``class_names`` as in
    :func:`~morphoscope.morphology.measure_labels`. ``touches_border``: the object's bounding box
    reaches a face of the stack (top and bottom planes included); ``exclude_border`` drops those.

    Columns: ``image, label, class, [score], touches_border, [pixel_size_um, z_spacing_um],
    centroid_z, centroid_row, centroid_col, bbox_z_min, bbox_row_min, bbox_col_min, bbox_z_max,
    bbox_row_max, bbox_col_max`` (voxel coordinates, max exclusive), then the measurements
    (definitions: :data:`~morphoscope.morphology.definitions.MEASUREMENTS_3D`).
    """
    from morphoscope.morphology.measure import (
        _class_name,
        _intensity_from_seq,
        _lookup,
        empty_table,
    )

    labels = check_label_stack(labels, path=path)
    spacing = voxel_spacing(pixel_size, z_spacing, path=path)
    physical = spacing is not None
    sp = spacing or (1.0, 1.0, 1.0)
    img = None if image is None else _check_volume_image(image, labels.shape, path=path)
    n_ch = 0 if img is None else (1 if img.ndim == 3 else img.shape[3])
    inten = list(INTENSITY) if img is not None else []
    columns = ["image", "label", "class"] + (["score"] if scores is not None else []) + ["touches_border"]
    columns += (["pixel_size_um", "z_spacing_um"] if physical else []) + list(POSITION_COLUMNS_3D)
    columns += [column_name(m, physical=physical, volume=True) for m in SHAPE_3D]
    for p in inten:
        columns += [column_name(p)] if n_ch == 1 else [column_name(p, channel=c) for c in range(n_ch)]
    d, h, w = labels.shape
    info = {image_name: {"depth": d, "height": h, "width": w, "pixel_size_um": spacing[1] if physical else None,
                         "z_spacing_um": spacing[0] if physical else None, "group": None}}
    slices = ndimage.find_objects(labels)
    ids = np.array([k for k, s in enumerate(slices, start=1) if s is not None], np.int64)
    if len(ids) == 0:
        table = empty_table(columns)
        table.attrs["images"] = info
        return table
    voxel = float(np.prod(sp))
    rows = {c: np.zeros(len(ids)) for c in POSITION_COLUMNS_3D}
    counts = np.zeros(len(ids))
    areas = np.zeros(len(ids))
    for i, k in enumerate(ids):
        sl = slices[k - 1]
        crop = labels[sl] == k
        counts[i] = crop.sum()
        centre = np.array([ix.mean() for ix in np.nonzero(crop)]) + [s.start for s in sl]
        for a, name in enumerate(("z", "row", "col")):
            rows[f"centroid_{name}"][i] = centre[a]
            rows[f"bbox_{name}_min"][i] = sl[a].start
            rows[f"bbox_{name}_max"][i] = sl[a].stop
        areas[i] = surface_area(crop, sp)
    vol = counts * voxel
    data: dict[str, object] = {"image": [image_name] * len(ids), "label": ids,
                               "class": [_class_name(c, class_names) for c in _lookup(classes, ids, "class")]}
    if scores is not None:
        data["score"] = np.asarray(_lookup(scores, ids, "score"), dtype=np.float64)
    data["touches_border"] = ((rows["bbox_z_min"] == 0) | (rows["bbox_row_min"] == 0) | (rows["bbox_col_min"] == 0)
                              | (rows["bbox_z_max"] == d) | (rows["bbox_row_max"] == h) | (rows["bbox_col_max"] == w))
    if physical:
        data["pixel_size_um"] = np.full(len(ids), sp[1])
        data["z_spacing_um"] = np.full(len(ids), sp[0])
    for c in POSITION_COLUMNS_3D:
        data[c] = rows[c].astype(np.int64) if c.startswith("bbox_") else rows[c]
    values = {"volume": vol, "surface_area": areas, "sphericity": sphericity(vol, areas),
              "equivalent_diameter": equivalent_diameter(vol)}
    for m in SHAPE_3D:
        data[column_name(m, physical=physical, volume=True)] = values[m]
    if img is not None:
        lut = np.zeros(int(labels.max()) + 1, np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        seq = lut[labels].reshape(d * h, w)  # a 2D view with the stack's voxel order
        flat = img.reshape((d * h, w) + img.shape[3:])
        stats = _intensity_from_seq(seq, len(ids), flat, inten)
        for p in inten:
            if n_ch == 1:
                data[column_name(p)] = stats[p][:, 0]
            else:
                for c in range(n_ch):
                    data[column_name(p, channel=c)] = stats[p][:, c]
    table = pd.DataFrame(data, columns=columns)
    if exclude_border:
        table = table[~table["touches_border"]].reset_index(drop=True)
    table.attrs["images"] = info
    return table


def ball(radius: float, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A voxelised ball: the voxels whose centres lie within ``radius`` (µm) of the centre voxel's,
    on a grid of ``spacing`` (dz, dy, dx), with one empty voxel around it (for tests and docs)."""
    n = [math.ceil(radius / s) + 1 for s in spacing]
    z, y, x = np.ogrid[-n[0]:n[0] + 1, -n[1]:n[1] + 1, -n[2]:n[2] + 1]
    return (z * spacing[0]) ** 2 + (y * spacing[1]) ** 2 + (x * spacing[2]) ** 2 <= radius ** 2
