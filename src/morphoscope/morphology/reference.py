"""The measurements computed by scikit-image ``regionprops_table``, one object at a time: the
reference the fast path (:mod:`morphoscope.morphology.shape`) is tested and benchmarked against.

Measurements regionprops lacks are derived from regionprops columns with the same formulas as
the fast path (circularity, aspect ratio, anisotropy), or computed here independently of the
fast path (minimum Feret diameter: rotating an edge of the convex hull of regionprops' own
Feret outline).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from morphoscope.morphology.definitions import INTENSITY, SHAPE

_RP = {
    "area": "area", "perimeter": "perimeter", "eccentricity": "eccentricity",
    "axis_major_length": "axis_major_length", "axis_minor_length": "axis_minor_length",
    "solidity": "solidity", "area_convex": "area_convex", "extent": "extent",
    "equivalent_diameter": "equivalent_diameter_area",
    "feret_diameter_max": "feret_diameter_max", "orientation": "orientation",
}
_DERIVED = {
    "circularity": ("area", "perimeter"),
    "aspect_ratio": ("axis_major_length", "axis_minor_length"),
    "anisotropy": ("axis_major_length", "axis_minor_length"),
}


def feret_diameter_min(region_mask: np.ndarray) -> float:
    """Smallest caliper width of the outline regionprops uses for ``feret_diameter_max``
    (marching-squares contour at level 0.5 of the padded convex hull image)."""
    from scipy.spatial import ConvexHull
    from skimage.measure import find_contours
    from skimage.morphology import convex_hull_image

    hull_image = np.pad(convex_hull_image(region_mask), 2)
    pts = np.unique(np.vstack(find_contours(hull_image, 0.5, fully_connected="high")), axis=0)
    verts = pts[ConvexHull(pts).vertices]
    edges = np.roll(verts, -1, axis=0) - verts
    rel = verts[None, :, :] - verts[:, None, :]  # rel[i, j] = v_j - v_i
    cross = np.abs(edges[:, None, 0] * rel[:, :, 1] - edges[:, None, 1] * rel[:, :, 0])
    return float((cross.max(axis=1) / np.hypot(edges[:, 0], edges[:, 1])).min())


def regionprops_measurements(labels: np.ndarray, *, properties: Iterable[str] = SHAPE) -> dict:
    """Same output as :func:`morphoscope.morphology.measure.shape_measurements`, by
    ``skimage.measure.regionprops_table``."""
    from skimage.measure import regionprops_table

    from morphoscope.morphology.measure import anisotropy, aspect_ratio, circularity

    props = list(properties)
    base = set(p for p in props if p in _RP)
    for p in props:
        base.update(_DERIVED.get(p, ()))
    rp_names = ["label", "bbox", "centroid"] + sorted(_RP[p] for p in base)
    extra = [feret_diameter_min] if "feret_diameter_min" in props else []
    labels = np.asarray(labels)
    if not labels.any():
        out = {"label": np.zeros(0, np.int64)}
        for c in ("centroid_row", "centroid_col"):
            out[c] = np.zeros(0)
        for c in ("bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max"):
            out[c] = np.zeros(0, np.int64)
        out.update({p: np.zeros(0) for p in props})
        return out
    # regionprops allocates per label value up to the largest: number the objects 1..n first
    from morphoscope.morphology.shape import sequential_labels

    seq, ids = sequential_labels(labels)
    t = regionprops_table(seq, properties=rp_names, extra_properties=extra)
    out = {
        "label": ids[np.asarray(t["label"], np.int64) - 1],
        "centroid_row": t["centroid-0"], "centroid_col": t["centroid-1"],
        "bbox_row_min": t["bbox-0"], "bbox_col_min": t["bbox-1"],
        "bbox_row_max": t["bbox-2"], "bbox_col_max": t["bbox-3"],
    }
    raw = {p: np.asarray(t[_RP[p]], np.float64) for p in base}
    for p in props:
        if p == "circularity":
            out[p] = circularity(raw["area"], raw["perimeter"])
        elif p == "aspect_ratio":
            out[p] = aspect_ratio(raw["axis_major_length"], raw["axis_minor_length"])
        elif p == "anisotropy":
            out[p] = anisotropy(raw["axis_major_length"], raw["axis_minor_length"])
        elif p == "orientation":
            out[p] = np.degrees(raw[p])
        elif p == "feret_diameter_min":
            out[p] = np.asarray(t["feret_diameter_min"], np.float64)
        else:
            out[p] = raw[p]
    return out


def _integrated(region_mask, intensity):
    return np.sum(intensity[region_mask], axis=0, dtype=np.float64)


def regionprops_intensity(labels: np.ndarray, image: np.ndarray, *,
                          properties: Iterable[str] = INTENSITY) -> dict:
    """Intensity statistics by regionprops: ``{name: (n_objects, n_channels)}``."""
    from skimage.measure import regionprops_table

    props = list(properties)
    n_ch = 1 if image.ndim == 2 else image.shape[2]
    rp = [p for p in props if p != "intensity_integrated"]
    extra = [_integrated] if "intensity_integrated" in props else []
    if not np.asarray(labels).any():
        return {p: np.zeros((0, n_ch)) for p in props}
    from morphoscope.morphology.shape import sequential_labels

    t = regionprops_table(sequential_labels(labels)[0], intensity_image=image,
                          properties=["label"] + rp,
                          extra_properties=extra)
    out = {}
    for p in props:
        key = "_integrated" if p == "intensity_integrated" else p
        if n_ch == 1:
            out[p] = np.asarray(t[key], np.float64)[:, None]
        else:
            out[p] = np.stack([np.asarray(t[f"{key}-{c}"], np.float64) for c in range(n_ch)], 1)
    return out
