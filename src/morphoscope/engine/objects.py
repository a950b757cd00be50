"""Objects: the instances found in one image, each a boolean crop at an origin.

Every object is stored as its own mask cropped to its bounding box, so memory and time grow with
the objects, not with objects x image size, objects may overlap (an organelle inside a cell), and
there is no cap on their number. 2D (``(H, W)``) and 3D (``(Z, H, W)``) images work the same way.

Objects are kept sorted by score, highest first; a label image numbers them in that order, so
label ``k`` is object ``k - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Objects:
    """Instances of one image: ``crops[i]`` is object ``i``'s mask inside the window starting at
    ``origins[i]`` (one coordinate per axis); ``scores`` in [0, 1]; ``classes`` 1..K."""

    shape: tuple[int, ...]
    crops: list[np.ndarray]
    origins: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        self.origins = np.asarray(self.origins, np.int64).reshape(-1, len(self.shape))
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, np.int64).reshape(-1)
        if not (len(self.crops) == len(self.origins) == len(self.scores) == len(self.classes)):
            raise ValueError("crops, origins, scores and classes must have one entry per object")

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def empty(cls, shape) -> Objects:
        nd = len(shape)
        return cls(shape, [], np.zeros((0, nd), np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_labels(cls, labels: np.ndarray, *, classes=None, scores=None) -> Objects:
        """Objects of a label image (0 = background). ``classes`` / ``scores`` are arrays indexed
        by label or mappings {label: value}; default class 1 and score 1."""
        from scipy import ndimage

        labels = np.asarray(labels)
        slices = ndimage.find_objects(labels)
        crops, origins, ids = [], [], []
        for k, sl in enumerate(slices, start=1):
            if sl is None:
                continue
            crops.append(labels[sl] == k)
            origins.append([s.start for s in sl])
            ids.append(k)

        def lookup(table, default):
            if table is None:
                return [default] * len(ids)
            return [table[k] for k in ids]

        obj = cls(labels.shape, crops, np.asarray(origins, np.int64).reshape(-1, labels.ndim),
                  lookup(scores, 1.0), lookup(classes, 1))
        return obj.sorted()

    @classmethod
    def concat(cls, parts: Sequence[Objects], shape) -> Objects:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(shape)
        return cls(shape, [c for p in parts for c in p.crops], np.concatenate([p.origins for p in parts]),
                   np.concatenate([p.scores for p in parts]), np.concatenate([p.classes for p in parts])).sorted()

    # ---- selection ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index) -> Objects:
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Objects(self.shape, [self.crops[i] for i in index], self.origins[index], self.scores[index],
                       self.classes[index])

    def sorted(self) -> Objects:
        """Highest score first (stable: equal scores keep their order)."""
        order = np.argsort(-self.scores, kind="stable")
        if np.all(order == np.arange(len(order))):
            return self
        return self.select(order)

    def above(self, score_threshold: float) -> Objects:
        return self.select(self.scores >= score_threshold)

    def of_class(self, k: int) -> Objects:
        return self.select(self.classes == k)

    # ---- geometry -----------------------------------------------------------------------------
    @property
    def areas(self) -> np.ndarray:
        """Pixels (voxels) per object."""
        return np.array([int(c.sum()) for c in self.crops], np.int64)

    @property
    def bboxes(self) -> np.ndarray:
        """``(N, 2 * ndim)`` start and stop per axis of each crop window (pixels, stop exclusive)."""
        nd = len(self.shape)
        if not len(self):
            return np.zeros((0, 2 * nd), np.int64)
        sizes = np.array([c.shape for c in self.crops], np.int64).reshape(-1, nd)
        return np.concatenate([self.origins, self.origins + sizes], axis=1)

    def centres(self) -> np.ndarray:
        """``(N, ndim)`` centroid of each mask in image coordinates (empty masks: window centre)."""
        out = np.zeros((len(self), len(self.shape)), np.float64)
        for i, (c, o) in enumerate(zip(self.crops, self.origins)):
            idx = np.nonzero(c)
            out[i] = [ix.mean() for ix in idx] if len(idx[0]) else np.asarray(c.shape) / 2 - 0.5
            out[i] += o
        return out

    def tight(self, *, min_area: int = 1) -> Objects:
        """Crops cut to their masks' extent; objects with fewer than ``min_area`` pixels dropped."""
        crops, origins, keep = [], [], []
        for i, (c, o) in enumerate(zip(self.crops, self.origins)):
            if c.sum() < max(min_area, 1):
                continue
            sl = tuple(slice(ix.min(), ix.max() + 1) for ix in np.nonzero(c))
            crops.append(np.ascontiguousarray(c[sl]))
            origins.append(o + [s.start for s in sl])
            keep.append(i)
        keep = np.asarray(keep, np.int64)
        return Objects(self.shape, crops, np.asarray(origins, np.int64).reshape(-1, len(self.shape)),
                       self.scores[keep], self.classes[keep])

    def shifted(self, offset, shape) -> Objects:
        """The same objects in a larger image where this one starts at ``offset``."""
        return Objects(shape, list(self.crops), self.origins + np.asarray(offset, np.int64), self.scores,
                       self.classes)

    def mask(self, i: int) -> np.ndarray:
        """Object ``i`` as a full-size bool mask."""
        full = np.zeros(self.shape, bool)
        c = self.crops[i]
        full[tuple(slice(o, o + s) for o, s in zip(self.origins[i], c.shape))] = c
        return full

    def rescaled(self, shape) -> Objects:
        """The objects on another grid of the same field of view (``shape``), e.g. back to the
        input's pixels after predicting a rescaled image. Masks are resampled by nearest
        neighbour at pixel centres."""
        shape = tuple(int(s) for s in shape)
        if shape == self.shape:
            return self
        f = np.asarray(shape, np.float64) / np.asarray(self.shape, np.float64)
        crops, origins, keep = [], [], []
        for i, (c, o) in enumerate(zip(self.crops, self.origins)):
            start = np.floor(o * f).astype(np.int64)
            stop = np.minimum(np.ceil((o + np.asarray(c.shape)) * f).astype(np.int64), shape)
            # source index of each target pixel centre
            idx = [np.clip(np.floor((np.arange(a, b) + 0.5) / fi).astype(np.int64) - oi, 0, n - 1)
                   for a, b, fi, oi, n in zip(start, stop, f, o, c.shape)]
            new = c[np.ix_(*idx)]
            if not new.any():
                continue
            crops.append(new)
            origins.append(start)
            keep.append(i)
        keep = np.asarray(keep, np.int64)
        return Objects(shape, crops, np.asarray(origins, np.int64).reshape(-1, len(shape)),
                       self.scores[keep], self.classes[keep]).tight()

    # ---- label images -------------------------------------------------------------------------
    def to_labels(self, *, min_area: int = 1, dtype=None) -> tuple[np.ndarray, np.ndarray]:
        """One label image of all objects. Where masks overlap, the higher-scoring object keeps
        the pixel; objects left with fewer than ``min_area`` pixels are dropped (``min_area=0``
        keeps every object, numbered even where it is wholly hidden: boxes of a detector).
        Returns ``(labels, index)``: label ``k`` is object ``index[k - 1]``."""
        if dtype is None:
            dtype = np.uint16 if len(self) < 65535 else np.uint32
        labels = np.zeros(self.shape, dtype)
        kept = []
        for i, (c, o) in enumerate(zip(self.crops, self.origins)):
            window = labels[tuple(slice(a, a + s) for a, s in zip(o, c.shape))]
            free = c & (window == 0)
            if min_area > 0 and free.sum() < min_area:
                continue
            kept.append(i)
            window[free] = len(kept)
        return labels, np.asarray(kept, np.int64)

    def paint(self, window: tuple[slice, ...], numbers: np.ndarray, *, dtype=np.uint32) -> np.ndarray:
        """The part ``window`` of a label image in which object ``i`` has value ``numbers[i]``
        (0 = not drawn); overlaps go to the higher score. For writing huge label images block
        by block: only objects meeting the window are touched."""
        start = np.array([s.start for s in window], np.int64)
        stop = np.array([s.stop for s in window], np.int64)
        out = np.zeros(tuple(stop - start), dtype)
        b = self.bboxes
        nd = len(self.shape)
        hits = np.flatnonzero(np.all((b[:, :nd] < stop) & (b[:, nd:] > start), axis=1)) if len(self) else []
        for i in hits:  # highest score first: later (lower) objects only fill free pixels
            if not numbers[i]:
                continue
            c, o = self.crops[i], self.origins[i]
            lo = np.maximum(o, start)
            hi = np.minimum(o + np.asarray(c.shape), stop)
            src = c[tuple(slice(a - oo, b_ - oo) for a, b_, oo in zip(lo, hi, o))]
            dst = out[tuple(slice(a - s, b_ - s) for a, b_, s in zip(lo, hi, start))]
            dst[src & (dst == 0)] = numbers[i]
        return out

    # ---- COCO ---------------------------------------------------------------------------------
    def rle(self, i: int) -> dict:
        """Object ``i`` as COCO compressed RLE of the whole (2D) image, built from its crop alone:
        byte-identical to ``pycocotools.mask.encode`` of the full-size mask."""
        return crop_rle(self.crops[i], self.origins[i], self.shape)


def crop_rle(crop: np.ndarray, origin, shape) -> dict:
    """COCO RLE (``{"size": [H, W], "counts": str}``) of a 2D mask given as a crop at ``origin``.

    COCO runs go down the columns (Fortran order), alternating background and object, starting
    with background. Inside the crop's window a column is ``h`` crop pixels followed by ``H - h``
    background pixels up to the same row of the next column, so the runs are computed on the
    crop plus one weighted separator per column: O(crop) work instead of O(H x W).
    """
    from pycocotools import mask as mask_utils

    H, W = (int(s) for s in shape)
    y0, x0 = (int(v) for v in origin)
    crop = np.asarray(crop, bool)
    h, w = crop.shape
    gap = H - h
    if gap:
        values = np.concatenate([crop.T, np.zeros((w, 1), bool)], axis=1).ravel()
        lengths = np.concatenate([np.ones((w, h), np.int64), np.full((w, 1), gap)], axis=1).ravel()
        values, lengths = values[:-1], lengths[:-1]  # the last column's gap is part of the tail
    else:
        values = crop.T.ravel()
        lengths = np.ones(values.size, np.int64)
    lead = x0 * H + y0
    counts: list[int] = []
    if values.size:
        starts = np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1])
        runs = np.add.reduceat(lengths, starts)
        first_is_object = bool(values[0])
        runs = runs.tolist()
        if first_is_object:
            counts = [lead] + runs
        else:
            counts = [lead + runs[0]] + runs[1:]
        used = lead + int(lengths.sum())
        tail = H * W - used
        if tail:
            if len(counts) % 2 == 1:  # ends on a background run
                counts[-1] += tail
            else:
                counts.append(tail)
    else:
        counts = [H * W]
    rle = mask_utils.frPyObjects({"size": [H, W], "counts": counts}, H, W)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle
