"""Label images as OME-Zarr (NGFF 0.4: zarr v2 format, "/" chunk keys), written window by window.

The prediction engine labels whole-slide mosaics tile by tile: :func:`create_labels_zarr` makes
the image group and returns its level-0 array for the caller to fill; :func:`write_labels_zarr`
writes a whole (small) array at once. The group carries ``multiscales`` (axes with types and
units, a scale transform) and ``image-label`` metadata, so ome-zarr-py and napari-ome-zarr open
it as a labels layer with the right physical scale.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from morphoscope.errors import OutputExistsError
from morphoscope.io.metadata import validate_axes

NGFF_VERSION = "0.4"
_NGFF_ORDER = "TCZYX"  # NGFF 0.4: time, then channel, then space
_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
_DEFAULT_CHUNK = 1024  # pixels along Y and X


def create_labels_zarr(path: str | Path, *, shape, axes: str, dtype, chunks=None,
                       pixel_size: float | None = None, z_spacing: float | None = None,
                       time_interval: float | None = None, name: str = "labels",
                       overwrite: bool = False):
    """Create an OME-Zarr label image at ``path`` and return its writable level-0 zarr array.

    ``axes`` must follow the NGFF order (T, C, Z, Y, X, e.g. ``"YX"`` or ``"TZYX"``); sizes are
    in µm (``pixel_size`` for X and Y, ``z_spacing``) and seconds (``time_interval``), written
    with their units; unknown sizes are written as scale 1 without a unit. Chunks default to
    1024 x 1024 pixels, one plane deep. Unwritten chunks read as 0 (background). The array is
    written in place: write to a temporary name and rename it if readers may look meanwhile.
    """
    import zarr

    path = Path(path)
    axes = validate_axes(axes)
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    if len(shape) != len(axes):
        raise ValueError(f"axes '{axes}' do not fit shape {shape}")
    if [a for a in _NGFF_ORDER if a in axes] != list(axes):
        raise ValueError(f"OME-Zarr axes must be in the order T, C, Z, Y, X; got '{axes}'")
    if not np.issubdtype(dtype, np.integer):  # NGFF image-label: integer data only
        raise ValueError(f"label images hold integers, not {dtype}")
    if chunks is None:
        chunks = tuple(min(n, _DEFAULT_CHUNK) if a in "YX" else 1 for a, n in zip(axes, shape))
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != len(shape) or min(chunks, default=1) < 1:
        raise ValueError(f"chunks {chunks} do not fit shape {shape}")
    _make_room(path, overwrite=overwrite)
    root = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    array = root.create_array(
        "0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},  # NGFF 0.4 requires "/" keys
        # zstd with bit-shuffle: label images are mostly runs of a few values
        compressors={"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 2})
    root.attrs.update(_attributes(axes, name=name, pixel_size=pixel_size, z_spacing=z_spacing,
                                  time_interval=time_interval))
    return array


def write_labels_zarr(path: str | Path, labels: np.ndarray, *, axes: str, chunks=None,
                      pixel_size: float | None = None, z_spacing: float | None = None,
                      time_interval: float | None = None, name: str = "labels",
                      overwrite: bool = False) -> None:
    """Write a whole label array as an OME-Zarr image (see :func:`create_labels_zarr`).

    Atomic: the store is built beside ``path`` and renamed into place.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", path=path)
    if path.exists():
        _check_replaceable(path)  # before any work
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        array = create_labels_zarr(tmp, shape=labels.shape, axes=axes, dtype=labels.dtype,
                                   chunks=chunks, pixel_size=pixel_size, z_spacing=z_spacing,
                                   time_interval=time_interval, name=name, overwrite=True)
        array[...] = labels
        old = None
        if path.exists():  # moved aside, not deleted, until the new store is in place
            _check_replaceable(path)
            old = tmp.with_name(tmp.name[: -len(".part")] + ".old")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None and old.is_dir():
        shutil.rmtree(old)
    elif old is not None:
        old.unlink()


def _attributes(axes: str, *, name: str, pixel_size, z_spacing, time_interval) -> dict:
    size = {"X": pixel_size, "Y": pixel_size, "Z": z_spacing, "T": time_interval}
    unit = {"T": "second", "Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
    entries, scale = [], []
    for a in axes:
        entry = {"name": a.lower(), "type": _AXIS_TYPES[a]}
        known = size.get(a) is not None and float(size[a]) > 0
        if known:
            entry["unit"] = unit[a]  # no unit where the size is unknown: scale 1 is not 1 µm
        entries.append(entry)
        scale.append(float(size[a]) if known else 1.0)
    return {
        "multiscales": [{
            "version": NGFF_VERSION,
            "name": name,
            "axes": entries,
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }],
        "image-label": {"version": NGFF_VERSION},
    }


def _make_room(path: Path, *, overwrite: bool) -> None:
    """Remove an existing store at ``path`` when allowed; never a folder that is not a zarr store."""
    if not path.exists():
        return
    if not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", path=path)
    _check_replaceable(path)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _check_replaceable(path: Path) -> None:
    if path.is_dir():
        is_store = any((path / m).is_file() for m in ("zarr.json", ".zgroup", ".zattrs", ".zarray"))
        if not is_store and any(path.iterdir()):
            raise OutputExistsError("exists and is not a zarr store; not replacing it", path=path)
