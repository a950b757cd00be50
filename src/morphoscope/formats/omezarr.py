"""OME-Zarr label images: ``NAME_labels.ome.zarr`` beside ``NAME_labels.tif``, the same labels
with their physical scale (µm per pixel, z spacing, time interval), written by
:func:`morphoscope.io.omezarr.write_labels_zarr` (NGFF 0.4 ``multiscales`` with ``image-label``
metadata), so ome-zarr-py, napari-ome-zarr and other NGFF readers open it as a labels image.

Axes follow NGFF's order (T, Z, Y, X): a stack stored as ZTYX is written as TZYX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from morphoscope.formats.export_common import total_objects

SUFFIX = "_labels.ome.zarr"
_NGFF_ORDER = "TCZYX"


def plane_labels(ctx) -> tuple[np.ndarray, str]:
    """The input's label image as in ``NAME_labels.tif`` (each plane's labels numbered after the
    previous planes'), in NGFF axis order; returns ``(labels, axes)``."""
    item = ctx.item
    dtype = np.uint16 if total_objects(ctx) < 65535 else np.uint32
    if not item.plane_axes:
        plane = ctx.planes[0]
        return np.where(plane.labels > 0, plane.labels.astype(np.int64) + plane.offset, 0).astype(dtype), "YX"
    height, width = ctx.planes[0].labels.shape
    stack = np.zeros(tuple(item.plane_shape) + (height, width), dtype)
    for plane in ctx.planes:
        index = tuple(int(plane.index[a]) for a in item.plane_axes)
        stack[index] = np.where(plane.labels > 0, plane.labels.astype(np.int64) + plane.offset, 0)
    order = item.plane_axes + "YX"
    axes = "".join(a for a in _NGFF_ORDER if a in order)
    return np.ascontiguousarray(np.transpose(stack, [order.index(a) for a in axes])), axes


class OmeZarrLabels:
    """The ``ome-zarr`` export: ``NAME_labels.ome.zarr`` per input."""

    name = "ome-zarr"
    needs_measurements = False

    def files(self, out: Path, name: str) -> list[Path]:
        return [Path(out) / f"{name}{SUFFIX}"]

    def run_files(self, out: Path) -> list[Path]:
        return []

    def write_image(self, ctx) -> None:
        from morphoscope.io.omezarr import write_labels_zarr

        if any(p.labels is None for p in ctx.planes):
            return  # a plane too large to hold whole: the prediction writer painted this file block by block
        labels, axes = plane_labels(ctx)
        write_labels_zarr(self.files(ctx.out, ctx.item.name)[0], labels, axes=axes, pixel_size=ctx.pixel_size,
                          z_spacing=ctx.item.z_spacing, time_interval=ctx.item.time_interval,
                          name=f"{ctx.item.name} labels", overwrite=True)

    def finish(self, out: Path, records: list[dict], records_dir: Path) -> None:
        return None
