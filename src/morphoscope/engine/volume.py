"""Stacks through Z: the planes of one input, predicted one by one, handed to the task's
:meth:`~morphoscope.engine.task.Inference.merge_stack` per time point, and the helpers a task uses
to turn them into 3D results.

* :func:`merge_stacks` groups an input's plane results by every plane axis but Z (one group per
  T), in Z order, calls the hook on each group and returns the results to write: the planes
  unchanged (2D objects per plane, the default) or one 3D :class:`ImageResult` per time point
  whose :class:`Objects` have shape ``(Z, H, W)``.
* :func:`stack_maps` / :func:`volume_result`: a task that keeps per-plane probability maps
  stacks them into a volume and wraps its 3D objects as one result (the semantic task's 3D
  seeded watershed).
* :func:`stitch_planes`: a generic alternative for any model with 2D objects: objects of
  consecutive planes are linked through Z when their IoU reaches a threshold (one-to-one, the
  best pairs first), as Cellpose's ``stitch_threshold`` does.
"""

from __future__ import annotations

import numpy as np

from morphoscope.engine.objects import Objects
from morphoscope.engine.result import ImageResult


def z_groups(planes: list[dict], plane_axes: str) -> list[list[int]]:
    """Indices of ``planes`` (their ``{axis: position}``) grouped by every axis but Z, groups in
    order of first appearance, each in Z order; without a Z axis each plane is its own group."""
    if "Z" not in plane_axes:
        return [[i] for i in range(len(planes))]
    groups: dict[tuple, list[int]] = {}
    for i, idx in enumerate(planes):
        key = tuple((a, int(v)) for a, v in sorted(idx.items()) if a != "Z")
        groups.setdefault(key, []).append(i)
    return [sorted(g, key=lambda i: int(planes[i].get("Z", 0))) for g in groups.values()]


def merge_stacks(inference, results: list[ImageResult], plane_axes: str,
                 z_spacing_ratio: float | None = None) -> list[ImageResult]:
    """The results of one input after :meth:`Inference.merge_stack` on each time point (see the
    module docstring). ``z_spacing_ratio`` = Z spacing / pixel size (None when unknown).
    Results with class scores (classifiers) are returned as they are."""
    if not results or any(r.kind != "objects" for r in results):
        return results
    hook = getattr(inference, "merge_stack", None)
    if hook is None:
        return results
    out: list[ImageResult] = []
    for group in z_groups([r.plane for r in results], plane_axes):
        out += list(hook([results[i] for i in group], z_spacing_ratio))
    dims = {len(r.shape) for r in out}
    if len(dims) > 1:
        raise ValueError("merge_stack returned 2D and 3D results for one input; return one kind")
    return out


def is_volume(results: list[ImageResult]) -> bool:
    """The results hold 3D objects (one result per time point)."""
    return bool(results) and len(results[0].shape) == 3


def stack_maps(results: list[ImageResult]) -> np.ndarray | None:
    """The planes' kept maps stacked as ``(channels, Z, H, W)``, or None when a plane has none."""
    if not results or any(r.maps is None for r in results):
        return None
    shapes = {r.maps.shape for r in results}
    if len(shapes) != 1:
        return None
    return np.stack([r.maps for r in results], axis=1)


def drop_maps(results: list[ImageResult]) -> list[ImageResult]:
    """The results without their kept maps (kept only to merge them)."""
    for r in results:
        r.maps = None
        r.remake = None
    return results


def volume_result(planes: list[ImageResult], objects: Objects, *, maps: np.ndarray | None = None, remake=None,
                  warnings=(), settings: dict | None = None) -> ImageResult:
    """One 3D result of the plane results ``planes`` (one time point, Z order) with the 3D
    ``objects`` (shape ``(Z, H, W)``); ``plane`` keeps the positions of the axes other than Z."""
    first = planes[0]
    if objects.shape[0] != len(planes) or tuple(objects.shape[1:]) != tuple(first.shape):
        raise ValueError(f"3D objects of shape {objects.shape} do not fit {len(planes)} planes of {first.shape}")
    return ImageResult(
        name=first.name, shape=tuple(objects.shape), class_names=list(first.class_names),
        plane={a: v for a, v in first.plane.items() if a != "Z"}, objects=objects, maps=maps,
        threshold_kind=first.threshold_kind, threshold=first.threshold, remake=remake,
        pixel_size=first.pixel_size,
        warnings=sorted({w for r in planes for w in r.warnings} | set(warnings)),
        seconds=float(sum(r.seconds for r in planes)), settings={**first.settings, **(settings or {})})


def stitch_planes(planes: list[ImageResult], *, iou: float = 0.25) -> ImageResult:
    """One 3D result from the 2D objects of consecutive planes (one time point, Z order): an
    object continues the object of the plane above that it overlaps with IoU >= ``iou`` (a
    one-to-one assignment with the most, then the best, pairs), or starts a new one. A 3D
    object's score is the mean of its pieces' scores and its class their most frequent.
    The objects are taken at each plane's own threshold; the result's threshold is then None."""
    from morphoscope.metrics.matching import match

    if not 0 < iou <= 1:
        raise ValueError(f"stitching IoU must lie in (0, 1], got {iou}")
    h, w = planes[0].shape
    volume = np.zeros((len(planes), h, w), np.int64)
    scores: dict[int, list[float]] = {}
    classes: dict[int, list[int]] = {}
    top = 0
    prev = None
    for z, res in enumerate(planes):
        objs = res.objects_at()
        labels, index = objs.to_labels(dtype=np.int64)
        new = np.zeros(len(index) + 1, np.int64)
        if prev is not None and len(index) and prev.any():
            tm = match(prev, labels, thresholds=(iou,))[iou]
            new[tm.pred_ids] = tm.gt_ids
        for k in range(1, len(index) + 1):
            if not new[k]:
                top += 1
                new[k] = top
            i = index[k - 1]
            scores.setdefault(int(new[k]), []).append(float(objs.scores[i]))
            classes.setdefault(int(new[k]), []).append(int(objs.classes[i]))
        volume[z] = new[labels]
        prev = volume[z]
    s = {k: float(np.mean(v)) for k, v in scores.items()}
    c = {k: int(np.bincount(v).argmax()) for k, v in classes.items()}
    objects = Objects.from_labels(volume, scores=s, classes=c)
    out = volume_result(planes, objects, settings={"stitch_iou": float(iou)})
    out.threshold_kind = out.threshold = None  # the planes' thresholds are applied already
    return out
