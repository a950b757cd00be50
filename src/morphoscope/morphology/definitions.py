"""The one definition of every per-object measurement: formula, range, unit and the scikit-image
``regionprops`` property it equals. ``docs/morphology.md`` and the docstring of
:func:`morphoscope.morphology.measure_labels` show this table; tests check that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    """One measurement.

    ``kind`` sets the unit: ``"area"`` (px² or µm²), ``"length"`` (px or µm), ``"angle"``
    (degrees), ``"ratio"`` (no unit) or ``"intensity"`` (the image's own values).
    """

    name: str
    kind: str
    formula: str
    range: str
    regionprops: str
    notes: str = ""


# A = area (pixels), P = perimeter, λ1 >= λ2 = eigenvalues of the inertia tensor
# [[μ02, -μ11], [-μ11, μ20]] / A of the object's pixels (μpq = central moments in pixels).
MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(
        "area", "area",
        "A = number of object pixels × pixel area (pixels of holes are not counted)",
        "≥ 1 px²", "area"),
    Measurement(
        "perimeter", "length",
        "P = Σ over border pixels of a weight set by the pattern of border pixels among the 8 "
        "neighbours: 1 (straight), √2 (diagonal) or (1 + √2)/2 (corner) -- the Benkrid-Crookes "
        "estimator; a border pixel is an object pixel with a 4-neighbour outside the object",
        "≥ 0; 0 for objects of 1 or 2 pixels",
        "perimeter (skimage.measure.perimeter(mask, neighborhood=4))",
        "The length runs through the centres of the border pixels, holes' outlines included."),
    Measurement(
        "circularity", "ratio",
        "min(1, 4πA / P²), with P the perimeter above",
        "(0, 1]; NaN when P = 0 (objects of 1 or 2 pixels)",
        "none (ImageJ's 'Circ.'; regionprops has no circularity)",
        "Clipped at 1 as ImageJ does: for small objects 4πA/P² exceeds 1 because P runs "
        "through pixel centres while A counts whole pixels."),
    Measurement(
        "eccentricity", "ratio",
        "e = √(1 − λ2/λ1): eccentricity of the ellipse with the object's second moments",
        "[0, 1]; 0 for a disc and for a single pixel, 1 for a straight line of pixels",
        "eccentricity"),
    Measurement(
        "axis_major_length", "length",
        "4√λ1: major axis of the ellipse with the object's second moments",
        "≥ 0", "axis_major_length"),
    Measurement(
        "axis_minor_length", "length",
        "4√λ2: minor axis of that ellipse",
        "[0, axis_major_length]", "axis_minor_length"),
    Measurement(
        "aspect_ratio", "ratio",
        "axis_major_length / axis_minor_length",
        "≥ 1; inf for a straight line of pixels (minor axis 0); NaN for a single pixel",
        "none (ratio of axis_major_length and axis_minor_length)"),
    Measurement(
        "anisotropy", "ratio",
        "1 − axis_minor_length / axis_major_length = 1 − √(λ2/λ1)",
        "[0, 1]: 0 for a disc, 1 for a straight line of pixels; NaN for a single pixel",
        "none (from axis_minor_length and axis_major_length)",
        "The ellipse-axis anisotropy (also called elongation). Other tools use "
        "(major − minor)/(major + minor) = a/(2 − a) for this anisotropy a, or "
        "(λ1 − λ2)/(λ1 + λ2); convert with these formulas before comparing."),
    Measurement(
        "solidity", "ratio",
        "A / A_convex",
        "(0, 1]; 1 for convex objects", "solidity"),
    Measurement(
        "area_convex", "area",
        "A_convex = number of pixel centres inside or on the convex hull of the midpoints of "
        "the object pixels' edges (the convex hull image) × pixel area",
        "≥ A", "area_convex"),
    Measurement(
        "extent", "ratio",
        "A / area of the bounding box",
        "(0, 1]", "extent"),
    Measurement(
        "equivalent_diameter", "length",
        "√(4A/π): diameter of the disc with the same area",
        "> 0", "equivalent_diameter_area"),
    Measurement(
        "feret_diameter_max", "length",
        "largest distance between two points of the outline of the convex hull image (the "
        "midpoints of the edges between hull and non-hull pixels)",
        "≥ 1 px", "feret_diameter_max"),
    Measurement(
        "feret_diameter_min", "length",
        "smallest width (caliper distance) of the convex polygon through the same outline points",
        "(0, feret_diameter_max]; √2/2 px for a single pixel, 1 px for a one-pixel-wide line",
        "none (same outline as feret_diameter_max)"),
    Measurement(
        "orientation", "angle",
        "½·atan2(2μ11, μ20 − μ02) in degrees: angle from the image's vertical axis (rows, "
        "pointing down) to the major axis, counter-clockwise as displayed",
        "[−90, 90]: 0 = vertical, ±90 = horizontal, +45 = top-left to bottom-right, −45 = "
        "bottom-left to top-right; ±45 when μ20 = μ02",
        "orientation (in radians)"),
    Measurement(
        "intensity_mean", "intensity",
        "mean of the image values over the object's pixels",
        "image value range", "intensity_mean"),
    Measurement(
        "intensity_median", "intensity",
        "median of the image values over the object's pixels (mean of the two middle values "
        "for an even count)",
        "image value range", "intensity_median"),
    Measurement(
        "intensity_integrated", "intensity",
        "sum of the image values over the object's pixels (= intensity_mean × A in pixels)",
        "≥ 0 for non-negative images", "none (sum of image_intensity over the object)"),
    Measurement(
        "intensity_std", "intensity",
        "population standard deviation (ddof = 0) of the image values over the object's pixels",
        "≥ 0", "intensity_std"),
    Measurement(
        "intensity_min", "intensity", "smallest image value over the object's pixels",
        "image value range", "intensity_min"),
    Measurement(
        "intensity_max", "intensity", "largest image value over the object's pixels",
        "image value range", "intensity_max"),
)

BY_NAME: dict[str, Measurement] = {m.name: m for m in MEASUREMENTS}

# 3D objects of label stacks (Z, Y, X) with voxels of dz x dy x dx (µm; dy = dx = the pixel size,
# dz = the Z spacing): V = number of object voxels x dz·dy·dx, A = the surface area below.
# Measured by morphoscope.morphology.volume (docs/volumes.md shows this table).
MEASUREMENTS_3D: tuple[Measurement, ...] = (
    Measurement(
        "volume", "volume",
        "V = number of object voxels × voxel volume dz·dy·dx (voxels of holes are not counted)",
        "≥ 1 voxel", "area (3D, with spacing=(dz, dy, dx): the same number)"),
    Measurement(
        "surface_area", "area",
        "A = area of the triangle mesh that marching cubes (skimage.measure.marching_cubes, Lewiner, "
        "level 0.5, spacing (dz, dy, dx)) puts around the object's voxel mask padded by one voxel "
        "(skimage.measure.mesh_surface_area)",
        "> 0", "none (regionprops has no surface area)",
        "Marching cubes on a binary mask overestimates a smooth surface: the A of a voxelised ball "
        "of radius 10-40 pixels is 8-9% above 4πr² with cubic voxels and 11-13% with voxels 2.2× "
        "longer in Z."),
    Measurement(
        "sphericity", "ratio",
        "Ψ = π^(1/3) (6V)^(2/3) / A: the surface of the ball with the object's volume over the "
        "object's surface (Wadell)",
        "(0, 1] for smooth shapes; a voxelised ball (radius 10-40 pixels) gives 0.91-0.92 with cubic "
        "voxels and 0.88-0.89 with voxels 2.2× longer in Z (the bias of A)",
        "none (from volume and surface_area)",
        "Compare sphericities of objects imaged with the same voxel size only."),
    Measurement(
        "equivalent_diameter", "length",
        "(6V/π)^(1/3): diameter of the ball with the same volume",
        "> 0", "equivalent_diameter_area (3D, with spacing)"),
)

BY_NAME_3D: dict[str, Measurement] = {m.name: m for m in MEASUREMENTS_3D}

# Position columns of 3D objects (voxel coordinates: plane, row, column).
POSITION_COLUMNS_3D = ("centroid_z", "centroid_row", "centroid_col", "bbox_z_min", "bbox_row_min",
                       "bbox_col_min", "bbox_z_max", "bbox_row_max", "bbox_col_max")

#: The seven core shape descriptors (benchmarked in bench/bench_morphology.py).
CORE = ("area", "perimeter", "circularity", "eccentricity", "aspect_ratio", "solidity",
        "anisotropy")

SHAPE = tuple(m.name for m in MEASUREMENTS if m.kind != "intensity")
INTENSITY = tuple(m.name for m in MEASUREMENTS if m.kind == "intensity")

# Position and identity columns (always present, pixel coordinates).
POSITION_COLUMNS = ("centroid_row", "centroid_col", "bbox_row_min", "bbox_col_min",
                    "bbox_row_max", "bbox_col_max")


def unit_suffix(kind: str, physical: bool) -> str:
    """Column-name suffix of a measurement kind: ``_px2``/``_um2``, ``_px``/``_um``, ``_deg``."""
    if kind == "volume":
        return "_um3" if physical else "_px3"
    if kind == "area":
        return "_um2" if physical else "_px2"
    if kind == "length":
        return "_um" if physical else "_px"
    if kind == "angle":
        return "_deg"
    return ""


def column_name(name: str, *, physical: bool = False, channel: int | None = None, volume: bool = False) -> str:
    """Table column of measurement ``name``: the unit is part of the name (``area_um2``);
    ``volume`` names the 3D measurements (``volume_um3``)."""
    m = (BY_NAME_3D if volume else BY_NAME)[name]
    col = name + unit_suffix(m.kind, physical)
    if channel is not None:
        col += f"_ch{channel}"
    return col


def base_name(column: str) -> str | None:
    """The measurement a table column holds (``"area_um2"`` -> ``"area"``), or None."""
    for m in MEASUREMENTS:
        for physical in (False, True):
            suffix = unit_suffix(m.kind, physical)
            if column == m.name + suffix:
                return m.name
            if m.kind == "intensity" and column.startswith(m.name + "_ch"):
                return m.name
    return None


def definitions_markdown() -> str:
    """The measurements as a Markdown table (for docs/morphology.md and docstrings)."""
    lines = ["| measurement | column | definition | range | regionprops |",
             "|---|---|---|---|---|"]
    for m in MEASUREMENTS:
        names = (f"`{column_name(m.name, physical=p)}`" for p in (False, True))
        cols = ", ".join(dict.fromkeys(names))
        lines.append(f"| {m.name} | {cols} | {m.formula} | {m.range} | {m.regionprops} |")
    return "\n".join(lines)


def definitions_text() -> str:
    """The measurements as plain text, one block each (appended to docstrings)."""
    out = []
    for m in MEASUREMENTS:
        cols = "/".join(dict.fromkeys(column_name(m.name, physical=p) for p in (False, True)))
        block = f"{cols}\n    {m.formula}\n    range: {m.range}\n    regionprops: {m.regionprops}"
        if m.notes:
            block += f"\n    {m.notes}"
        out.append(block)
    return "\n".join(out)


def definitions_markdown_3d() -> str:
    """The 3D measurements as a Markdown table (for docs/volumes.md)."""
    lines = ["| measurement | column | definition | range | regionprops (3D) |",
             "|---|---|---|---|---|"]
    for m in MEASUREMENTS_3D:
        names = (f"`{column_name(m.name, physical=p, volume=True)}`" for p in (False, True))
        cols = ", ".join(dict.fromkeys(names))
        text = m.formula + (f". {m.notes}" if m.notes else "")
        lines.append(f"| {m.name} | {cols} | {text} | {m.range} | {m.regionprops} |")
    return "\n".join(lines)
