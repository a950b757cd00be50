"""3D objects from the per-plane probability maps of a stack: one label per nucleus through Z.

A 2D semantic model sees one plane at a time; its per-plane class probabilities and boundary (or
distance) maps are stacked into volumes ``(Z, H, W)`` and cut into 3D objects by a seeded
watershed (:func:`volume_instances`), with the voxel size ratio ``z_ratio`` (Z spacing / pixel
size) making every distance anisotropy-aware:

* foreground: ``1 - P(background) >= threshold``;
* centre map: the anisotropic Euclidean distance of each foreground voxel to the background, in
  pixels along X/Y (a Z step counts ``z_ratio`` pixels), times ``1 - boundary probability``
  (``output: boundary``), the predicted normalised distance (``output: distance``) or both
  (``boundary+distance``, by ``seeds``): it peaks once inside each object, and the predicted
  borders dent it where objects touch *within* a plane, the distance where they touch *through
  Z* (where a plane's borders say nothing);
* seeds: the maxima of the centre map standing at least ``seed_h`` above the saddle to any
  higher maximum (h-maxima), or given ``markers``;
* the watershed floods the negated centre map from the seeds within the foreground; a piece of
  foreground without a seed keeps its own label; objects under ``min_volume`` voxels are dropped.

Each object takes the class most of its voxels have and scores its mean foreground probability.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def anisotropic_distance(mask: np.ndarray, z_ratio: float = 1.0) -> np.ndarray:
    """Euclidean distance of each voxel of ``mask`` (Z, H, W) to the nearest voxel outside it, in
    pixels along X/Y (a step along Z is ``z_ratio`` pixels). Background is 0."""
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    # the stack's faces are not background: an object cut by them continues beyond (unknown)
    return ndimage.distance_transform_edt(mask, sampling=(float(z_ratio), 1.0, 1.0)).astype(np.float32)


def remove_small_3d(labels: np.ndarray, min_volume: int) -> np.ndarray:
    if min_volume <= 1 or labels.max(initial=0) == 0:
        return labels
    counts = np.bincount(labels.ravel())
    small = counts < min_volume
    small[0] = False
    if small.any():
        labels = np.where(small[labels], 0, labels)
    return labels


def h_maxima_regions(image: np.ndarray, h: float) -> np.ndarray:
    """The regional maxima of the h-dome reconstruction of ``image`` (boolean): one connected
    region around the peaks of each dome at least ``h`` high. (scikit-image's ``h_maxima`` marks
    only the peak voxels, so two equal peaks with a shallow dip between them would make two seeds.)"""
    from skimage.morphology import local_maxima, reconstruction

    image = np.asarray(image, np.float64)
    rec = reconstruction(image - max(float(h), 1e-6), image, method="dilation")
    return np.asarray(local_maxima(rec), bool)


def seeded_watershed_3d(mask: np.ndarray, *, weight: np.ndarray | None = None, markers: np.ndarray | None = None,
                        z_ratio: float = 1.0, seed_h: float = 2.0) -> np.ndarray:
    """Split the 3D foreground ``mask`` (Z, H, W) into objects (int32 labels 1..N).

    The centre map is the anisotropic distance to the background (pixels; a Z step is
    ``z_ratio`` pixels), times ``weight`` (e.g. 1 - boundary probability) when given. Seeds are
    ``markers`` (a label image, or a binary image whose 3D connected pieces are the seeds) when
    given, else the maxima of the centre map that stand at least ``seed_h`` above the saddle to
    any higher maximum (h-maxima). The watershed floods the negated centre map from the seeds
    within the mask; a piece of the mask without a seed keeps its own label.
    """
    from skimage.segmentation import watershed

    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3D (Z, H, W), got shape {mask.shape}")
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    centre = anisotropic_distance(mask, z_ratio)
    if weight is not None:
        centre = centre * np.clip(np.asarray(weight, np.float32), 0.0, 1.0)
    if markers is not None:
        markers = np.asarray(markers)
        if markers.shape != mask.shape:
            raise ValueError(f"markers have shape {markers.shape}, the mask {mask.shape}")
        seeds = ndimage.label(markers > 0)[0] if markers.dtype == bool or markers.max() <= 1 else \
            markers.astype(np.int32)
        seeds = np.where(mask, seeds, 0)
    else:
        seeds = ndimage.label(h_maxima_regions(centre, seed_h) & mask)[0]
    from morphoscope.tasks.semantic.postprocess import with_orphan_seeds

    return watershed(-centre, with_orphan_seeds(seeds, mask).astype(np.int32), mask=mask).astype(np.int32)


def volume_instances(probs: np.ndarray, aux: np.ndarray | None, *, kind: str = "mask", threshold: float = 0.5,
                     seeds: str = "both", seed_h: float = 2.0, min_volume: int = 20, z_ratio: float = 1.0,
                     method: str = "watershed", markers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3D instance labels (int32 ``(Z, H, W)``, 1..N), the class of each label and its score (index
    0 unused) from stacked class probabilities ``probs`` (K+1, Z, H, W) and the stacked extra
    map(s) ``aux`` ((Z, H, W), or (2, Z, H, W) for ``boundary+distance``); see the module
    docstring. ``method="components"`` labels the 3D connected pieces of each class instead."""
    from morphoscope.tasks.semantic.postprocess import classes_and_scores, relabel

    fgp = 1.0 - probs[0].astype(np.float32)
    fg = fgp >= threshold
    cls = probs[1:].argmax(0).astype(np.int32) + 1
    if method == "components":
        labels = np.zeros(fg.shape, np.int32)
        n = 0
        for c in np.unique(cls[fg]):
            cc, k = ndimage.label(fg & (cls == c))
            labels[cc > 0] = cc[cc > 0] + n
            n += k
    else:
        weight = None
        if aux is not None:
            aux = aux.astype(np.float32)
            if kind == "boundary+distance":
                b, d = 1.0 - aux[0], aux[1]
                weight = {"boundary": b, "distance": d}.get(seeds, b * d)
            elif kind == "boundary":
                weight = 1.0 - aux
            elif kind == "distance":
                weight = aux
        labels = seeded_watershed_3d(fg, weight=weight, markers=markers, z_ratio=z_ratio, seed_h=seed_h)
    labels = relabel(remove_small_3d(labels, min_volume)).astype(np.int32)
    label_classes, scores = classes_and_scores(labels, probs, cls)
    return labels, label_classes, scores
