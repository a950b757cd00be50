"""Synthetic label images for benchmarks and tests of the measurements (never for training).

:func:`random_shapes_labels` tiles an image with cells and draws one object per cell: ellipses
of random size, elongation and orientation, some with a hole, some the union of two ellipses
(non-convex), some of one or two pixels, some touching their neighbours or the image border.
"""

from __future__ import annotations

import numpy as np


def random_shapes_labels(
    shape: tuple[int, int] = (1024, 1024),
    *,
    cell: int = 16,
    seed: int = 0,
    dtype=np.uint32,
) -> np.ndarray:
    """Label image of ``shape`` with one object per ``cell`` x ``cell`` tile (labels 1..N).

    Each tile holds an ellipse with semi-axes between 0.5 and ``cell / 2`` pixels and a random
    orientation; 10 % get a hole (an inner ellipse cut out), 15 % are the union of two ellipses,
    2 % are single pixels and 2 % two-pixel objects. Ellipses may reach the tile edge, so some
    objects touch their neighbours; tiles on the image edge make objects touch the border.
    Tiles whose drawing ends up empty are left empty and labels stay consecutive.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    ny, nx = -(-h // cell), -(-w // cell)
    n = ny * nx
    half = cell / 2
    cy = half - 0.5 + rng.uniform(-cell / 6, cell / 6, n)
    cx = half - 0.5 + rng.uniform(-cell / 6, cell / 6, n)
    a = rng.uniform(0.8, half, n)
    b = a * rng.uniform(0.25, 1.0, n)
    t = rng.uniform(0, np.pi, n)
    kind = rng.uniform(size=n)
    yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float64)

    def ellipse(cy, cx, a, b, t):
        dy = yy[None] - cy[:, None, None]
        dx = xx[None] - cx[:, None, None]
        c, s = np.cos(t)[:, None, None], np.sin(t)[:, None, None]
        u = dx * c + dy * s
        v = -dx * s + dy * c
        return (u / a[:, None, None]) ** 2 + (v / b[:, None, None]) ** 2 <= 1

    masks = np.empty((n, cell, cell), bool)
    step = 8192
    for s in range(0, n, step):
        sl = slice(s, s + step)
        m = ellipse(cy[sl], cx[sl], a[sl], b[sl], t[sl])
        k = kind[sl]
        hole = (k < 0.10) & (b[sl] > 3)
        if hole.any():
            inner = ellipse(cy[sl], cx[sl], a[sl] * 0.4, b[sl] * 0.4, t[sl])
            m[hole] &= ~inner[hole]
        union = (k >= 0.10) & (k < 0.25)
        if union.any():
            oy = cy[sl] + rng.uniform(-half / 2, half / 2, len(k))
            ox = cx[sl] + rng.uniform(-half / 2, half / 2, len(k))
            other = ellipse(oy, ox, b[sl], a[sl] * 0.5 + 0.5, t[sl] + np.pi / 2)
            m[union] |= other[union]
        tiny = (k >= 0.25) & (k < 0.29)
        if tiny.any():
            m[tiny] = False
            m[tiny, cell // 2, cell // 2] = True
            two = tiny & (k >= 0.27)
            m[two, cell // 2, cell // 2 + 1] = True
        masks[sl] = m
    present = masks.any(axis=(1, 2))
    ids = np.zeros(n, np.int64)
    ids[present] = np.arange(1, int(present.sum()) + 1)
    tiles = masks * ids[:, None, None]
    big = tiles.reshape(ny, nx, cell, cell).transpose(0, 2, 1, 3).reshape(ny * cell, nx * cell)
    out = np.ascontiguousarray(big[:h, :w])
    if h % cell or w % cell:  # objects cut away at the edge: renumber 1..N
        from morphoscope.morphology.shape import sequential_labels

        out = sequential_labels(out)[0]
    return out.astype(dtype)
