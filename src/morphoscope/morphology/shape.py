"""Vectorised shape measurements of every object of a label image at once.

Each function here reproduces one scikit-image ``regionprops`` property for all labels of an
image in a handful of whole-array numpy passes, instead of one Python-level computation per
object. The definitions are regionprops' (scikit-image 0.22-0.26); the *method* differs:

``area``, moments
    From horizontal runs of equal labels: a run's pixel count and its first and second moments
    have closed forms, so no per-pixel coordinate arrays are built.
``perimeter``
    ``skimage.measure.perimeter(region_image, neighborhood=4)``: border pixels are object pixels
    with a 4-neighbour outside the object; each border pixel is weighted by the pattern of
    border pixels of the *same* object among its 8 neighbours (the Benkrid-Crookes weights,
    1, sqrt(2) or (1 + sqrt(2)) / 2). Here one pass classifies the border pixels of all objects
    and one ``bincount`` builds every object's histogram of neighbourhood codes.
``area_convex``
    regionprops takes the convex hull of the object's pixels, each pixel represented by the
    midpoints of its four edges (``convex_hull_image`` with ``offset_coordinates=True``), and
    counts the pixel centres inside or on that hull. The hull of those points is the region
    between the lower convex envelope of the per-row leftmost points and the upper concave
    envelope of the per-row rightmost points; both envelopes are found for all objects at once by
    repeatedly dropping chain points that lie on or inside the segment joining their neighbours
    (in exact integer arithmetic on doubled coordinates), and the centres in each row are counted
    exactly with integer floor division.
``feret_diameter_max``
    regionprops takes the largest distance between points of the marching-squares contour of the
    convex hull image (level 0.5: midpoints of the edges between hull and non-hull pixels). The
    convex hull of those midpoints is computed as above from the hull image's rows and the
    largest distance between its vertices is taken; the minimum caliper width of the same
    polygon is ``feret_diameter_min``.

All functions take a *sequential* label image (labels ``1..n``, every value present; see
:func:`sequential_labels`) and return arrays of length ``n`` (index ``i`` is label ``i + 1``).
"""

from __future__ import annotations

import numpy as np

# Benkrid-Crookes weights of skimage.measure.perimeter, indexed by the neighbourhood code
# 1 * centre + 2 * (4-neighbours) + 10 * (diagonal neighbours) of border pixels.
PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2

# Envelope passes before the remaining (rare, pathological) chains are finished one by one.
_MAX_PASSES = 64


# --------------------------------------------------------------------------------------------
# labels and runs
# --------------------------------------------------------------------------------------------


def sequential_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(seq, ids)``: ``seq`` holds ``i`` where ``labels`` holds ``ids[i - 1]``.

    ``seq`` is C-contiguous with an integer dtype of at most 64 bits (``labels`` itself when its
    labels are already ``1..n``); ``ids`` are the sorted object labels present (background 0
    excluded), int64. ``labels`` must be a non-negative integer array (checked by the caller).
    """
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "iu" or labels.dtype.itemsize > 8:
        labels = labels.astype(np.int64)
    flat = labels.ravel()
    top = int(flat.max(initial=0))
    if top == 0:
        return np.zeros(labels.shape, np.int32), np.zeros(0, np.int64)
    if top <= max(4 * flat.size, 1 << 20):
        counts = np.bincount(flat, minlength=top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        if len(ids) == top:  # already 1..n
            seq = labels
        else:
            small = len(ids) < np.iinfo(np.int32).max
            lut = np.zeros(top + 1, np.int32 if small else np.int64)
            lut[ids] = np.arange(1, len(ids) + 1)
            seq = lut[labels]
    else:  # a few huge label values: sort instead of a huge look-up table
        ids, inverse = np.unique(flat, return_inverse=True)
        if ids[0] == 0:
            ids, seq = ids[1:], inverse.reshape(labels.shape)
        else:
            seq = inverse.reshape(labels.shape) + 1
    if seq.dtype == np.uint64:
        seq = seq.astype(np.int64)
    return np.ascontiguousarray(seq), ids.astype(np.int64)


def _stable_order(keys: np.ndarray, top: int) -> np.ndarray:
    """Stable argsort of non-negative integer ``keys`` (< ``top``) by 16-bit radix passes."""
    if top < (1 << 16):
        return np.argsort(keys.astype(np.uint16), kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = keys[order] >> 16
    if top < (1 << 32):
        return order[np.argsort(high.astype(np.uint16), kind="stable")]
    return order[np.argsort(high, kind="stable")]


class Runs:
    """Horizontal runs of equal non-zero labels, grouped by label (rows ascending).

    Attributes (one entry per run): ``lab`` (1..n), ``row``, ``c0`` and ``c1`` (first and last
    column, inclusive). ``rows`` summarises runs per (label, row): ``lab``, ``row``, ``left``
    (leftmost column) and ``right`` (rightmost column). ``n`` is the number of labels.
    """

    def __init__(self, seq: np.ndarray, n: int):
        h, w = seq.shape
        self.n = n
        flat = seq.ravel()
        nz = seq != 0
        diff = np.empty(seq.shape, bool)
        diff[:, 0] = True
        np.not_equal(seq[:, 1:], seq[:, :-1], out=diff[:, 1:])
        starts = np.flatnonzero(nz & diff)
        diff[:, :-1] = diff[:, 1:]
        diff[:, -1] = True
        ends = np.flatnonzero(nz & diff)
        del diff, nz
        lab = flat[starts].astype(np.int64)
        order = _stable_order(lab, n + 1)
        starts, ends, lab = starts[order], ends[order], lab[order]
        row = starts // w
        self.lab, self.row = lab, row
        self.c0, self.c1 = starts - row * w, ends - row * w
        # per (label, row): runs of a row are in column order, so the first run holds the
        # leftmost pixel and the last run the rightmost
        key_change = np.empty(len(lab), bool)
        if len(lab):
            key_change[0] = True
            key_change[1:] = (lab[1:] != lab[:-1]) | (row[1:] != row[:-1])
        first = np.flatnonzero(key_change)
        last = np.r_[first[1:] - 1, len(lab) - 1] if len(first) else first
        self.rows_lab, self.rows_row = lab[first], row[first]
        self.rows_left, self.rows_right = self.c0[first], self.c1[last]


# --------------------------------------------------------------------------------------------
# area, bounding box, moments
# --------------------------------------------------------------------------------------------


def _group_starts(lab: np.ndarray, n: int) -> np.ndarray:
    """Index of the first element of each label 1..n in a label-sorted array (all present)."""
    return np.searchsorted(lab, np.arange(1, n + 1))


def area_bbox_moments(runs: Runs) -> dict[str, np.ndarray]:
    """Area, bounding box, centroid and second central moments of every object.

    Returns ``area``, ``row_min``, ``row_max`` (exclusive), ``col_min``, ``col_max``
    (exclusive), ``centroid_row``, ``centroid_col`` (image coordinates), ``mu20``, ``mu02``,
    ``mu11`` (central moments: sums over the object's pixels of (r - r̄)², (c - c̄)²,
    (r - r̄)(c - c̄)), and the same moments times the area as exact integers, ``n20 = A Σr² -
    (Σr)²`` etc. (int64), where ``exact`` is true (all but huge objects).
    """
    n = runs.n
    if n == 0:
        ints, floats = np.zeros(0, np.int64), np.zeros(0)
        return {"area": floats, "row_min": ints, "row_max": ints, "col_min": ints,
                "col_max": ints, "centroid_row": floats, "centroid_col": floats,
                "mu20": floats, "mu02": floats, "mu11": floats, "n20": ints, "n02": ints,
                "n11": ints, "exact": np.zeros(0, bool)}
    idx = runs.lab - 1
    k = runs.c1 - runs.c0 + 1
    area = np.bincount(idx, weights=k, minlength=n)
    g = _group_starts(runs.rows_lab, n)
    row_min = runs.rows_row[g]
    row_max = runs.rows_row[np.r_[g[1:], len(runs.rows_row)] - 1] + 1
    col_min = np.minimum.reduceat(runs.rows_left, g)
    col_max = np.maximum.reduceat(runs.rows_right, g) + 1
    # local coordinates (relative to the bounding box), as regionprops uses on its crop; the
    # sums of a run of columns a..a+k-1 have closed forms (integers)
    r = runs.row - row_min[idx]
    a = runs.c0 - col_min[idx]
    s_c = k * a + k * (k - 1) // 2
    s_cc = k * a * a + a * k * (k - 1) + (k - 1) * k * (2 * k - 1) // 6
    # bincount adds in float64: exact while the totals stay below 2**53
    sum_r = np.bincount(idx, weights=k * r, minlength=n)
    sum_c = np.bincount(idx, weights=s_c, minlength=n)
    sum_rr = np.bincount(idx, weights=k * r * r, minlength=n)
    sum_cc = np.bincount(idx, weights=s_cc, minlength=n)
    sum_rc = np.bincount(idx, weights=r * s_c, minlength=n)
    cr = sum_r / area
    cc = sum_c / area
    # exact integer moments where nothing can overflow (A * Σr² < 2**62)
    top = np.maximum(sum_rr, sum_cc)
    exact = (top < 2.0**52) & (area * top < 2.0**61)
    ai = np.where(exact, area, 0).astype(np.int64)

    def scaled(s2, s_x, s_y):
        return ai * np.where(exact, s2, 0).astype(np.int64) - (
            np.where(exact, s_x, 0).astype(np.int64) * np.where(exact, s_y, 0).astype(np.int64))

    n20, n02, n11 = scaled(sum_rr, sum_r, sum_r), scaled(sum_cc, sum_c, sum_c), \
        scaled(sum_rc, sum_r, sum_c)
    # float central moments, centroid subtracted first (for huge objects, and as a check)
    kf, rf, af = k.astype(np.float64), r.astype(np.float64), a.astype(np.float64)
    dr = rf - cr[idx]
    d = af - cc[idx]
    sum_j = kf * (kf - 1) / 2
    sum_j2 = (kf - 1) * kf * (2 * kf - 1) / 6
    mu20 = np.bincount(idx, weights=kf * dr * dr, minlength=n)
    mu02 = np.bincount(idx, weights=kf * d * d + 2 * d * sum_j + sum_j2, minlength=n)
    mu11 = np.bincount(idx, weights=dr * (kf * d + sum_j), minlength=n)
    return {
        "area": area, "row_min": row_min, "row_max": row_max, "col_min": col_min,
        "col_max": col_max, "centroid_row": cr + row_min, "centroid_col": cc + col_min,
        "mu20": mu20, "mu02": mu02, "mu11": mu11, "n20": n20, "n02": n02, "n11": n11,
        "exact": exact,
    }


def inertia_axes(m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Eigenvalues l1 >= l2 of regionprops' inertia tensor ``[[mu02, -mu11], [-mu11, mu20]] /
    area`` of every object (``m`` from :func:`area_bbox_moments`) and the quantities regionprops
    derives from them: ``axis_major_length = 4 sqrt(l1)``, ``axis_minor_length = 4 sqrt(l2)``,
    ``eccentricity = sqrt(1 - l2 / l1)`` (0 when l1 = 0), ``orientation`` =
    ``0.5 atan2(2 mu11, mu20 - mu02)`` in radians (``pi/4`` or ``-pi/4`` when mu20 = mu02, by
    the sign of mu11, as regionprops).

    The tensor comes from the exact integer moments where available, and the singular cases are
    decided exactly: a tensor with mu20 = mu02 and mu11 = 0 (isotropic) has l1 = l2 exactly
    (eccentricity 0), a singular one (mu20 mu02 = mu11², a straight line of pixels) has l2 = 0
    exactly (eccentricity 1, minor axis 0).
    """
    area = m["area"]
    exact = m["exact"]
    n20, n02, n11 = m["n20"], m["n02"], m["n11"]
    with np.errstate(invalid="ignore", divide="ignore"):
        a2 = area * area
        a = np.where(exact, n02 / a2, m["mu02"] / area)
        c = np.where(exact, n20 / a2, m["mu20"] / area)
        b = -np.where(exact, n11 / a2, m["mu11"] / area)  # -0.0 for 0, as regionprops
        diff = np.where(exact, (n20 - n02) / a2, c - a)  # c - a, from exact integers
        half_sum = (a + c) / 2
        root = np.hypot(diff / 2, b)
        l1 = half_sum + root
        # the small eigenvalue from the determinant avoids cancellation for elongated shapes
        det = a * c - b * b
        l2 = np.where(l1 > 0, det / np.where(l1 > 0, l1, 1), 0.0)
        isotropic = exact & (n20 == n02) & (n11 == 0)
        l2 = np.where(isotropic, l1, l2)
        l2 = np.where(_singular(m), 0.0, l2)
        l1 = np.clip(l1, 0, None)
        l2 = np.clip(l2, 0, l1)
        ratio = l2 / np.where(l1 == 0, 1, l1)
        ecc = np.where(l1 == 0, 0.0, np.sqrt(np.clip(1 - ratio, 0, 1)))
        orient = np.where(diff == 0, np.where(b < 0, np.pi / 4, -np.pi / 4),
                          0.5 * np.arctan2(-2 * b, diff))
    return {
        "inertia_l1": l1, "inertia_l2": l2,
        "axis_major_length": 4 * np.sqrt(l1), "axis_minor_length": 4 * np.sqrt(l2),
        "eccentricity": ecc, "orientation": orient,
    }


def _singular(m) -> np.ndarray:
    """Objects whose (exact integer) inertia tensor is singular: n20 n02 == n11² (lines)."""
    exact, n20, n02, n11 = m["exact"], m["n20"], m["n02"], m["n11"]
    f20, f02, f11 = n20.astype(float), n02.astype(float), n11.astype(float)
    with np.errstate(invalid="ignore", over="ignore"):
        near = exact & (np.abs(f20 * f02 - f11 * f11) <= 1e-9 * np.abs(f20 * f02) + 0.5)
    out = np.zeros(len(exact), bool)
    for i in np.flatnonzero(near):  # few objects: decide them in Python integers
        out[i] = int(n20[i]) * int(n02[i]) == int(n11[i]) ** 2
    return out


# --------------------------------------------------------------------------------------------
# perimeter
# --------------------------------------------------------------------------------------------


def perimeter(seq: np.ndarray, n: int) -> np.ndarray:
    """``skimage.measure.perimeter(labels == i, 4)`` for every label ``i`` (see module doc)."""
    h, w = seq.shape
    pad = np.zeros((h + 2, w + 2), seq.dtype)
    pad[1:-1, 1:-1] = seq
    centre = pad[1:-1, 1:-1]
    border = (pad[:-2, 1:-1] != centre)
    border |= pad[2:, 1:-1] != centre
    border |= pad[1:-1, :-2] != centre
    border |= pad[1:-1, 2:] != centre
    border &= centre != 0
    bpad = np.zeros((h + 2, w + 2), bool)
    bpad[1:-1, 1:-1] = border
    del border
    wp = w + 2
    pflat, bflat = pad.ravel(), bpad.ravel()
    idx = np.flatnonzero(bflat)
    lab = pflat[idx]
    code = np.ones(len(idx), np.int64)
    for offsets, weight in (((-1, 1, -wp, wp), 2), ((-wp - 1, -wp + 1, wp - 1, wp + 1), 10)):
        for off in offsets:
            j = idx + off
            code += weight * ((pflat[j] == lab) & bflat[j])
    hist = np.bincount(lab.astype(np.int64) * 50 + code, minlength=(n + 1) * 50)
    hist = hist.reshape(n + 1, 50)[1:]
    return hist.astype(np.float64) @ PERIMETER_WEIGHTS


# --------------------------------------------------------------------------------------------
# convex hull
# --------------------------------------------------------------------------------------------


def _upper_envelope(g: np.ndarray, y: np.ndarray, x: np.ndarray):
    """Vertices ``(g, y, x)`` of the upper concave envelope of the points ``(y, x)`` of each
    group ``g``. Points must be sorted by ``(g, y)`` with ``y`` strictly increasing per group;
    integer coordinates, exact arithmetic. The first and last point of a group are kept.

    Every pass drops, all at once, the points that lie on or below the segment joining their two
    neighbours: such a point is not an extreme point of the set, so dropping it does not change
    the envelope. When no point can be dropped every chain is strictly concave.
    """
    for _ in range(_MAX_PASSES):
        if len(g) < 3:
            return g, y, x
        same = g[:-1] == g[1:]
        inner = same[:-1] & same[1:]
        ya, yb, yc = y[:-2], y[1:-1], y[2:]
        xa, xb, xc = x[:-2], x[1:-1], x[2:]
        drop = inner & ((xb - xa) * (yc - ya) <= (xc - xa) * (yb - ya))
        if not drop.any():
            return g, y, x
        keep = np.ones(len(g), bool)
        keep[1:-1] = ~drop
        g, y, x = g[keep], y[keep], x[keep]
    # Chains that still change after many passes (not seen in practice): finish them with a
    # monotone chain, one group at a time.
    out = []
    bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:]):
        stack: list[int] = []
        for p in range(s, e):
            while len(stack) >= 2:
                pa, pb = stack[-2], stack[-1]
                if (x[pb] - x[pa]) * (y[p] - y[pa]) <= (x[p] - x[pa]) * (y[pb] - y[pa]):
                    stack.pop()
                else:
                    break
            stack.append(p)
        out.extend(stack)
    out = np.asarray(out, np.int64)
    return g[out], y[out], x[out]


def _chain_points(lab, row, col, side: int):
    """Candidate hull points, in doubled coordinates, on one side of every object.

    ``lab``, ``row``, ``col``: one entry per (object, row), sorted by (object, row), with the
    rightmost (``side=+1``) or leftmost (``side=-1``) column of the row. The edge midpoints of
    pixel ``(r, c)`` are ``(2r, 2c +- 1)`` and ``(2r +- 1, 2c)``; on the right side the
    candidates are ``(2r, 2c + 1)``, ``(2r - 1, 2c)`` above a row without a row of the same
    object just above it, ``(2r + 1, 2c)`` below a row without one just below, and between
    consecutive rows ``(2r + 1, 2 max(c_r, c_r+1))`` -- only when the two columns differ by 2
    or more, otherwise that point lies on or below the segment joining the two row points. The
    left side is the same mirrored and returned with x negated, so that both sides need an
    *upper* envelope. Returns ``(g, y, x)`` sorted by ``(g, y)``, y strictly increasing.
    """
    m = len(lab)
    xs = side * 2 * col.astype(np.int64)
    g3 = np.empty((m, 3), np.int64)
    y3 = np.empty((m, 3), np.int64)
    x3 = np.empty((m, 3), np.int64)
    ok = np.ones((m, 3), bool)
    r2 = 2 * row.astype(np.int64)
    g3[:] = lab[:, None]
    y3[:, 0], y3[:, 1], y3[:, 2] = r2 - 1, r2, r2 + 1
    x3[:, 0], x3[:, 1] = xs, xs + 1
    follows = np.zeros(m, bool)  # entry i + 1 is the next row of the same object
    if m > 1:
        follows[:-1] = (lab[1:] == lab[:-1]) & (row[1:] == row[:-1] + 1)
    ok[1:, 0] = ~follows[:-1]  # top point only where the row above is not the object's
    nxt = np.r_[xs[1:], 0] if m else xs
    x3[:, 2] = np.where(follows, np.maximum(xs, nxt), xs)
    ok[:, 2] = ~follows | (np.abs(nxt - xs) >= 4)  # doubled units: columns differ by >= 2
    ok = ok.ravel()
    return g3.ravel()[ok], y3.ravel()[ok], x3.ravel()[ok]


def _hull_chains(lab, row, left, right):
    """Upper envelopes of the right side and (negated) left side: ``(g, y, x)`` each."""
    out = []
    for side, col in ((1, right), (-1, left)):
        out.append(_upper_envelope(*_chain_points(lab, row, col, side)))
    return out


def _floor_at(g, y, x, qg, qy):
    """floor(X(qy) / 2) on each group's chain (piecewise linear through sorted vertices)."""
    # one sortable key per (group, y): y is in [-1, 2 H + 1], so 2 + y fits in `bits` bits
    bits = int(y.max(initial=0) + 2).bit_length() + 1
    key = (g << bits) + (y + 2)
    i = np.searchsorted(key, (qg << bits) + (qy + 2), side="right") - 1
    j = np.minimum(i + 1, len(key) - 1)
    y0, x0, y1, x1 = y[i], x[i], y[j], x[j]
    exact = y0 == qy
    dy = np.where(exact, 1, y1 - y0)
    num = x0 * dy + np.where(exact, 0, (x1 - x0) * (qy - y0))
    return num // (2 * dy)


def convex_hull_rows(runs: Runs, row_min: np.ndarray, row_max: np.ndarray):
    """Rows of regionprops' ``image_convex`` of every object.

    Returns ``(lab, row, first, last)``: for every row of every object's bounding box, the first
    and last column of the hull image in that row (``last < first`` when the row is empty).
    """
    (gr, yr, xr), (gl, yl, xl) = _hull_chains(runs.rows_lab, runs.rows_row, runs.rows_left,
                                             runs.rows_right)
    heights = row_max - row_min
    qlab = np.repeat(np.arange(1, runs.n + 1), heights)
    starts = np.repeat(np.cumsum(heights) - heights, heights)
    qrow = np.arange(len(qlab)) - starts + np.repeat(row_min, heights)
    last = _floor_at(gr, yr, xr, qlab, 2 * qrow)
    first = -_floor_at(gl, yl, xl, qlab, 2 * qrow)  # ceil(L / 2) = -floor(-L / 2)
    return qlab, qrow, first, last


def area_convex(hull_rows, n: int) -> np.ndarray:
    """Pixel count of regionprops' ``image_convex`` (the convex hull image) of every object."""
    lab, _, first, last = hull_rows
    return np.bincount(lab - 1, weights=np.maximum(last - first + 1, 0), minlength=n)


# --------------------------------------------------------------------------------------------
# Feret diameters
# --------------------------------------------------------------------------------------------


def _polygons(hull_rows):
    """Convex polygon (doubled coordinates, counter-clockwise in (row, col)) of the contour
    midpoints of each object's hull image. Returns ``(g, y, x)`` sorted by group."""
    lab, row, first, last = hull_rows
    ok = last >= first
    (gr, yr, xr), (gl, yl, xl) = _hull_chains(lab[ok], row[ok], first[ok], last[ok])
    # polygon: right chain top->bottom, then left chain bottom->top (x un-negated)
    g = np.concatenate([gr, gl])
    y = np.concatenate([yr, yl])
    x = np.concatenate([xr, -xl])
    part = np.concatenate([np.zeros(len(gr), np.int64), np.ones(len(gl), np.int64)])
    order_y = np.where(part == 0, y, -y)
    order = np.lexsort((order_y, part, g))
    g, y, x = g[order], y[order], x[order]
    # drop repeated points where the chains meet (top and bottom rows)
    nxt = np.r_[1:len(g), 0] if len(g) else np.zeros(0, np.int64)
    same = (g == g[nxt]) & (y == y[nxt]) & (x == x[nxt])
    return g[~same], y[~same], x[~same]


def feret_diameters(hull_rows, n: int, *, chunk: int = 1 << 22):
    """``(feret_max, feret_min)`` of every object, in pixels (see module doc)."""
    fmax = np.zeros(n)
    fmin = np.zeros(n)
    if n == 0:
        return fmax, fmin
    g, y, x = _polygons(hull_rows)
    counts = np.bincount(g - 1, minlength=n)
    starts = np.cumsum(counts) - counts
    # objects grouped by vertex count, all pairs per group in padded blocks
    order = np.argsort(counts, kind="stable")
    sorted_counts = counts[order]
    bounds = np.flatnonzero(np.r_[True, sorted_counts[1:] != sorted_counts[:-1], True])
    yf, xf = y.astype(np.float64), x.astype(np.float64)
    for s, e in zip(bounds[:-1], bounds[1:]):
        k = int(sorted_counts[s])
        if k == 0:
            continue
        objs = order[s:e]
        step = max(1, chunk // (k * k))
        for b in range(0, len(objs), step):
            ob = objs[b:b + step]
            vi = starts[ob][:, None] + np.arange(k)  # (m, k) vertex indices
            py, px = y[vi], x[vi]
            dy = py[:, :, None] - py[:, None, :]
            dx = px[:, :, None] - px[:, None, :]
            d2 = (dy * dy + dx * dx).max(axis=(1, 2))  # exact integers (doubled units)
            fmax[ob] = np.sqrt(d2) / 2
            if k < 3:  # cannot happen: the hull of a pixel's edge midpoints has 4 vertices
                continue
            # width: min over edges of the largest distance of a vertex from the edge's line
            fy, fx = yf[vi], xf[vi]
            ey = np.roll(fy, -1, axis=1) - fy
            ex = np.roll(fx, -1, axis=1) - fx
            cross = np.abs(ex[:, :, None] * (fy[:, None, :] - fy[:, :, None])
                           - ey[:, :, None] * (fx[:, None, :] - fx[:, :, None]))
            length = np.hypot(ey, ex)
            # repeated vertices (where the two chains meet) give zero-length edges: skip them
            with np.errstate(invalid="ignore", divide="ignore"):
                width = np.where(length > 0, cross.max(axis=2) / length, np.inf)
            fmin[ob] = width.min(axis=1) / 2
    return fmax, fmin
