"""Any image size with bounded memory: blocks with a margin, and each object owned by one block.

A plane is cut into blocks whose *cores* partition it; each block's *window* adds a margin of
context on every side and starts on a multiple of the network's coarsest stride, so that the
network sees the window's pixels on the grid of a whole-image pass. The network sees a window; of the objects it
finds, a block keeps those whose centre lies in its core. An object narrower than the margin is
therefore seen whole by the block that keeps it, and never cut or counted twice; that is the rule
of StarDist's ``big.py``, here applied to any task that returns objects.

Two blocks see an object near their common core border with slightly different context, so their
two centres can fall on opposite sides of that border. Blocks therefore keep objects whose centre
lies within ``tolerance`` pixels of their core, and :func:`merge_blocks` removes the pairs that
are the same object (IoU >= 0.5) so that each object is kept exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from morphoscope.engine.objects import Objects


@dataclass(frozen=True)
class Block:
    """One piece of a plane: ``window`` is read and predicted, ``core`` is what it owns."""

    index: int
    window: tuple[slice, ...]
    core: tuple[slice, ...]

    @property
    def offset(self) -> tuple[int, ...]:
        return tuple(s.start for s in self.window)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.window)


def _axis_blocks(n: int, size: int, margin: int, align: int) -> list[tuple[slice, slice]]:
    """(window, core) along one axis. Windows start on multiples of ``align`` (the network's
    coarsest stride), so that every window sees its content on the same pixel grid as a
    whole-image pass would: a CNN is only shift-invariant in steps of its stride."""
    if n <= size:
        return [(slice(0, n), slice(0, n))]
    core = size - 2 * margin - (align - 1)  # an aligned window still has ``margin`` both sides
    if core < 1:
        raise ValueError(f"block size {size} leaves no core inside a margin of {margin}")
    out = []
    starts = list(range(0, n, core))
    for i, a in enumerate(starts):
        b = min(a + core, n)
        w0 = max(0, (a - margin) // align * align)
        w1 = min(n, w0 + size)
        out.append((slice(w0, w1), slice(a, b)))
    return out


def block_grid(shape, *, size: int, margin: int, align: int = 1) -> list[Block]:
    """Blocks covering a plane of ``shape`` (2D or 3D spatial); a plane no larger than ``size``
    along every axis is one block. Windows are at most ``size`` long and start on multiples of
    ``align``."""
    per_axis = [_axis_blocks(int(n), int(size), int(margin), max(1, int(align))) for n in shape]
    blocks = []
    for idx in np.ndindex(*[len(a) for a in per_axis]):
        parts = [per_axis[ax][i] for ax, i in enumerate(idx)]
        blocks.append(Block(len(blocks), tuple(p[0] for p in parts), tuple(p[1] for p in parts)))
    return blocks


def _in_core(centres: np.ndarray, core: tuple[slice, ...], tolerance: float) -> np.ndarray:
    lo = np.array([s.start for s in core], np.float64) - tolerance
    hi = np.array([s.stop for s in core], np.float64) + tolerance
    # a centroid at c belongs to pixel floor(c + 0.5) ... use the continuous position
    return np.all((centres + 0.5 >= lo) & (centres + 0.5 < hi), axis=1)


def _iou(a: Objects, i: int, b: Objects, j: int) -> float:
    ca, oa = a.crops[i], a.origins[i]
    cb, ob = b.crops[j], b.origins[j]
    lo = np.maximum(oa, ob)
    hi = np.minimum(oa + np.asarray(ca.shape), ob + np.asarray(cb.shape))
    if np.any(hi <= lo):
        return 0.0
    sa = ca[tuple(slice(l - o, h - o) for l, h, o in zip(lo, hi, oa))]
    sb = cb[tuple(slice(l - o, h - o) for l, h, o in zip(lo, hi, ob))]
    inter = int((sa & sb).sum())
    if not inter:
        return 0.0
    return inter / float(ca.sum() + cb.sum() - inter)


@dataclass
class MergeReport:
    """What the merge had to decide: objects that touched a window edge inside the image while
    their centre was in the core (larger than the margin: possibly cut) and duplicates removed."""

    cut: int = 0
    duplicates: int = 0


def merge_blocks(parts: list[tuple[Block, Objects]], shape, *, tolerance: float = 2.0,
                 report: MergeReport | None = None) -> Objects:
    """Objects of a whole plane from the objects each block found (in window coordinates)."""
    shape = tuple(int(s) for s in shape)
    if len(parts) == 1:
        block, objs = parts[0]
        return objs.shifted(block.offset, shape) if block.offset != (0,) * len(shape) or objs.shape != shape else objs
    kept: list[tuple[Block, Objects, np.ndarray]] = []
    for block, objs in parts:
        if not len(objs):
            continue
        g = objs.shifted(block.offset, shape)
        centres = g.centres()
        own = _in_core(centres, block.core, tolerance)
        g = g.select(own)
        centres = centres[own]
        if report is not None and len(g):
            b = g.bboxes
            nd = len(shape)
            w_lo = np.array([s.start for s in block.window])
            w_hi = np.array([s.stop for s in block.window])
            touches = ((b[:, :nd] <= w_lo) & (w_lo > 0)) | ((b[:, nd:] >= w_hi) & (w_hi < np.asarray(shape)))
            report.cut += int(np.any(touches, axis=1).sum())
        # distance of each centre inside its own core (for choosing between duplicates)
        lo = np.array([s.start for s in block.core], np.float64)
        hi = np.array([s.stop for s in block.core], np.float64)
        depth = np.min(np.minimum(centres + 0.5 - lo, hi - centres - 0.5), axis=1)
        kept.append((block, g, depth))
    if not kept:
        return Objects.empty(shape)
    # duplicates can only be objects kept thanks to the tolerance: centre within tolerance of a
    # core border, so compare just those across blocks
    near = [np.flatnonzero(d < tolerance) for _, _, d in kept]
    drop = [np.zeros(len(g), bool) for _, g, _ in kept]
    nd = len(shape)
    for a in range(len(kept)):
        for b in range(a + 1, len(kept)):
            ia, ib = near[a], near[b]
            if not len(ia) or not len(ib):
                continue
            ga, gb = kept[a][1], kept[b][1]
            ba, bb = ga.bboxes[ia], gb.bboxes[ib]
            overlap = np.all((ba[:, None, :nd] < bb[None, :, nd:]) & (bb[None, :, :nd] < ba[:, None, nd:]), axis=2)
            for i, j in zip(*np.nonzero(overlap)):
                oi, oj = ia[i], ib[j]
                if drop[a][oi] or drop[b][oj]:
                    continue
                if _iou(ga, oi, gb, oj) >= 0.5:
                    if kept[a][2][oi] >= kept[b][2][oj]:
                        drop[b][oj] = True
                    else:
                        drop[a][oi] = True
                    if report is not None:
                        report.duplicates += 1
    return Objects.concat([g.select(~d) for (_, g, _), d in zip(kept, drop)], shape)
