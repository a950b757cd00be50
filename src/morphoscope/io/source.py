"""A lazy image: opened once, read plane by plane and window by window.

TIFFs are read through tifffile's zarr store (a 20k x 20k tiled TIFF is decoded tile by tile),
OME-Zarr through zarr (level 0), PNG/JPEG/BMP are decoded once by :func:`read_image`. Images
under ``CACHE_BYTES`` decoded are read whole on first use and kept. Planes come back as
``(Y, X)`` or ``(Y, X, C)`` in their native dtype, following the rules of
:func:`morphoscope.io.images.read_image` (1-bit -> uint8 0/255, planar RGB -> channels last).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.io.metadata import PIL_FORMATS, ImageMeta, probe, quiet_tifffile

CACHE_BYTES = 64 * 2**20  # smaller images are decoded once and kept
_BAND_BYTES = 32 * 2**20  # sample() decodes at most about this much at a time


class ImageSource:
    """An image file opened for reading region by region; use as a context manager."""

    def __init__(self, path: str | Path, *, axes: str | None = None):
        self.path = Path(path)
        found = probe(self.path, axes=axes)
        self.meta: ImageMeta = found.meta
        self._take = found.take  # stored dimension -> axis letter (None: singleton left out)
        self._array = None  # zarr array or numpy array
        self._cache: np.ndarray | None = None
        self._closers: list = []
        try:
            self._open(found.array_path)
        except InputError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise InputError(f"cannot open image ({type(exc).__name__}: {exc})", path=self.path) from exc

    def _open(self, array_path: str | None) -> None:
        import zarr

        fmt = self.meta.format
        if fmt in ("ome-zarr", "zarr"):
            if array_path:
                self._array = zarr.open_group(store=str(self.path), mode="r")[array_path]
            else:
                self._array = zarr.open_array(store=str(self.path), mode="r")
        elif self.path.suffix.lower() in PIL_FORMATS:
            from morphoscope.io.images import read_image
            from morphoscope.io.memory import check_fits

            # PNG/JPEG/BMP cannot be decoded in parts
            check_fits(self.meta.nbytes * 2, "decoding this image", path=self.path,
                       advice="save it as a tiled TIFF or OME-Zarr, which are read window by window")

            self._cache = self._array = read_image(self.path)  # small: decode once, keep
        else:
            import tifffile

            with quiet_tifffile():
                tif = tifffile.TiffFile(self.path)
            self._closers.append(tif.close)
            store = tif.series[0].aszarr(level=0)
            self._closers.append(store.close)
            self._array = zarr.open_array(store=store, mode="r")
        if tuple(self._array.shape) != tuple(
                self.meta.shape[self.meta.axes.index(a)] if a else 1 for a in self._take):
            raise InputError(f"decoded shape {tuple(self._array.shape)} does not match the header's "
                             f"{self.meta.shape}", path=self.path)

    # ------------------------------------------------------------------------------ public

    def planes(self) -> list[dict[str, int]]:
        """Every combination of the T and Z positions, in stored order; ``[{}]`` for a 2D image."""
        axes = self.meta.plane_axes
        sizes = [self._size(a) for a in axes]
        return [dict(zip(axes, (int(i) for i in idx))) for idx in np.ndindex(*sizes)]

    def read(self, index: dict[str, int] | None = None, *,
             region: tuple[slice, slice] | None = None) -> np.ndarray:
        """One plane (or the ``region`` window of it) as ``(Y, X)`` or ``(Y, X, C)``.

        ``index`` gives the T and Z positions (axes of size 1 may be left out); naming ``C``
        selects one channel. Only the chunks/pages the window touches are decoded.
        """
        return self._read(index, region, keep="")

    def read_volume(self, index: dict[str, int] | None = None) -> np.ndarray:
        """All Z planes of one time point as ``(Z, Y, X)`` or ``(Z, Y, X, C)`` (Z=1 without Z)."""
        out = self._read(index, None, keep="Z")
        return out if "Z" in self.meta.axes else out[None]

    def sample(self, index: dict[str, int] | None = None, *, max_pixels: int = 4_000_000) -> np.ndarray:
        """An evenly strided subsample of a plane with at most ``max_pixels`` pixels (per channel).

        For percentiles on huge images: rows are read in bands, so the whole plane is never
        decoded at once.
        """
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
        h, w = self._size("Y"), self._size("X")
        step = max(1, math.isqrt(h * w // max_pixels))
        while -(-h // step) * -(-w // step) > max_pixels:
            step += 1
        if step == 1 or self._cached_or_small():
            return self.read(index, region=(slice(0, h, step), slice(0, w, step)))
        # bands of whole chunk rows, sized to about _BAND_BYTES decoded
        y_dim = self._take.index("Y")
        chunk_rows = int(self._array.chunks[y_dim]) if hasattr(self._array, "chunks") else h
        row_bytes = w * np.dtype(self.meta.dtype).itemsize * (self._size("C") if "C" in self.meta.axes else 1)
        band = max(chunk_rows, (_BAND_BYTES // max(row_bytes * chunk_rows, 1)) * chunk_rows)
        parts = []
        for y0 in range(0, h, band):
            first = -(-y0 // step) * step  # first sampled row in this band
            if first < min(h, y0 + band):
                parts.append(self.read(index, region=(slice(first, min(h, y0 + band), step),
                                                      slice(0, w, step))))
        return np.concatenate(parts, axis=0)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        self._array = self._cache = None

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.meta
        return f"ImageSource({str(self.path)!r}, axes={m.axes!r}, shape={m.shape}, dtype={m.dtype})"

    # ------------------------------------------------------------------------------ internals

    def _size(self, axis: str) -> int:
        return self.meta.shape[self.meta.axes.index(axis)]

    def _cached_or_small(self) -> bool:
        return self._cache is not None or self.meta.nbytes <= CACHE_BYTES

    def _read(self, index, region, *, keep: str) -> np.ndarray:
        index = dict(index or {})
        allowed = [a for a in self.meta.axes if a in "TZC" and a not in keep]
        unknown = sorted(set(index) - set(allowed))
        if unknown:
            raise ValueError(f"index names {', '.join(unknown)}; for axes {self.meta.axes} it may "
                             f"only name {', '.join(allowed) or 'nothing'}")
        for axis, pos in index.items():
            if not 0 <= int(pos) < self._size(axis):
                raise IndexError(f"{axis}={pos} is outside 0..{self._size(axis) - 1} for {self.path.name}")
        for axis in self.meta.plane_axes:
            if axis not in index and axis not in keep and self._size(axis) > 1:
                raise ValueError(f"index must give {axis} (0..{self._size(axis) - 1}): the image has "
                                 f"axes {self.meta.axes} and shape {self.meta.shape}")
        ys, xs = self._region(region)
        selection, kept = [], []
        for letter in self._take:
            if letter is None:
                selection.append(0)
            elif letter == "Y":
                selection.append(ys)
                kept.append(letter)
            elif letter == "X":
                selection.append(xs)
                kept.append(letter)
            elif letter in index:
                selection.append(int(index[letter]))
            elif letter == "C" or letter in keep:
                selection.append(slice(None))
                kept.append(letter)
            else:
                selection.append(0)  # a size-1 T or Z
        data = self._get(tuple(selection))
        order = [kept.index(a) for a in keep + "YXC" if a in kept]
        return np.ascontiguousarray(np.transpose(data, order))

    def _region(self, region) -> tuple[slice, slice]:
        if region is None:
            return slice(None), slice(None)
        if not (isinstance(region, tuple) and len(region) == 2 and all(isinstance(s, slice) for s in region)):
            raise ValueError(f"region must be a (slice, slice) pair for Y and X, got {region!r}")
        out = []
        for s, n in zip(region, (self._size("Y"), self._size("X"))):
            start, stop, step = s.indices(n)
            if step < 1:
                raise ValueError(f"region steps must be positive, got {s}")
            out.append(slice(start, max(start, stop), step))
        return out[0], out[1]

    def _get(self, selection: tuple) -> np.ndarray:
        if self._array is None:
            raise ValueError(f"{self.path.name} is closed")
        try:
            if self._cache is None and self.meta.nbytes <= CACHE_BYTES:
                self._cache = np.asarray(self._array[...])
            if self._cache is not None:
                data = np.array(self._cache[selection])  # a copy: callers may change what they get
            else:
                data = np.asarray(self._array[selection])
        except Exception as exc:  # a truncated or corrupt chunk: one readable line
            raise InputError(f"cannot read image data ({type(exc).__name__}: {exc})", path=self.path) from exc
        if data.dtype == np.bool_:
            data = data.astype(np.uint8) * 255  # as read_image does: 1-bit masks become 0/255
        return data

    def _stored_array(self) -> np.ndarray:
        """The whole image in ``meta.axes`` order (for :func:`morphoscope.io.stacks.read_stack`)."""
        data = self._get(tuple(0 if a is None else slice(None) for a in self._take))
        present = [a for a in self._take if a is not None]
        for i, axis in enumerate(self.meta.axes):
            if axis not in present:  # a singleton axis the file squeezed away and the caller named
                data = np.expand_dims(data, i)
        return data


def open_image(path: str | Path, *, axes: str | None = None) -> ImageSource:
    """Open an image for lazy reading; ``axes`` overrides (or supplies) the file's axes.

    Raises :class:`InputError` naming the file when it cannot be opened or its axes cannot be told.
    """
    return ImageSource(path, axes=axes)
