"""napari writer: a Labels layer -> a label TIFF with its pixel size, readable by Fiji (ImageJ
hyperstack with its calibration), QuPath, CellProfiler and ``morphoscope measure``.

The pixel size is the layer's X scale, converted to µm when the layer's units say what it is in
(napari ``units``, e.g. ``micrometer`` or ``nm``); a layer in the default ``pixel`` units with a
scale other than 1 is taken to be in µm, as napari readers of microscopy files set it; scale 1 in
pixel units writes no pixel size. Z spacing and time interval come the same way from the Z and T
scales. Labels are written as uint16 (uint32 above 65535 labels, as OME-TIFF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}
_UM = {"micrometer": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0, "nanometer": 1e-3, "nm": 1e-3,
       "millimeter": 1e3, "mm": 1e3, "meter": 1e6, "m": 1e6}
_SECONDS = {"second": 1.0, "s": 1.0, "sec": 1.0, "millisecond": 1e-3, "ms": 1e-3, "minute": 60.0,
            "min": 60.0, "hour": 3600.0, "h": 3600.0}


def write_labels(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer for Labels layers; returns the path written."""
    from morphoscope.io.stacks import write_stack

    labels = _label_array(data)
    axes = _AXES.get(labels.ndim)
    if axes is None:
        raise ValueError(f"labels with {labels.ndim} dimensions cannot be written (2, 3 or 4: YX, ZYX, TZYX)")
    scale = list(meta.get("scale") or [1.0] * labels.ndim)
    units = meta.get("units") or ["pixel"] * labels.ndim
    units = [units] * labels.ndim if isinstance(units, str) else list(units)
    sizes = {}
    for axis, s, unit in zip(axes, scale, units):
        value = _physical(float(s), str(unit), time=axis == "T")
        if value is not None:
            sizes.setdefault({"X": "pixel_size", "Z": "z_spacing", "T": "time_interval"}.get(axis, axis), value)
    write_stack(path, labels, axes, pixel_size=sizes.get("pixel_size"), z_spacing=sizes.get("z_spacing"),
                time_interval=sizes.get("time_interval"), overwrite=True)
    return [str(Path(path))]


def _label_array(data) -> np.ndarray:
    if isinstance(data, (list, tuple)):  # multiscale: the full resolution
        data = data[0]
    arr = np.asarray(data)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError("labels must not be negative")
    top = int(arr.max(initial=0))
    return arr.astype(np.uint16 if top < 65536 else np.uint32, copy=False)


def _physical(scale: float, unit: str, *, time: bool) -> float | None:
    """The size of one pixel (µm) or frame (s), or None when it is not known."""
    unit = unit.strip().lower().replace("μ", "µ")
    if not (np.isfinite(scale) and scale > 0):
        return None
    if unit in ("pixel", "px", "none", ""):
        return None if scale == 1 else scale
    factors = _SECONDS if time else _UM
    return scale * factors[unit] if unit in factors else None
