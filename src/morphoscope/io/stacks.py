"""Stacks (2D, 3D, 3D+t, with or without channels): TIFF, ImageJ hyperstacks and OME-TIFF.

Axes are letters of ``TZCYX`` in the order the array is stored (tifffile's ``S`` — RGB samples —
is read as ``C``). They come from the OME or ImageJ metadata, or are given explicitly
(``--axes`` / ``data.axes``); a multi-page file whose metadata does not say what its pages are
is refused with an error asking for them. Pixel size (µm per pixel in X and Y), Z spacing and
time interval are read from the metadata and written back, so outputs line up with inputs in
Fiji/napari.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.io.atomic import atomic_write

AXES = "TZCYX"
_TIFF = (".tif", ".tiff")


def validate_axes(axes: str) -> str:
    """Upper-case and check an axes string: letters of TZCYX, each at most once, Y and X present."""
    a = str(axes).strip().upper().replace("S", "C")
    bad = sorted(set(a) - set(AXES))
    if bad:
        raise ValueError(f"axes '{axes}': unknown letter(s) {''.join(bad)} (use T, Z, C, Y, X)")
    if len(set(a)) != len(a):
        raise ValueError(f"axes '{axes}': a letter appears twice")
    if "Y" not in a or "X" not in a:
        raise ValueError(f"axes '{axes}' must include Y and X")
    return a


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


def _ome_sizes(ome_xml: str) -> dict:
    out = {}
    try:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(ome_xml)
        for el in root.iter():
            if el.tag.endswith("Pixels"):
                for key, name in (("PhysicalSizeX", "pixel_size"), ("PhysicalSizeZ", "z_spacing"),
                                  ("TimeIncrement", "time_interval")):
                    if el.get(key) is not None:
                        out[name] = float(el.get(key))
                break
    except Exception:  # metadata we cannot parse is metadata we do not have
        pass
    return out


def _tiff_pixel_size(tif) -> float | None:
    """µm per pixel from XResolution (ImageJ unit micron, or ResolutionUnit centimetre)."""
    page = tif.pages[0]
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    per_unit = den / num
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    ij_unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
    if ij_unit in ("micron", "um", "µm", "\\u00B5m", "\u00b5m"):
        return float(per_unit)
    if unit == 3:  # centimetre
        return float(per_unit * 1e4)
    return None  # inches: a print resolution (72 dpi), not a pixel size


def read_stack(path: str | Path, *, axes: str | None = None) -> Stack:
    """Read an image or stack with its axes; ``axes`` overrides (or supplies) the metadata's.

    Raises :class:`InputError` when the axes cannot be determined (asks for ``--axes``) or when
    the given axes do not fit the data.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("image file not found", path=path)
    if axes is not None:
        try:
            axes = validate_axes(axes)
        except ValueError as exc:
            raise InputError(str(exc), path=path) from None
    meta: dict = {}
    ome = False
    if path.suffix.lower() in _TIFF:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                data = series.asarray()
                found = series.axes
                if (not tif.is_ome and not tif.is_imagej and data.ndim > 2
                        and not (found.endswith("YXS") and data.shape[-1] in (3, 4))):
                    described = tif.is_shaped and any("axes" in (m or {}) for m in (tif.shaped_metadata or ()))
                    if not described:  # tifffile's guess (e.g. 3 pages -> 'SYX'), not the file's word
                        found = "Q" * (data.ndim - 2) + "YX"
                ome = bool(tif.is_ome)
                if tif.is_ome and tif.ome_metadata:
                    meta.update(_ome_sizes(tif.ome_metadata))
                elif tif.is_imagej:
                    ij = tif.imagej_metadata or {}
                    if ij.get("spacing"):
                        meta["z_spacing"] = float(ij["spacing"])
                    if ij.get("finterval"):
                        meta["time_interval"] = float(ij["finterval"])
                if "pixel_size" not in meta:
                    px = _tiff_pixel_size(tif)
                    if px is not None:
                        meta["pixel_size"] = px
            if "pixel_size" not in meta:  # the measurement module's reader knows more unit spellings
                from morphoscope.morphology.measure import read_pixel_size

                px = read_pixel_size(path)
                if px is not None:
                    meta["pixel_size"] = px
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read TIFF ({type(exc).__name__}: {exc})", path=path) from exc
    else:
        from morphoscope.io.images import read_image

        data = read_image(path)
        found = "YX" if data.ndim == 2 else "YXS"
    found = found.replace("S", "C")
    if axes is None:
        unknown = set(found) - set(AXES)
        if unknown or len(set(found)) != len(found):
            raise InputError(
                f"cannot tell the axes of this {data.ndim}D stack of shape {data.shape} (the file says "
                f"'{found}'); give them with --axes (e.g. --axes ZYX, TYX or TZCYX) or data.axes in the "
                "config", path=path)
        axes = found
    if len(axes) != data.ndim:
        # the metadata may have stored singleton axes tifffile squeezed away: accept them
        if len(axes) > data.ndim:
            missing = [a for a in axes if a not in found] if len(found) == data.ndim else []
            if len(found) == data.ndim and len(axes) - len(missing) == data.ndim:
                for a in missing:
                    data = np.expand_dims(data, axes.index(a))
        if len(axes) != data.ndim:
            raise InputError(f"axes '{axes}' have {len(axes)} letters but the image has {data.ndim} "
                             f"dimensions (shape {data.shape})", path=path)
    return Stack(data=np.ascontiguousarray(data), axes=axes, ome=ome, path=path, **meta)


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
            md["unit"] = "um"
        if z_spacing:
            md["spacing"] = float(z_spacing)
        if time_interval:
            md["finterval"] = float(time_interval)
        if pixel_size:
            kw["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
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
