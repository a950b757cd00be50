"""Stacks (2D, 3D, 3D+t, with or without channels): read from any image the project reads (TIFF,
ImageJ hyperstacks, OME-TIFF, OME-Zarr, PNG...), written as ImageJ hyperstacks or OME-TIFF.

Axes are letters of ``TZCYX`` in the order the array is stored (tifffile's ``S`` — RGB samples —
is read as ``C``). They come from the OME or ImageJ metadata, or are given explicitly
(``--axes`` / ``data.axes``); a multi-page file whose metadata does not say what its pages are
is refused with an error asking for them (the rules live in :mod:`morphoscope.io.metadata`). Pixel size (µm per pixel in X and Y), Z spacing and
time interval are read from the metadata and written back, so outputs line up with inputs in
Fiji/napari.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.io.atomic import atomic_write
from morphoscope.io.metadata import AXES, validate_axes
from morphoscope.io.source import open_image

__all__ = ["AXES", "Stack", "read_stack", "validate_axes", "write_like", "write_stack"]


@dataclass
class Stack:
    """An image or stack with its axes and physical sizes (None where unknown)."""

    data: np.ndarray
    axes: str
    pixel_size: float | None = None  # µm per pixel in X (and Y)
    z_spacing: float | None = None
    time_interval: float | None = None
    ome: bool = False
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def plane_axes(self) -> str:
        """Axes that index 2D planes (all but Y, X and C), in stored order."""
        return "".join(a for a in self.axes if a not in "YXC")

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[self.axes.index(a)] for a in self.plane_axes)

    @property
    def is_2d(self) -> bool:
        return not self.plane_axes

    def canonical(self) -> np.ndarray:
        """Data as ``(*planes, Y, X, C)`` (planes in stored order; C=1 when there are no channels)."""
        order = [self.axes.index(a) for a in self.plane_axes] + [self.axes.index("Y"), self.axes.index("X")]
        if "C" in self.axes:
            order.append(self.axes.index("C"))
            return np.transpose(self.data, order)
        return np.transpose(self.data, order)[..., None]

    def planes(self):
        """Yield ``(index, plane)``: index is a dict axis -> position, plane ``(Y, X)`` or ``(Y, X, C)``."""
        can = self.canonical()
        pa = self.plane_axes
        for idx in np.ndindex(*can.shape[: len(pa)]):
            plane = can[idx]
            yield dict(zip(pa, idx)), (plane[..., 0] if "C" not in self.axes else plane)


def read_stack(path: str | Path, *, axes: str | None = None) -> Stack:
    """Read an image or stack with its axes; ``axes`` overrides (or supplies) the metadata's.

    Axes and physical sizes come from :func:`morphoscope.io.metadata.read_metadata`. Raises
    :class:`InputError` when the axes cannot be determined (asks for ``--axes``) or when the given
    axes do not fit the data.
    """
    path = Path(path)
    with open_image(path, axes=axes) as source:
        meta = source.meta
        data = source._stored_array()
    return Stack(data=np.ascontiguousarray(data), axes=meta.axes, pixel_size=meta.pixel_size,
                 z_spacing=meta.z_spacing, time_interval=meta.time_interval,
                 ome=meta.format in ("ome-tiff", "ome-zarr"), path=path)


def _imagej_ok(axes: str, dtype) -> bool:
    order = "TZCYX"
    pos = [order.index(a) for a in axes]
    return pos == sorted(pos) and np.dtype(dtype) in (np.uint8, np.uint16, np.float32)


def write_stack(path: str | Path, data: np.ndarray, axes: str, *, pixel_size: float | None = None,
                z_spacing: float | None = None, time_interval: float | None = None, ome: bool | None = None,
                overwrite: bool = True, compression: str | None = "zlib") -> None:
    """Write ``data`` with its axes and physical sizes: an ImageJ hyperstack when the axes order and
    dtype allow it (and ``ome`` is not asked for), else OME-TIFF. Atomic."""
    import tifffile

    axes = validate_axes(axes)
    data = np.asarray(data)
    if len(axes) != data.ndim:
        raise ValueError(f"axes '{axes}' do not fit an array of shape {data.shape}")
    buf = io.BytesIO()
    kw: dict = {}
    if compression:
        kw["compression"] = compression
    use_imagej = (not ome) and _imagej_ok(axes, data.dtype)
    if use_imagej:
        md = {"axes": axes}
        if pixel_size:
            md["unit"] = "um"  # ImageJ's unit applies to X, Y and Z
            kw["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
        if z_spacing:
            md["spacing"] = float(z_spacing)
            if not pixel_size:
                md["zunit"] = "um"  # a unit for Z alone: "unit" would make the pixels 1 µm
        if time_interval:
            md.update(finterval=float(time_interval), tunit="sec")
        tifffile.imwrite(buf, data, imagej=True, metadata=md, **kw)
    else:
        md = {"axes": axes}
        if pixel_size:
            md.update(PhysicalSizeX=float(pixel_size), PhysicalSizeY=float(pixel_size),
                      PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
        if z_spacing:
            md.update(PhysicalSizeZ=float(z_spacing), PhysicalSizeZUnit="µm")
        if time_interval:
            md.update(TimeIncrement=float(time_interval), TimeIncrementUnit="s")
        tifffile.imwrite(buf, data, ome=True, metadata=md, photometric="minisblack", **kw)
    with atomic_write(path, overwrite=overwrite) as fh:
        fh.write(buf.getvalue())


def write_like(path: str | Path, data: np.ndarray, axes: str, like: Stack, *, overwrite: bool = True) -> None:
    """Write ``data`` (axes ``axes``) with the physical sizes and flavour (OME/ImageJ) of ``like``."""
    write_stack(path, data, axes, pixel_size=like.pixel_size, z_spacing=like.z_spacing,
                time_interval=like.time_interval, ome=like.ome or None, overwrite=overwrite)
