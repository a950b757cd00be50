"""One reader of image headers for the whole project: axes, shape, dtype and physical sizes.

Only headers are read, never pixel data, so this is fast on a 2 GB file and can guard memory
("TIFF bombs") before anything is decoded. Sources, in order of trust:

* OME-XML (OME-TIFF), parsed with ome-types (tifffile's ``xml2dict`` when ome-types refuses the
  XML), with the units it states converted to µm and seconds;
* ImageJ hyperstacks: ``unit`` with X/YResolution, ``spacing``, ``finterval``/``tunit``;
* plain TIFF: X/YResolution in centimetres (inch resolutions are print resolutions, not pixel
  sizes, and give None);
* OME-Zarr (NGFF 0.1-0.5): ``multiscales`` axes, units and the level-0 scale;
* PNG/JPEG/BMP: axes only (a PNG's pHYs is almost always a screen DPI, so no pixel size).

Axes are decided here and nowhere else: the file's metadata (OME, ImageJ, an axes entry in
tifffile's shaped description, NGFF axes) decides; a contiguous RGB(A) TIFF or a colour PNG is
``YXC``; a multi-page file whose metadata does not say what its pages are is refused with an
error asking for ``--axes``. tifffile writes any ``(3, Y, X)`` array as planar RGB unless told
otherwise, so planar RGB written by tifffile without axes is refused too rather than taken for
colour: a 3-plane grey Z stack must never become RGB.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError

AXES = "TZCYX"
TIFF_SUFFIXES = (".tif", ".tiff")
PIL_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp"}
_ZARR_MARKERS = ("zarr.json", ".zattrs", ".zgroup", ".zarray")


@dataclass(frozen=True)
class ImageMeta:
    """What an image file says about itself (None where it says nothing)."""

    axes: str  # stored order, letters of "TZCYX"; always has Y and X
    shape: tuple[int, ...]  # same length as axes
    dtype: np.dtype  # as read (1-bit images are read as uint8 0/255)
    pixel_size: float | None  # µm per pixel along X
    pixel_size_y: float | None  # µm per pixel along Y
    z_spacing: float | None  # µm
    time_interval: float | None  # seconds
    channel_names: tuple[str, ...] | None
    format: str  # "ome-tiff", "imagej-tiff", "tiff", "png", "jpeg", "bmp", "ome-zarr", "zarr"
    photometric: str | None = None  # "rgb" when C holds colour samples, "minisblack" for grey, ...

    @property
    def nbytes(self) -> int:
        """Decoded size of the whole image in bytes (check it before decoding anything)."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def is_rgb(self) -> bool:
        """True when C has 3 or 4 entries holding colour samples (RGB photometric, colour PNG/JPEG)."""
        return (self.photometric == "rgb" and "C" in self.axes
                and self.shape[self.axes.index("C")] in (3, 4))

    @property
    def plane_axes(self) -> str:
        """Axes that index 2D planes (T and Z), in stored order."""
        return "".join(a for a in self.axes if a in "TZ")


def validate_axes(axes: str) -> str:
    """Upper-case and check an axes string: letters of TZCYX, each at most once, Y and X present.

    tifffile's ``S`` (samples) is accepted as ``C``. Raises ValueError.
    """
    a = str(axes).strip().upper().replace("S", "C")
    bad = sorted(set(a) - set(AXES))
    if bad:
        raise ValueError(f"axes '{axes}': unknown letter(s) {''.join(bad)} (use T, Z, C, Y, X)")
    if len(set(a)) != len(a):
        raise ValueError(f"axes '{axes}': a letter appears twice")
    if "Y" not in a or "X" not in a:
        raise ValueError(f"axes '{axes}' must include Y and X")
    return a


def read_metadata(path: str | Path, *, axes: str | None = None) -> ImageMeta:
    """Read the header of an image file (TIFF, OME-TIFF, ImageJ, OME-Zarr, PNG, JPEG, BMP).

    ``axes`` overrides (or supplies) the file's axes; it must have one letter per dimension
    (singleton dimensions the file squeezed away may be named too). Raises :class:`InputError`
    naming the file when it cannot be read or its axes cannot be told.
    """
    return probe(path, axes=axes).meta


# ----------------------------------------------------------------------------------------------
# the probe: the header plus how the stored array maps onto the axes (used by io.source)


@dataclass(frozen=True)
class Probe:
    """A header and the map from the stored array's dimensions to ``meta.axes``.

    ``take[i]`` is the axis letter of the stored array's dimension ``i``, or None for a
    singleton dimension left out of ``meta.axes``. Letters of ``meta.axes`` not in ``take`` are
    singleton axes the file squeezed away and the caller named.
    """

    meta: ImageMeta
    take: tuple[str | None, ...]
    array_path: str | None = None  # OME-Zarr: the level-0 array inside the group


def probe(path: str | Path, *, axes: str | None = None) -> Probe:
    """Read a header (see :func:`read_metadata`) with the map :class:`ImageSource` reads by."""
    path = Path(path)
    if axes is not None:
        try:
            axes = validate_axes(axes)
        except ValueError as exc:
            raise InputError(str(exc), path=path) from None
    if _is_zarr(path):
        reader = _zarr_header
    elif not path.exists():
        raise InputError("image file not found", path=path)
    elif path.is_dir():
        raise InputError("is a folder, not an image (OME-Zarr folders hold a zarr.json or .zattrs)",
                         path=path)
    elif path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", path=path)
    elif path.suffix.lower() in TIFF_SUFFIXES:
        reader = _tiff_header
    elif path.suffix.lower() in PIL_FORMATS:
        reader = _pil_header
    else:
        raise InputError(f"unsupported image format '{path.suffix}' (use TIFF, OME-TIFF, PNG, JPEG, "
                         "BMP or OME-Zarr)", path=path)
    try:
        header = reader(path)
    except InputError:
        raise
    except Exception as exc:  # every decoder error becomes one readable line
        raise InputError(f"cannot read {_kind(path)} ({type(exc).__name__}: {exc})", path=path) from exc
    return _apply_axes(path, header, axes)


def _kind(path: Path) -> str:
    if _is_zarr(path):
        return "OME-Zarr"
    if path.suffix.lower() in TIFF_SUFFIXES:
        return "TIFF"
    return "image"


def _is_zarr(path: Path) -> bool:
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / m).is_file() for m in _ZARR_MARKERS)


@dataclass
class _Header:
    """What a format reader found, before the caller's axes are applied."""

    letters: str  # one per stored dimension: TZCYX, or "?" where the file does not say
    shape: tuple[int, ...]
    dtype: np.dtype
    format: str
    photometric: str | None = None
    sizes: dict | None = None  # pixel_size, pixel_size_y, z_spacing, time_interval (µm, s)
    channel_names: tuple[str, ...] | None = None
    array_path: str | None = None
    squeeze: bool = False  # drop singleton T/Z/C dimensions (tifffile already does for TIFF)
    singletons: str = ""  # size-1 axes the file has but squeezed away: the caller may name them


def _axes_error(path: Path, shape) -> InputError:
    return InputError(
        f"cannot tell the axes of this {len(shape)}D stack of shape {tuple(shape)}; give them with "
        "--axes (e.g. --axes ZYX, TYX or CYX) or data.axes in the config", path=path)


def _apply_axes(path: Path, h: _Header, axes: str | None) -> Probe:
    letters, shape = h.letters, tuple(int(n) for n in h.shape)
    keep = list(range(len(shape)))
    singletons = h.singletons
    if h.squeeze:  # e.g. an OME-Zarr TCZYX of shape (1, 1, 1, Y, X) is a 2D image
        keep = [i for i in keep if not (shape[i] == 1 and letters[i] in "TZC")]
        singletons += "".join(letters[i] for i in range(len(shape)) if i not in keep)
    kept_letters = "".join(letters[i] for i in keep)
    kept_shape = tuple(shape[i] for i in keep)
    take: list[str | None] = [None] * len(shape)
    if axes is None:
        if "?" in kept_letters or len(set(kept_letters)) != len(kept_letters) or not (
                "Y" in kept_letters and "X" in kept_letters):
            raise _axes_error(path, kept_shape)
        axes = kept_letters
    elif len(axes) == len(shape):  # the caller names every stored dimension
        keep = list(range(len(shape)))
        kept_letters, kept_shape = letters, shape
    if len(axes) == len(keep):
        for i, a in zip(keep, axes):
            take[i] = a
        meta_shape = kept_shape
    else:
        # more letters than dimensions: the extra ones must be singleton axes the file squeezed
        # away (a C of 1 in an ImageJ file), the others the file's own, in its order
        extra = [a for a in axes if a not in kept_letters]
        if "".join(a for a in axes if a in kept_letters) != kept_letters or not all(
                a in singletons for a in extra):
            raise InputError(f"axes '{axes}' have {len(axes)} letters but the image has "
                             f"{len(kept_shape)} dimensions (shape {kept_shape})", path=path)
        positions = iter(keep)
        sizes_list = []
        for a in axes:
            if a in kept_letters:
                i = next(positions)
                take[i] = a
                sizes_list.append(shape[i])
            else:
                sizes_list.append(1)
        meta_shape = tuple(sizes_list)
    meta_axes = axes
    sizes = h.sizes or {}
    names = h.channel_names
    if names is not None and ("C" not in meta_axes or len(names) != meta_shape[meta_axes.index("C")]):
        names = None
    meta = ImageMeta(
        axes=meta_axes, shape=meta_shape, dtype=np.dtype(h.dtype),
        pixel_size=sizes.get("pixel_size"), pixel_size_y=sizes.get("pixel_size_y"),
        z_spacing=sizes.get("z_spacing"), time_interval=sizes.get("time_interval"),
        channel_names=names, format=h.format, photometric=h.photometric)
    return Probe(meta=meta, take=tuple(take), array_path=h.array_path)


# ----------------------------------------------------------------------------------------------
# units


@functools.cache
def _um_per_length_unit() -> dict:
    from ome_types.model import UnitsLength as L

    return {L.METER: 1e6, L.DECIMETER: 1e5, L.CENTIMETER: 1e4, L.MILLIMETER: 1e3,
            L.MICROMETER: 1.0, L.NANOMETER: 1e-3, L.PICOMETER: 1e-6, L.FEMTOMETER: 1e-9,
            L.ANGSTROM: 1e-4, L.INCH: 25_400.0, L.THOU: 25.4}


@functools.cache
def _seconds_per_time_unit() -> dict:
    from ome_types.model import UnitsTime as T

    return {T.DAY: 86_400.0, T.HOUR: 3600.0, T.MINUTE: 60.0, T.SECOND: 1.0, T.DECISECOND: 0.1,
            T.CENTISECOND: 1e-2, T.MILLISECOND: 1e-3, T.MICROSECOND: 1e-6, T.NANOSECOND: 1e-9,
            T.PICOSECOND: 1e-12}


# spellings the OME enums do not know (ImageJ writes "micron" or an escaped "\u00B5m")
_LENGTH_ALIASES = {"um": "µm", "micron": "µm", "microns": "µm", "\\u00b5m": "µm", "μm": "µm",
                   "micrometre": "µm", "nanometre": "nm", "millimetre": "mm", "centimetre": "cm",
                   "metre": "m", "a": "Å"}
_TIME_ALIASES = {"sec": "s", "secs": "s", "seconds": "s", "msec": "ms", "us": "µs", "μs": "µs",
                 "mins": "min", "minutes": "min", "hr": "h", "hrs": "h", "hours": "h"}


def _length_unit(unit):
    """UnitsLength for an OME symbol ("nm"), an NGFF name ("nanometer") or an ImageJ spelling."""
    from ome_types.model import UnitsLength

    return _lookup_unit(UnitsLength, unit, _LENGTH_ALIASES)


def _time_unit(unit):
    from ome_types.model import UnitsTime

    return _lookup_unit(UnitsTime, unit, _TIME_ALIASES)


def _lookup_unit(enum, unit, aliases):
    if unit is None:
        return None
    if isinstance(unit, enum):
        return unit
    text = str(unit).strip()
    text = aliases.get(text.lower(), text)
    for attempt in (lambda: enum(text), lambda: enum[text.upper()]):
        try:
            return attempt()
        except (ValueError, KeyError):
            pass
    return None


def _to_um(value, unit) -> float | None:
    """``value`` in ``unit`` as µm; None when either is missing, not positive or not a length."""
    factor = _um_per_length_unit().get(_length_unit(unit))
    return _positive(value, factor)


def _to_seconds(value, unit) -> float | None:
    factor = _seconds_per_time_unit().get(_time_unit(unit))
    return _positive(value, factor)


def _positive(value, factor) -> float | None:
    if value is None or factor is None:
        return None
    try:
        out = float(value) * factor
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# ----------------------------------------------------------------------------------------------
# TIFF


@contextlib.contextmanager
def quiet_tifffile():
    """Silence tifffile's log warnings: the InputError raised for a bad file is the one line."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _tiff_header(path: Path) -> _Header:
    import tifffile

    with quiet_tifffile(), tifffile.TiffFile(path) as tif:
        if not tif.series or not tif.series[0].shape:
            raise InputError("not a valid TIFF (no image data could be decoded)", path=path)
        series = tif.series[0]
        page = series.keyframe
        found, shape = series.axes, tuple(series.shape)
        photometric = tifffile.PHOTOMETRIC(page.photometric)
        colour = photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
        described = not (series.kind in ("shaped", "uniform", "generic")) or (
            tif.is_shaped and any("axes" in (m or {}) for m in (tif.shaped_metadata or ())))
        letters = []
        for i, a in enumerate(found):
            if a == "S":
                # samples of one page are channels; planar RGB that tifffile wrote from a
                # (3, Y, X) array without axes may as well be a 3-plane stack
                planar_guess = (not described and tif.is_shaped and i < len(found) - 1)
                letters.append("?" if planar_guess else "C")
            elif a in AXES and (described or a in "YX"):
                letters.append(a)
            else:  # Q, I and the like: tifffile's guess, not the file's word
                letters.append("?")
        if tif.is_ome:
            fmt = "ome-tiff"
        elif tif.is_imagej:
            fmt = "imagej-tiff"
        else:
            fmt = "tiff"
        sizes: dict = {}
        names = None
        if tif.is_ome and tif.ome_metadata:
            sizes, names = _ome_sizes(tif.ome_metadata)
        elif tif.is_imagej:
            sizes = _imagej_sizes(tif.imagej_metadata or {}, page)
        if "pixel_size" not in sizes:
            sizes.update(_resolution_sizes(page))
        full = [("C" if a == "S" else a, n) for a, n in zip(series.get_axes(False), series.get_shape(False))]
        singletons = "".join(a for a, n in full if n == 1 and a in "TZC" and a not in letters)
        dtype = np.dtype(series.dtype)
        if dtype == np.bool_:
            dtype = np.dtype(np.uint8)  # 1-bit images are read as 0/255
        return _Header(letters="".join(letters), shape=shape, dtype=dtype, format=fmt,
                       photometric="rgb" if colour else photometric.name.lower(),  # YCbCr decodes to RGB
                       sizes=sizes, channel_names=names, singletons=singletons)


def _ome_sizes(xml: str) -> tuple[dict, tuple[str, ...] | None]:
    """Physical sizes (µm, s) and channel names of the first OME image."""
    try:
        import ome_types

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vendors' off-spec XML is read as far as it goes
            px = ome_types.from_xml(xml, validate=False).images[0].pixels
        attrs = {
            "PhysicalSizeX": px.physical_size_x, "PhysicalSizeXUnit": px.physical_size_x_unit,
            "PhysicalSizeY": px.physical_size_y, "PhysicalSizeYUnit": px.physical_size_y_unit,
            "PhysicalSizeZ": px.physical_size_z, "PhysicalSizeZUnit": px.physical_size_z_unit,
            "TimeIncrement": px.time_increment, "TimeIncrementUnit": px.time_increment_unit,
        }
        channel_names = [c.name for c in px.channels]
    except Exception:  # ome-types refuses some vendors' XML: read the attributes as they are
        attrs, channel_names = _ome_attrs_xml2dict(xml)
    sx = _to_um(attrs.get("PhysicalSizeX"), attrs.get("PhysicalSizeXUnit") or "µm")
    sy = _to_um(attrs.get("PhysicalSizeY"), attrs.get("PhysicalSizeYUnit") or "µm")
    sizes = _drop_none({
        "pixel_size": sx,
        "pixel_size_y": sy if sy is not None else sx if attrs.get("PhysicalSizeY") is None else None,
        "z_spacing": _to_um(attrs.get("PhysicalSizeZ"), attrs.get("PhysicalSizeZUnit") or "µm"),
        "time_interval": _to_seconds(attrs.get("TimeIncrement"), attrs.get("TimeIncrementUnit") or "s"),
    })
    names = None
    if channel_names and any(n for n in channel_names):
        names = tuple(str(n or "") for n in channel_names)
    return sizes, names


def _ome_attrs_xml2dict(xml: str) -> tuple[dict, list]:
    import tifffile

    try:
        ome = tifffile.xml2dict(xml).get("OME", {})
    except Exception:
        return {}, []
    image = ome.get("Image", {})
    image = image[0] if isinstance(image, list) and image else image
    pixels = image.get("Pixels", {}) if isinstance(image, dict) else {}
    if not isinstance(pixels, dict):
        return {}, []
    channels = pixels.get("Channel", [])
    channels = [channels] if isinstance(channels, dict) else channels
    names = [c.get("Name") for c in channels if isinstance(c, dict)]
    return pixels, names


def _imagej_sizes(ij: dict, page) -> dict:
    unit = ij.get("unit")
    res = _page_resolution(page)
    if _length_unit(unit) is _inch():  # ImageJ keeps a scanner's DPI as unit "inch"
        unit = None
    sizes = {}
    if res is not None:
        sizes["pixel_size"] = _to_um(1.0 / res[0], unit)
        y_unit = ij.get("yunit", unit)
        sizes["pixel_size_y"] = _to_um(1.0 / res[1], None if _length_unit(y_unit) is _inch() else y_unit)
    z_unit = ij.get("zunit", unit)
    sizes["z_spacing"] = _to_um(ij.get("spacing"), None if _length_unit(z_unit) is _inch() else z_unit)
    sizes["time_interval"] = _to_seconds(ij.get("finterval"), ij.get("tunit", "sec"))  # ImageJ's default
    return _drop_none(sizes)


def _inch():
    from ome_types.model import UnitsLength

    return UnitsLength.INCH


def _page_resolution(page) -> tuple[float, float] | None:
    """Pixels per resolution unit in X and Y, or None when absent or not positive."""
    if "XResolution" not in page.tags or "YResolution" not in page.tags:
        return None
    x, y = page.get_resolution()
    if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
        return None
    return float(x), float(y)


def _resolution_sizes(page) -> dict:
    """µm per pixel from X/YResolution in metric ResolutionUnits; inches are print resolutions."""
    import tifffile

    res = _page_resolution(page)
    um_per_unit = {tifffile.RESUNIT.CENTIMETER: 1e4, tifffile.RESUNIT.MILLIMETER: 1e3,
                   tifffile.RESUNIT.MICROMETER: 1.0}.get(page.resolutionunit)
    if res is None or um_per_unit is None:
        return {}
    return _drop_none({"pixel_size": _positive(1.0 / res[0], um_per_unit),
                       "pixel_size_y": _positive(1.0 / res[1], um_per_unit)})


# ----------------------------------------------------------------------------------------------
# PNG, JPEG, BMP (decoded by PIL; the rules match io.images.read_image)


def _pil_header(path: Path) -> _Header:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise InputError(f"not a {PIL_FORMATS[path.suffix.lower()].upper()} image (cannot identify "
                         "the file format)", path=path) from None
    with im:
        mode, (width, height) = im.mode, im.size
        fmt = (im.format or PIL_FORMATS[path.suffix.lower()]).lower()
        fmt = {"jpeg": "jpeg", "png": "png", "bmp": "bmp"}.get(fmt, fmt)
        transparent = "transparency" in im.info
    out_mode = {"P": "RGBA" if transparent else "RGB", "CMYK": "RGB", "LA": "L"}.get(mode, mode)
    if mode in ("I;16", "I;16B", "I;16L"):
        dtype, channels = np.dtype(np.uint16), 0
    else:
        # the dtype and channel count numpy gives this mode, learnt from a 1x1 image
        probe_px = np.asarray(Image.new(out_mode, (1, 1)))
        dtype, channels = probe_px.dtype, (probe_px.shape[2] if probe_px.ndim == 3 else 0)
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    if channels:
        letters, shape = "YXC", (height, width, channels)
    else:
        letters, shape = "YX", (height, width)
    photometric = "rgb" if out_mode in ("RGB", "RGBA", "RGBX") else out_mode.lower()
    if not channels:
        photometric = "minisblack"
    return _Header(letters=letters, shape=shape, dtype=dtype, format=fmt, photometric=photometric)


# ----------------------------------------------------------------------------------------------
# OME-Zarr


def _ome_attributes(group) -> dict:
    """The OME metadata of a zarr group: NGFF 0.5 nests it under ``ome``, earlier versions not."""
    attrs = dict(group.attrs)
    if isinstance(attrs.get("ome"), dict):
        return dict(attrs["ome"])
    return attrs


def _zarr_header(path: Path) -> _Header:
    import zarr

    if not path.exists():
        raise InputError("image file not found", path=path)
    try:
        node = zarr.open(store=str(path), mode="r")
    except FileNotFoundError:  # zarr's "node not found" errors derive from it
        raise InputError("not a zarr store (no zarr.json or .zattrs/.zarray found)", path=path) from None
    if isinstance(node, zarr.Array):  # a bare array: no OME metadata
        letters = "YX" if node.ndim == 2 else "?" * node.ndim
        return _Header(letters=letters, shape=tuple(node.shape), dtype=np.dtype(node.dtype),
                       format="zarr", photometric=None, array_path="")
    attrs = _ome_attributes(node)
    prefix = ""
    if "multiscales" not in attrs and "bioformats2raw.layout" in attrs and "0" in node:
        node, prefix = node["0"], "0/"  # bioformats2raw: the first image is the group "0"
        attrs = _ome_attributes(node)
    if "plate" in attrs or "well" in attrs:
        raise InputError("this OME-Zarr is a plate or well, not one image; open one of its images "
                         "(e.g. plate.zarr/A/1/0)", path=path)
    scales = attrs.get("multiscales")
    if not scales:
        raise InputError("zarr group without OME-Zarr 'multiscales' metadata", path=path)
    ms = scales[0]
    datasets = ms.get("datasets") or []
    if not datasets or "path" not in datasets[0]:
        raise InputError("OME-Zarr 'multiscales' lists no datasets", path=path)
    array_path = str(datasets[0]["path"])
    arr = node[array_path]
    ndim = arr.ndim
    raw_axes = ms.get("axes")
    if raw_axes is None:  # NGFF 0.1/0.2: always 5D TCZYX
        raw_axes = list("tczyx") if ndim == 5 else [None] * ndim
    axes_info = [a if isinstance(a, dict) else {"name": a} for a in raw_axes]
    if len(axes_info) != ndim:
        raise InputError(f"OME-Zarr lists {len(axes_info)} axes for an array of {ndim} dimensions",
                         path=path)
    letters = "".join(_ngff_letter(a) for a in axes_info)
    scale = _ngff_scale(datasets[0].get("coordinateTransformations"), ndim)
    global_scale = _ngff_scale(ms.get("coordinateTransformations"), ndim)
    scale = [s * g for s, g in zip(scale, global_scale)] if scale and global_scale else scale
    sizes: dict = {}
    if scale:
        for info, letter, s in zip(axes_info, letters, scale):
            unit = info.get("unit")
            key = {"X": "pixel_size", "Y": "pixel_size_y", "Z": "z_spacing", "T": "time_interval"}.get(letter)
            if key == "time_interval":
                sizes[key] = _to_seconds(s, unit)
            elif key:
                sizes[key] = _to_um(s, unit)
    channel_names = None
    omero = attrs.get("omero")
    if isinstance(omero, dict) and isinstance(omero.get("channels"), list):
        labels = [c.get("label") if isinstance(c, dict) else None for c in omero["channels"]]
        if any(labels):
            channel_names = tuple(str(x or "") for x in labels)
    return _Header(letters=letters, shape=tuple(arr.shape), dtype=np.dtype(arr.dtype),
                   format="ome-zarr", photometric=None, sizes=_drop_none(sizes),
                   channel_names=channel_names, array_path=prefix + array_path, squeeze=True)


def _ngff_letter(info: dict) -> str:
    name = str(info.get("name") or "").upper()
    if name in AXES:
        return name
    return {"time": "T", "channel": "C"}.get(str(info.get("type") or "").lower(), "?")


def _ngff_scale(transforms, ndim) -> list[float] | None:
    for t in transforms or ():
        if isinstance(t, dict) and t.get("type") == "scale" and len(t.get("scale") or ()) == ndim:
            return [float(s) for s in t["scale"]]
    return None
