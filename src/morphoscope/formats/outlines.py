"""Object masks as polygons along their pixel edges, and polygons back to masks.

Coordinates are those of ImageJ, QuPath and GeoJSON image annotations: ``x`` to the right, ``y``
down, pixel ``(row, col)`` covering ``[col, col + 1) x [row, row + 1)``. An outline runs along the
edges between object and background pixels, so every vertex is a pixel corner (integers), the
polygon's area is the object's pixel count, and filling it at pixel centres gives back exactly the
mask (:func:`geometry_mask`): nothing is smoothed or simplified away.

The outline is traced with scikit-image's marching squares (:func:`skimage.measure.find_contours`
at level 0.5, on the mask padded by one pixel so that every contour closes). Marching squares
puts its vertices half-way between the centres of an object pixel and a background pixel and cuts
corners diagonally; inserting the corner of each cell it crosses turns that contour into the
pixel-edge outline. Pixels that touch only at a corner are separate pieces (4-connected objects):
two pieces meeting at one vertex, which is a valid MultiPolygon. Holes become interior rings
(nested pieces alternate, by the even-odd rule), and exteriors and holes wind in opposite
directions (shapely's ``orient``), so the even-odd and the non-zero fill rules agree.
"""

from __future__ import annotations

import numpy as np


def mask_outline(mask: np.ndarray, origin=(0, 0)):
    """The pixel-edge outline of a 2D boolean ``mask`` whose pixel ``[0, 0]`` is image pixel
    ``origin`` (row, col): a shapely ``Polygon`` (one piece) or ``MultiPolygon``, empty for an
    empty mask."""
    import shapely
    from shapely.geometry.polygon import orient
    from skimage.measure import find_contours

    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask outline needs a 2D mask, got shape {mask.shape}")
    row0, col0 = (int(v) for v in origin)
    geometry = shapely.Polygon()
    for contour in find_contours(np.pad(mask, 1).astype(np.uint8), 0.5):
        corners = _pixel_corners(contour)
        if len(corners) < 3:
            continue
        ring = shapely.Polygon(corners + [col0 - 1, row0 - 1])  # padded -> image coordinates
        geometry = shapely.symmetric_difference(geometry, ring)
    geometry = shapely.simplify(geometry, 0)  # drop the vertices in the middle of straight edges
    if not geometry.is_valid:
        # a ring through one pixel corner twice (pieces or a hole meeting there diagonally):
        # the same area as a valid (Multi)Polygon
        geometry = shapely.union_all([p for p in _parts(shapely.make_valid(geometry))
                                      if p.geom_type in ("Polygon", "MultiPolygon")])
    if geometry.geom_type == "Polygon":
        return orient(geometry, 1.0)
    if geometry.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([orient(p, 1.0) for p in geometry.geoms])
    return shapely.Polygon() if geometry.is_empty else geometry


def _parts(geometry) -> list:
    return list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry]


def _pixel_corners(contour: np.ndarray) -> np.ndarray:
    """A closed marching-squares contour ``(row, col)`` (pixel-centre coordinates) -> the
    pixel-corner vertices ``(x, y)`` of the same outline along pixel edges.

    Consecutive contour vertices lie in one 2x2 cell of pixel centres, whose middle is the pixel
    corner ``floor(min) + 0.5``; the pixel-edge path between them goes through it."""
    a, b = contour[:-1], contour[1:]
    corner = np.floor(np.minimum(a, b)) + 0.5  # in pixel-centre coordinates
    corner += 0.5  # -> pixel-edge coordinates, where pixel r covers [r, r + 1)
    return np.ascontiguousarray(corner[:, ::-1])


def polygons_of(geometry) -> list:
    """The polygons of a Polygon or MultiPolygon (none for an empty geometry)."""
    if geometry.is_empty:
        return []
    return list(geometry.geoms) if geometry.geom_type == "MultiPolygon" else [geometry]


def geometry_mask(geometry, shape, origin=(0, 0)) -> np.ndarray:
    """The pixels of the window ``shape`` starting at image pixel ``origin`` (row, col) whose
    centres lie inside ``geometry`` (image coordinates, as above): how ImageJ and QuPath fill
    an outline."""
    import shapely

    h, w = (int(s) for s in shape)
    rows, cols = np.mgrid[0:h, 0:w]
    xs = cols + int(origin[1]) + 0.5
    ys = rows + int(origin[0]) + 0.5
    return shapely.contains_xy(geometry, xs, ys)
