"""From probability maps to instance labels: connected components or seeded watershed.

Seeds for the watershed, by what the model predicts besides the classes:

``boundary``  connected components of pixels that are foreground and not border
              (boundary probability < ``seed_threshold``); the flooding runs on the boundary map.
``distance``  connected components of pixels whose predicted normalised distance to the border is
              above ``seed_threshold``; the flooding runs on the negated distance.
``boundary+distance``  both maps (``aux`` is (2, H, W)): seeds are where the boundary
              probability is below ``seed_threshold`` and/or the distance above
              ``distance_threshold`` (``seeds``: boundary, distance or both); the flooding runs on
              the boundary map minus the distance.
``mask``      (no extra head) the classic distance-transform watershed: seeds are the h-maxima of
              the Euclidean distance transform of the mask.

Each object gets the class most of its pixels have. Seeds and objects smaller than ``min_size``
pixels are dropped (a small object whose seed was dropped is then lost, by design).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def foreground(probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` (K+1, H, W) -> foreground mask (1 - P(background) >= threshold) and per-pixel class."""
    fg = (1.0 - probs[0]) >= threshold
    cls = probs[1:].argmax(0).astype(np.int32) + 1
    return fg, np.where(fg, cls, 0)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    if min_size <= 1 or labels.max(initial=0) == 0:
        return labels
    counts = np.bincount(labels.ravel())
    small = counts < min_size
    small[0] = False
    if small.any():
        labels = labels.copy()
        labels[small[labels]] = 0
    return labels


def relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive labels 1..N in raster order of first appearance."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0]


def instances_from_probs(probs: np.ndarray, aux: np.ndarray | None, *, kind: str = "mask",
                         method: str = "watershed", threshold: float = 0.5, seed_threshold: float = 0.5,
                         min_size: int = 10, distance_threshold: float = 0.5, seeds: str = "both",
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance labels (int32, 1..N), the class of each label and its score (index 0 unused).

    The score of an object is its mean foreground probability.
    """
    fg, cls = foreground(probs, threshold)
    if method == "components":
        labels = np.zeros(fg.shape, np.int32)
        n = 0
        for c in np.unique(cls[fg]):
            cc, k = ndimage.label(cls == c)
            labels[cc > 0] = cc[cc > 0] + n
            n += k
    else:
        labels = seeded_watershed(fg, aux, kind=kind, seed_threshold=seed_threshold, min_size=min_size,
                                  distance_threshold=distance_threshold, seeds=seeds)
    labels = relabel(remove_small(labels, min_size)).astype(np.int32)
    label_classes, scores = classes_and_scores(labels, probs, cls)
    return labels, label_classes, scores


def classes_and_scores(labels: np.ndarray, probs: np.ndarray, cls: np.ndarray):
    """Per label (index = label, 0 unused) of a 2D or 3D label image: its class, the majority of
    its pixels' most probable classes ``cls``, and its score, the mean foreground probability."""
    n = int(labels.max(initial=0))
    label_classes = np.zeros(n + 1, np.int64)
    scores = np.zeros(n + 1, np.float32)
    if n:
        idx = np.arange(1, n + 1)
        scores[1:] = ndimage.mean(1.0 - probs[0].astype(np.float32), labels, idx)
        k = probs.shape[0] - 1
        if k == 1:
            label_classes[1:] = 1
        else:
            votes = np.stack([ndimage.sum(cls == c, labels, idx) for c in range(1, k + 1)])
            label_classes[1:] = votes.argmax(0) + 1
    return label_classes, scores


def seeded_watershed(mask: np.ndarray, aux: np.ndarray | None, *, kind: str = "mask",
                     seed_threshold: float = 0.5, min_size: int = 10, h: float = 2.0,
                     distance_threshold: float = 0.5, seeds: str = "both") -> np.ndarray:
    """Split the binary ``mask`` into objects by a watershed from seeds (see module docstring)."""
    from skimage.segmentation import watershed

    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    if kind == "boundary+distance" and aux is not None:
        b, d = aux[0], aux[1]
        if seeds == "boundary":
            seeds_mask = mask & (b < seed_threshold)
        elif seeds == "distance":
            seeds_mask = mask & (d > distance_threshold)
        else:
            seeds_mask = mask & (b < seed_threshold) & (d > distance_threshold)
        elevation = b - d
    elif kind == "boundary" and aux is not None:
        seeds_mask = mask & (aux < seed_threshold)
        elevation = aux
    elif kind == "distance" and aux is not None:
        seeds_mask = mask & (aux > seed_threshold)
        elevation = -aux
    else:
        from skimage.morphology import h_maxima

        dist = ndimage.distance_transform_edt(mask)
        seeds_mask = h_maxima(dist, h).astype(bool) & mask
        elevation = -dist
    seeds, n = ndimage.label(seeds_mask)
    if kind in ("boundary", "distance", "boundary+distance") and aux is not None:  # h-maxima are often single pixels
        seeds = remove_small(seeds, min_size)  # specks in the border band would become slivers
    return watershed(elevation, with_orphan_seeds(seeds, mask), mask=mask).astype(np.int32)


def with_orphan_seeds(seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``seeds`` plus one new seed for each piece of ``mask`` (2D or 3D) that holds none: such
    pieces keep their own label instead of vanishing in the watershed."""
    cc, k = ndimage.label(mask)
    if k:
        seeded = np.zeros(k + 1, bool)
        seeded[np.unique(cc[seeds > 0])] = True
        orphan = ~seeded[cc] & mask
        if orphan.any():
            extra, _ = ndimage.label(orphan)
            seeds = np.where(extra > 0, extra + seeds.max(initial=0), seeds)
    return seeds
