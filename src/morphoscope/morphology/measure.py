"""Per-object measurements of instance-label images, as one table row per object.

The numbers are scikit-image ``regionprops``' wherever regionprops has the property (see
:mod:`morphoscope.morphology.definitions` for every definition); they are computed for all objects
of an image at once by :mod:`morphoscope.morphology.shape`, which reproduces regionprops to
floating-point rounding (area, bounding box, convex area, solidity and maximum Feret diameter
exactly; the moment-based quantities and the perimeter to about 1e-14 relative). ``method=
"regionprops"`` computes the same table with regionprops itself, for checking.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from morphoscope.errors import InputError, SkippedInputs
from morphoscope.morphology import shape as _shape
from morphoscope.morphology.definitions import (
    BY_NAME,
    INTENSITY,
    MEASUREMENTS,
    POSITION_COLUMNS,
    SHAPE,
    column_name,
    definitions_text,
)

DEFAULT_CLASS = "object"
PREDICTIONS_JSON = "predictions.json"

# what each measurement needs computed
_NEEDS = {
    "area": {"moments"}, "extent": {"moments"}, "equivalent_diameter": {"moments"},
    "eccentricity": {"moments"}, "axis_major_length": {"moments"},
    "axis_minor_length": {"moments"}, "aspect_ratio": {"moments"}, "anisotropy": {"moments"},
    "orientation": {"moments"}, "perimeter": {"perimeter"},
    "circularity": {"moments", "perimeter"}, "solidity": {"moments", "hull"},
    "area_convex": {"hull"}, "feret_diameter_max": {"hull", "feret"},
    "feret_diameter_min": {"hull", "feret"},
}


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def check_label_image(labels, *, path=None) -> np.ndarray:
    """Return ``labels`` as a 2D non-negative integer array or raise :class:`InputError`.

    A boolean mask is refused (it is not an instance-label image: label it first, e.g. with
    ``skimage.measure.label``), as are floating-point, negative and non-2D arrays.
    """
    arr = np.asarray(labels)
    if arr.dtype == bool:
        raise InputError(
            "label image is boolean (a mask), not instance labels; give each object its own "
            "integer (e.g. skimage.measure.label(mask))", path=path)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"label image must hold integers (0 = background, 1..N = objects), got dtype "
            f"{arr.dtype}", path=path)
    if arr.ndim != 2:
        raise InputError(f"label image must be 2D, got shape {arr.shape}", path=path)
    if arr.size and arr.min() < 0:
        raise InputError("label image has negative values", path=path)
    return arr


def check_pixel_size(pixel_size, *, path=None) -> float | None:
    """``None`` or a positive, finite pixel size in µm; anything else raises InputError."""
    if pixel_size is None:
        return None
    try:
        value = float(pixel_size)
    except (TypeError, ValueError):
        raise InputError(f"pixel size must be a number of micrometres, got {pixel_size!r}",
                         path=path) from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"pixel size must be a positive number of micrometres, got {value:g}",
                         path=path)
    return value


def _check_image(image, shape, *, path=None) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.shape[:2] != tuple(shape) or img.ndim not in (2, 3):
        raise InputError(
            f"intensity image has shape {img.shape}, but the label image is {tuple(shape)}; "
            "they must have the same height and width", path=path)
    if not (np.issubdtype(img.dtype, np.number) or img.dtype == bool):
        raise InputError(f"intensity image has non-numeric dtype {img.dtype}", path=path)
    return img


def resolve_properties(properties: Iterable[str] | None, *, with_image: bool) -> list[str]:
    """The measurements to compute, in table order; unknown names raise ValueError."""
    if properties is None:
        wanted = list(SHAPE) + (list(INTENSITY) if with_image else [])
    else:
        wanted = list(dict.fromkeys(properties))
        unknown = [p for p in wanted if p not in BY_NAME]
        if unknown:
            known = [m.name for m in MEASUREMENTS]
            raise ValueError(f"unknown measurement(s) {unknown}; known: {known}")
        if not with_image:
            wanted = [p for p in wanted if p not in INTENSITY]
    order = {m.name: i for i, m in enumerate(MEASUREMENTS)}
    return sorted(wanted, key=order.__getitem__)


# --------------------------------------------------------------------------------------------
# the measurements, in pixel units
# --------------------------------------------------------------------------------------------


def shape_measurements(
    labels: np.ndarray, *, properties: Iterable[str] | None = None, method: str = "fast"
) -> dict[str, np.ndarray]:
    """Shape measurements of every object of ``labels``, in pixel units.

    Returns a dict of arrays, one entry per object in increasing label order: ``label``, the
    position columns (``centroid_row``, ``centroid_col``, ``bbox_row_min``, ``bbox_col_min``,
    ``bbox_row_max``, ``bbox_col_max``; max exclusive, as regionprops' ``bbox``) and each
    requested measurement under its bare name (``orientation`` in degrees). ``method="fast"``
    uses :mod:`morphoscope.morphology.shape`; ``"regionprops"`` runs
    ``skimage.measure.regionprops_table`` on the same image (slow; for checking).
    """
    labels = check_label_image(labels)
    props = [p for p in resolve_properties(properties, with_image=False)]
    if method == "regionprops":
        from morphoscope.morphology.reference import regionprops_measurements

        return regionprops_measurements(labels, properties=props)
    if method != "fast":
        raise ValueError(f"method must be 'fast' or 'regionprops', got {method!r}")
    return _shape_from_seq(*_shape.sequential_labels(labels), props)


def _shape_from_seq(seq: np.ndarray, ids: np.ndarray, props: list[str]) -> dict[str, np.ndarray]:
    n = len(ids)
    out: dict[str, np.ndarray] = {"label": ids}
    if n == 0:
        for c in POSITION_COLUMNS:
            out[c] = np.zeros(0, np.float64 if c.startswith("centroid") else np.int64)
        for p in props:
            out[p] = np.zeros(0)
        return out
    needs = set().union(*(_NEEDS[p] for p in props)) if props else set()
    runs = _shape.Runs(seq, n)
    m = _shape.area_bbox_moments(runs)
    out.update(centroid_row=m["centroid_row"], centroid_col=m["centroid_col"],
               bbox_row_min=m["row_min"], bbox_col_min=m["col_min"],
               bbox_row_max=m["row_max"], bbox_col_max=m["col_max"])
    area = m["area"]
    per = _shape.perimeter(seq, n) if "perimeter" in needs else None
    ax = _shape.inertia_axes(m)
    hull_rows = ac = None
    if "hull" in needs:
        hull_rows = _shape.convex_hull_rows(runs, m["row_min"], m["row_max"])
        ac = _shape.area_convex(hull_rows, n)
    fmax = fmin = None
    if "feret" in needs:
        fmax, fmin = _shape.feret_diameters(hull_rows, n)
    bbox_area = ((m["row_max"] - m["row_min"]) * (m["col_max"] - m["col_min"])).astype(float)
    values = {
        "area": lambda: area,
        "perimeter": lambda: per,
        "circularity": lambda: circularity(area, per),
        "eccentricity": lambda: ax["eccentricity"],
        "axis_major_length": lambda: ax["axis_major_length"],
        "axis_minor_length": lambda: ax["axis_minor_length"],
        "aspect_ratio": lambda: aspect_ratio(ax["axis_major_length"], ax["axis_minor_length"]),
        "anisotropy": lambda: anisotropy(ax["axis_major_length"], ax["axis_minor_length"]),
        "solidity": lambda: area / ac,
        "area_convex": lambda: ac,
        "extent": lambda: area / bbox_area,
        "equivalent_diameter": lambda: np.sqrt(4 * area / np.pi),
        "feret_diameter_max": lambda: fmax,
        "feret_diameter_min": lambda: fmin,
        "orientation": lambda: np.degrees(ax["orientation"]),
    }
    for p in props:
        out[p] = np.asarray(values[p](), dtype=np.float64)
    return out


def circularity(area, perimeter):
    """``min(1, 4πA/P²)``; NaN where ``P == 0`` (objects of one or two pixels)."""
    area, perimeter = np.asarray(area, float), np.asarray(perimeter, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = 4 * np.pi * area / perimeter**2
    return np.where(perimeter > 0, np.minimum(c, 1.0), np.nan)


def aspect_ratio(major, minor):
    """``major / minor``; inf where only the minor axis is 0, NaN where both are."""
    major, minor = np.asarray(major, float), np.asarray(minor, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = major / minor
    return np.where(major > 0, np.where(minor > 0, r, np.inf), np.nan)


def anisotropy(major, minor):
    """``1 - minor / major``; NaN where the major axis is 0 (a single pixel)."""
    major, minor = np.asarray(major, float), np.asarray(minor, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = 1 - minor / major
    return np.where(major > 0, np.clip(a, 0.0, 1.0), np.nan)


def intensity_measurements(
    labels: np.ndarray, image: np.ndarray, *, properties: Iterable[str] = INTENSITY
) -> dict[str, np.ndarray]:
    """Intensity statistics of the image's values over each object's pixels (label order).

    For an ``(H, W, C)`` image every statistic is returned per channel as
    ``(n_objects, C)`` arrays. Values are in the image's own units (float64).
    """
    labels = check_label_image(labels)
    img = _check_image(image, labels.shape)
    seq, ids = _shape.sequential_labels(labels)
    return _intensity_from_seq(seq, len(ids), img, properties)


def _intensity_from_seq(seq, n, img, properties) -> dict[str, np.ndarray]:
    props = [p for p in properties if p in INTENSITY]
    chans = img.reshape(img.shape[0] * img.shape[1], -1)
    n_ch = chans.shape[1]
    out = {p: np.zeros((n, n_ch)) for p in props}
    if n == 0 or not props:
        return out
    fg = np.flatnonzero(seq.ravel())
    lab = seq.ravel()[fg].astype(np.intp) - 1
    area = np.bincount(lab, minlength=n).astype(np.float64)
    for ch in range(n_ch):
        v = chans[fg, ch]
        vf = v.astype(np.float64)
        total = np.bincount(lab, weights=vf, minlength=n)
        mean = total / area
        if "intensity_integrated" in out:
            out["intensity_integrated"][:, ch] = total
        if "intensity_mean" in out:
            out["intensity_mean"][:, ch] = mean
        if "intensity_std" in out:
            dev = vf - mean[lab]
            var = np.bincount(lab, weights=dev * dev, minlength=n) / area
            out["intensity_std"][:, ch] = np.sqrt(var)
        if {"intensity_median", "intensity_min", "intensity_max"} & set(out):
            # sort by value, then (stably) by object: each object's values in ascending order
            key = v
            if np.issubdtype(v.dtype, np.signedinteger) and v.dtype.itemsize <= 2:
                key = (v.astype(np.int32) - int(np.iinfo(v.dtype).min)).astype(np.uint16)
            by_value = np.argsort(key, kind="stable")  # radix sort for 8/16-bit values
            order = by_value[_shape._stable_order(lab[by_value].astype(np.int64), n)]
            sv = vf[order]
            counts = area.astype(np.int64)
            starts = np.cumsum(counts) - counts
            if "intensity_min" in out:
                out["intensity_min"][:, ch] = sv[starts]
            if "intensity_max" in out:
                out["intensity_max"][:, ch] = sv[starts + counts - 1]
            if "intensity_median" in out:
                lo = sv[starts + (counts - 1) // 2]
                hi = sv[starts + counts // 2]
                out["intensity_median"][:, ch] = (lo + hi) / 2
    return out


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def table_columns(
    *, properties: Sequence[str], physical: bool, n_channels: int = 0, scores: bool = False,
    group: bool = False,
) -> list[str]:
    """Column names of a measurement table, in order."""
    cols = ["image"] + (["group"] if group else []) + ["label", "class"]
    cols += (["score"] if scores else []) + ["touches_border"]
    cols += (["pixel_size_um"] if physical else []) + list(POSITION_COLUMNS)
    for p in properties:
        if p in INTENSITY:
            if n_channels == 1:
                cols.append(column_name(p))
            else:
                cols += [column_name(p, channel=c) for c in range(n_channels)]
        else:
            cols.append(column_name(p, physical=physical))
    return cols


def _dtype(col: str):
    if col in ("image", "class", "group"):
        return str  # pandas' default text dtype (object in pandas 2, str in pandas 3)
    if col == "touches_border":
        return bool
    if col == "label" or col.startswith("bbox_"):
        return np.int64
    return np.float64


def empty_table(columns: Sequence[str]) -> pd.DataFrame:
    """A table with ``columns`` and no rows, each column with its dtype."""
    return pd.DataFrame({c: pd.Series([], dtype=_dtype(c)) for c in columns})


def _lookup(mapping, ids: np.ndarray, what: str, *, default=None) -> list:
    if mapping is None:
        return [default] * len(ids)
    if isinstance(mapping, Mapping):
        missing = [int(i) for i in ids if int(i) not in mapping]
        if missing:
            raise InputError(f"no {what} for label(s) {missing[:10]}"
                             + (" ..." if len(missing) > 10 else ""))
        return [mapping[int(i)] for i in ids]
    arr = np.asarray(mapping)
    if len(ids) and int(ids.max()) >= len(arr):
        raise InputError(f"{what} array has {len(arr)} entries (indexed by label) but the label "
                         f"image has label {int(ids.max())}")
    return list(arr[ids])


def _class_name(value, class_names) -> str:
    if value is None:
        return DEFAULT_CLASS
    if isinstance(value, str):
        return value
    value = int(value)
    if class_names is None:
        return str(value)
    if isinstance(class_names, Mapping):
        if value not in class_names:
            raise InputError(f"class {value} has no name in class_names {dict(class_names)}")
        return str(class_names[value])
    if not 1 <= value <= len(class_names):
        raise InputError(f"class {value} has no name: class_names has {len(class_names)} "
                         "entries (class k is class_names[k - 1])")
    return str(class_names[value - 1])


def measure_labels(
    labels: np.ndarray,
    *,
    image: np.ndarray | None = None,
    pixel_size: float | None = None,
    scores=None,
    classes=None,
    class_names=None,
    image_name: str = "image",
    group: str | None = None,
    exclude_border: bool = False,
    properties: Iterable[str] | None = None,
    method: str = "fast",
) -> pd.DataFrame:
    """Measure every object of one instance-label image: one table row per object.

    Parameters
    ----------
    labels : (H, W) integer array
        0 = background, every other value one object (values need not be consecutive; an
        object may consist of several pieces, as in regionprops).
    image : (H, W) or (H, W, C) array, optional
        Intensity image for the ``intensity_*`` columns (``_ch0``, ``_ch1``, ... per channel).
    pixel_size : float, optional
        Pixel size in µm (square pixels). Lengths and areas are then in µm and µm² and the
        column names end in ``_um``/``_um2``; otherwise in pixels (``_px``/``_px2``).
    scores : mapping {label: score} or array indexed by label, optional
        Detection scores (a ``score`` column).
    classes : mapping {label: class} or array indexed by label, optional
        Each object's class, as a name or a number; numbers are named by ``class_names``
        ({number: name}, or a sequence where class k is ``class_names[k - 1]``). Without
        ``classes`` every object is of class ``"object"``.
    image_name : str
        Value of the ``image`` column.
    group : str, optional
        Value of a ``group`` column (the condition the image belongs to), for comparisons.
    exclude_border : bool
        Drop objects that touch the image border (``touches_border``: the bounding box reaches
        the first or last row or column). By default they are kept and flagged.
    properties : iterable of str, optional
        Measurements to compute (default: all; intensity ones only with ``image``).
    method : {"fast", "regionprops"}
        ``"regionprops"`` computes the same numbers with scikit-image, one object at a time.

    Returns
    -------
    pandas.DataFrame
        Columns ``image``, [``group``], ``label``, ``class``, [``score``], ``touches_border``,
        [``pixel_size_um``], ``centroid_row``, ``centroid_col``, ``bbox_row_min``,
        ``bbox_col_min``, ``bbox_row_max``, ``bbox_col_max`` (pixel coordinates, max
        exclusive), then the measurements. An image without objects gives a table with these
        columns and no rows. ``table.attrs["images"]`` records the image's name, size and pixel
        size (used by :func:`~morphoscope.morphology.summarize` for densities).

    Raises
    ------
    InputError
        Non-integer, boolean, negative or non-2D labels; an image of another size; a pixel
        size that is not a positive number.

    Notes
    -----
    The measurements (column: definition; range; regionprops equivalent):

    """
    labels = check_label_image(labels)
    pixel_size = check_pixel_size(pixel_size)
    img = None if image is None else _check_image(image, labels.shape)
    props = resolve_properties(properties, with_image=img is not None)
    shape_props = [p for p in props if p not in INTENSITY]
    n_ch = 0 if img is None else (1 if img.ndim == 2 else img.shape[2])
    physical = pixel_size is not None
    columns = table_columns(properties=props, physical=physical, n_channels=n_ch,
                            scores=scores is not None, group=group is not None)
    h, w = labels.shape
    info = {image_name: {"height": h, "width": w, "pixel_size_um": pixel_size, "group": group}}
    if method == "fast":
        seq, ids = _shape.sequential_labels(labels)
        res = _shape_from_seq(seq, ids, shape_props)
    else:
        res = shape_measurements(labels, properties=shape_props, method=method)
        ids = res["label"]
    if len(ids) == 0:
        table = empty_table(columns)
        table.attrs["images"] = info
        return table
    data: dict[str, object] = {"image": [image_name] * len(ids)}
    if group is not None:
        data["group"] = [str(group)] * len(ids)
    data["label"] = ids
    data["class"] = [_class_name(c, class_names) for c in _lookup(classes, ids, "class")]
    if scores is not None:
        data["score"] = np.asarray(_lookup(scores, ids, "score"), dtype=np.float64)
    data["touches_border"] = ((res["bbox_row_min"] == 0) | (res["bbox_col_min"] == 0)
                              | (res["bbox_row_max"] == h) | (res["bbox_col_max"] == w))
    if physical:
        data["pixel_size_um"] = np.full(len(ids), pixel_size)
    for c in POSITION_COLUMNS:
        data[c] = res[c]
    for p in shape_props:
        scale = 1.0
        if physical:
            kind = BY_NAME[p].kind
            scale = pixel_size**2 if kind == "area" else (pixel_size if kind == "length" else 1.0)
        data[column_name(p, physical=physical)] = res[p] * scale
    if img is not None:
        inten_props = [p for p in props if p in INTENSITY]
        if method == "regionprops":
            from morphoscope.morphology.reference import regionprops_intensity

            inten = regionprops_intensity(labels, img, properties=inten_props)
        else:
            inten = _intensity_from_seq(seq, len(ids), img, inten_props)
        for p in inten_props:
            if n_ch == 1:
                data[column_name(p)] = inten[p][:, 0]
            else:
                for c in range(n_ch):
                    data[column_name(p, channel=c)] = inten[p][:, c]
    table = pd.DataFrame(data, columns=columns)
    if exclude_border:
        table = table[~table["touches_border"]].reset_index(drop=True)
    table.attrs["images"] = info
    return table


measure_labels.__doc__ += "\n".join("    " + line if line else line
                                    for line in definitions_text().splitlines()) + "\n"


# --------------------------------------------------------------------------------------------
# files, folders, prediction folders
# --------------------------------------------------------------------------------------------


def read_pixel_size(path: str | Path) -> float | None:
    """Pixel size in µm recorded in an image file (OME-XML, ImageJ, a TIFF resolution in
    centimetres, OME-Zarr scale; see :func:`morphoscope.io.metadata.read_metadata`); None when
    the file records none (PNG, plain TIFF, resolution in inches -- usually a screen default) or
    its header cannot be read (reading the image reports that).

    Raises :class:`InputError` for non-square pixels (X and Y sizes differ by more than 0.1 %).
    """
    from morphoscope.io.metadata import read_metadata

    path = Path(path)
    try:
        meta = read_metadata(path)
    except InputError:  # unreadable metadata is no pixel size, not an error
        return None
    sx = meta.pixel_size
    sy = meta.pixel_size_y if meta.pixel_size_y is not None else sx
    if sx is None or sy is None:
        return None
    if abs(sx - sy) > 1e-3 * max(sx, sy):
        raise InputError(
            f"pixels are not square (x {sx:g} µm, y {sy:g} µm); shape measurements need square "
            "pixels -- resample the image or pass --pixel-size to override", path=path)
    return sx


def image_name_of(path: str | Path) -> str:
    """Name of the image a label file belongs to: its stem without ``_labels``, ``_masks``,
    Cellpose's ``_cp_masks``, ... (:func:`morphoscope.io.images.image_names_of_label`)."""
    from morphoscope.io.images import image_names_of_label

    return image_names_of_label(Path(path).stem)[0]


def _pair_images(label_paths: list[Path], image_paths: list[Path] | None) -> list[Path | None]:
    """The intensity image of each label image, by name: ``a_labels.tif``, ``a_masks.png`` and
    Cellpose's ``a_cp_masks.png`` pair with ``a.tif`` (else with ``a_cp.tif``), ``a.png`` with
    ``a.tif``."""
    from morphoscope.io.images import image_names_of_label

    if not image_paths:
        return [None] * len(label_paths)
    if len(label_paths) == 1 and len(image_paths) == 1:
        return list(image_paths)
    by_name: dict[str, Path] = {}
    for p in image_paths:
        by_name.setdefault(p.stem, p)
    paired, missing = [], []
    for lp in label_paths:
        ip = next((by_name[n] for n in image_names_of_label(lp.stem) if n in by_name), None)
        if ip is None:
            missing.append(lp.name)
        paired.append(ip)
    if missing:
        raise InputError(
            f"{len(missing)} label image(s) have no intensity image of the same name: "
            f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            + " (images are paired with label images by file name, without '_labels', "
            "'_masks' or '_cp_masks')",
            path=label_paths[0].parent)
    return paired


def _measure_one(job: dict) -> pd.DataFrame:
    """Worker: read one label file (and image), measure, return the table."""
    from morphoscope.io.images import read_image, read_label_image

    lp = Path(job["label_path"])
    labels = read_label_image(lp)
    image = None
    if job.get("image_path"):
        ip = Path(job["image_path"])
        image = read_image(ip)
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]
        if image.shape[:2] != labels.shape:
            raise InputError(
                f"label image {lp.name} is {labels.shape[0]}x{labels.shape[1]} but its image "
                f"{ip.name} is {image.shape[0]}x{image.shape[1]}", path=lp)
    planes = [labels]
    if job.get("by_class_path"):  # overlapping classes: each class's objects on their own plane
        from morphoscope.io.images import read_class_planes

        planes = read_class_planes(job["by_class_path"], shape=labels.shape)
        lp = Path(job["by_class_path"])
    try:
        tables = [measure_labels(
            plane, image=image, pixel_size=job.get("pixel_size"), scores=job.get("scores"),
            classes=job.get("classes"), class_names=job.get("class_names"),
            image_name=job["image_name"], group=job.get("group"),
            exclude_border=job.get("exclude_border", False), properties=job.get("properties"),
            method=job.get("method", "fast")) for plane in planes]
        if len(tables) == 1:
            return tables[0]
        table = concat_tables(tables, columns=list(tables[0].columns))
        images = table.attrs.get("images", {})
        table = table.sort_values("label", kind="stable").reset_index(drop=True)
        table.attrs["images"] = images
        return table
    except InputError as exc:
        message = exc.message
        if job.get("scores") is not None and ("no score for" in message or "no class for" in message):
            message += f": the label image holds objects that {PREDICTIONS_JSON} does not describe"
        raise InputError(message, path=exc.path or lp) from None


def _measure_or_skip(job: dict) -> pd.DataFrame | tuple[str, str]:
    """Worker of a batch that goes on past bad images: the table, or (file, problem)."""
    try:
        return _measure_one(job)
    except InputError as exc:
        return (Path(exc.path or job["label_path"]).name, exc.message)


def _batch_table(outcomes: list) -> pd.DataFrame:
    """One table of a batch's outcomes (tables, or (file, problem) of skipped images); raises
    :class:`SkippedInputs` with the table of the others when images were skipped."""
    tables = [o for o in outcomes if isinstance(o, pd.DataFrame)]
    failed = [o for o in outcomes if not isinstance(o, pd.DataFrame)]
    if failed:
        raise SkippedInputs(failed, done=len(tables), action="measured",
                            outcome=f"the other {len(tables)} were measured" if tables else "nothing was measured",
                            result=concat_tables(tables) if tables else None)
    return concat_tables(tables)


def _run_jobs(jobs: list[dict], n_jobs: int, *, strict: bool = True) -> list:
    """Measure ``jobs``: their tables in order; without ``strict``, (file, problem) in place of
    the table of an image that cannot be measured (with ``strict`` its error is raised)."""
    worker = _measure_one if strict else _measure_or_skip
    if n_jobs == 1 or len(jobs) < 2:
        return [worker(j) for j in jobs]
    import multiprocessing as mp
    import sys
    import threading
    from concurrent.futures import ProcessPoolExecutor

    methods = mp.get_all_start_methods()
    # fork is cheapest (no re-imports) but unsafe once threads run (e.g. torch's)
    if "fork" in methods and threading.active_count() == 1 and "torch" not in sys.modules:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context(method)) as ex:
        return list(ex.map(worker, jobs, chunksize=max(1, len(jobs) // (4 * n_jobs))))


def _n_jobs(n_jobs: int | None) -> int:
    import os

    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return int(n_jobs)


def concat_tables(tables: list[pd.DataFrame], columns: list[str] | None = None) -> pd.DataFrame:
    """Stack measurement tables (of several images) into one, keeping each table's
    ``attrs["images"]`` (image sizes and pixel sizes, needed for densities)."""
    images: dict = {}
    for t in tables:
        images.update(t.attrs.get("images", {}))
    non_empty = [t for t in tables if len(t)]
    if non_empty:
        cols = list(dict.fromkeys(c for t in tables for c in t.columns))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            out = pd.concat(non_empty, ignore_index=True)
        out = out.reindex(columns=cols)
    else:
        cols = columns or (list(tables[0].columns) if tables else [])
        out = empty_table(cols)
    out.attrs["images"] = images
    return out


def _resolve_pixel_sizes(label_paths, image_paths, pixel_size):
    """One pixel size per image: the given one, else each file's metadata (image first, then
    label file). If only some files record one, all are measured in pixels, with a warning."""
    if pixel_size is not None:
        return [check_pixel_size(pixel_size)] * len(label_paths)
    found = []
    for lp, ip in zip(label_paths, image_paths):
        s = read_pixel_size(ip) if ip is not None else None
        found.append(s if s is not None else read_pixel_size(lp))
    if all(s is None for s in found):
        return found
    if any(s is None for s in found):
        without = [Path(lp).name for lp, s in zip(label_paths, found) if s is None]
        warnings.warn(
            f"{len(without)} of {len(found)} images record no pixel size ({', '.join(without[:3])}"
            + (" ..." if len(without) > 3 else "") + "); measuring all in pixels -- pass "
            "--pixel-size to measure in µm", stacklevel=3)
        return [None] * len(found)
    return found


def read_groups(path: str | Path) -> dict[str, str]:
    """``{image name: group}`` from a CSV file with columns ``image`` and ``group``.

    Image names may be given with or without their file extension.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise InputError("groups file not found", path=path) from None
    except Exception as exc:
        raise InputError(f"cannot read groups CSV ({exc})", path=path) from None
    if not {"image", "group"} <= set(df.columns):
        raise InputError(f"groups CSV needs columns 'image' and 'group', has {list(df.columns)}",
                         path=path)
    return {image_name_of(str(r.image)): str(r.group) for r in df.itertuples()}


def _group_of(name: str, label_path: Path, groups) -> str | None:
    if groups is None:
        return None
    if groups == "folder":
        return label_path.parent.name
    if name not in groups:
        raise InputError(f"image '{name}' has no group in the groups table", path=label_path)
    return groups[name]


def read_classes_file(path: str | Path) -> tuple[list[str], dict[str, dict[int, int]]]:
    """Read a ``classes.json`` sidecar ``{"names": [...], "objects": {NAME: {label: class}}}``
    (class k is ``names[k - 1]``), as in the ``labels`` dataset layout."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
        names = [str(n) for n in meta["names"]]
        objects = {k: {int(lab): int(c) for lab, c in v.items()}
                   for k, v in meta.get("objects", {}).items()}
    except FileNotFoundError:
        raise InputError("classes file not found", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:
        raise InputError('not a classes file {"names": [...], "objects": {image: {label: '
                         f'class}}}}}} ({type(exc).__name__}: {exc})', path=path) from None
    return names, objects


def measure_files(
    labels,
    *,
    images=None,
    pixel_size: float | None = None,
    classes: str | Path | None = None,
    groups: Mapping[str, str] | str | Path | None = None,
    exclude_border: bool = False,
    properties: Iterable[str] | None = None,
    n_jobs: int | None = 1,
    method: str = "fast",
    strict: bool = True,
) -> pd.DataFrame:
    """Measure the objects of label-image files (files, folders or glob patterns).

    ``images`` (files, folders or patterns) are paired with label files by name (``NAME.tif``
    with ``NAME.png`` or ``NAME_labels.tif``). ``pixel_size`` (µm) applies to every image;
    without it each image's TIFF metadata is used (see :func:`read_pixel_size`). ``classes``
    is a ``classes.json`` file (the dataset sidecar, see :func:`read_classes_file`); a
    ``classes.json`` beside the label files is used when ``classes`` is not given. ``groups``
    is ``{image name: group}``, a CSV file with columns ``image,group``, or ``"folder"`` (the
    name of each label file's folder). ``n_jobs`` processes measure images in parallel
    (-1: all cores). Returns one table for all images (see :func:`measure_labels`).

    ``strict=False`` measures a batch that has bad images: each image that cannot be read or
    measured is skipped, the others are measured, and :class:`~morphoscope.errors.SkippedInputs`
    is raised at the end naming the skipped files, with the others' table as its ``result``.
    """
    from morphoscope.io.images import find_images

    label_paths = [p for p in find_images(labels, suffixes=(".png", ".tif", ".tiff"))
                   if p.name != "classes.json"]
    image_paths = find_images(images) if images else None
    paired = _pair_images(label_paths, image_paths)
    sizes = _resolve_pixel_sizes(label_paths, paired, pixel_size)
    class_names, per_image = None, {}
    if classes is None:
        sidecars = {p.parent / "classes.json" for p in label_paths}
        existing = [s for s in sidecars if s.is_file()]
        if len(existing) == 1:
            classes = existing[0]
    if classes is not None:
        class_names, per_image = read_classes_file(classes)
    if groups is not None and not isinstance(groups, Mapping) and str(groups) != "folder":
        groups = read_groups(groups)
    elif groups is not None and str(groups) == "folder":
        groups = "folder"
    jobs, seen = [], {}
    for lp, ip, s in zip(label_paths, paired, sizes):
        name = image_name_of(lp)
        if name in seen:
            raise InputError(f"two label images are both named '{name}' ({seen[name]} and {lp})",
                             path=lp)
        seen[name] = lp
        cls = None
        if class_names is not None:
            cls = per_image.get(name, {})
            cls = _DefaultClasses(cls, 1)
        jobs.append({"label_path": str(lp), "image_path": None if ip is None else str(ip),
                     "pixel_size": s, "classes": cls, "class_names": class_names,
                     "image_name": name, "group": _group_of(name, lp, groups),
                     "exclude_border": exclude_border, "properties": properties,
                     "method": method})
    tables = _run_jobs(jobs, _n_jobs(n_jobs), strict=strict)
    return _batch_table(tables)


class _DefaultClasses(dict):
    """{label: class} where labels not listed are of class ``default`` (dataset convention)."""

    def __init__(self, mapping, default):
        super().__init__(mapping)
        self.default = default

    def __contains__(self, key):
        return True

    def __missing__(self, key):
        return self.default

    def __reduce__(self):
        return (_DefaultClasses, (dict(self), self.default))


def read_predictions(pred_dir: str | Path) -> dict:
    """Read and check ``predictions.json`` of a prediction folder (see docs/outputs.md)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError("prediction folder not found", path=pred_dir)
    path = pred_dir / PREDICTIONS_JSON
    if not path.is_file():
        raise InputError(f"no {PREDICTIONS_JSON} here; expected the output folder of "
                         "'morphoscope predict'", path=pred_dir)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations")):
        raise InputError("not a prediction file: needs 'images' and 'annotations'", path=path)
    return data


def prediction_objects(data: dict, *, path=None) -> dict[str, dict]:
    """Per image stem: ``{"scores": {label: score}, "classes": {label: category id},
    "image": images[] entry}`` from a predictions.json dict."""
    out: dict[str, dict] = {}
    by_id = {}
    for im in data["images"]:
        stem = Path(im["file_name"]).stem
        entry = {"scores": {}, "classes": {}, "image": im}
        out[stem] = entry
        by_id[im["id"]] = entry
    for ann in data["annotations"]:
        entry = by_id.get(ann.get("image_id"))
        if entry is None:
            raise InputError(f"annotation {ann.get('id')} refers to image id "
                             f"{ann.get('image_id')}, which is not declared", path=path)
        if "label" not in ann:
            raise InputError(f"annotation {ann.get('id')} has no 'label' (its value in "
                             "NAME_labels.tif)", path=path)
        lab = int(ann["label"])
        entry["scores"][lab] = float(ann.get("score", float("nan")))
        entry["classes"][lab] = int(ann["category_id"])
    return out


def measure_prediction_dir(
    pred_dir: str | Path,
    *,
    images=None,
    pixel_size: float | None = None,
    groups: Mapping[str, str] | str | Path | None = None,
    exclude_border: bool = False,
    properties: Iterable[str] | None = None,
    n_jobs: int | None = 1,
    method: str = "fast",
    strict: bool = True,
) -> pd.DataFrame:
    """Measure the objects of a ``morphoscope predict`` output folder.

    Objects are read from ``NAME_labels.tif``; their class (category name) and score come from
    ``predictions.json`` (``label`` = value in the label image). Where the folder holds
    ``NAME_labels_by_class.tif`` (multi-class models), each class's objects are measured on
    their own plane, so objects of different classes may overlap and each is measured whole (an
    organelle's area is not cut by the cell around it, nor the cell's by its organelles). ``images`` (the source images:
    files, folders or patterns, paired by name) add the intensity columns. The pixel size is
    ``pixel_size`` (µm), else the TIFF metadata of the source image or of the label image.
    Returns one table for all images (see :func:`measure_labels`), with a ``score`` column.
    ``strict=False`` skips bad images and reports them at the end, as :func:`measure_files`.
    """
    from morphoscope.io.images import find_images

    pred_dir = Path(pred_dir)
    data = read_predictions(pred_dir)
    json_path = pred_dir / PREDICTIONS_JSON
    objects = prediction_objects(data, path=json_path)
    class_names = {int(c["id"]): str(c["name"]) for c in data.get("categories") or []}
    label_paths = []
    for stem in objects:
        p = pred_dir / f"{stem}_labels.tif"
        if not p.is_file():
            raise InputError(f"image '{stem}' is listed in {PREDICTIONS_JSON} but "
                             f"{p.name} is missing", path=pred_dir)
        label_paths.append(p)
    image_paths = find_images(images) if images else None
    paired = _pair_images(label_paths, image_paths) if label_paths else []
    sizes = _resolve_pixel_sizes(label_paths, paired, pixel_size)
    if groups is not None and not isinstance(groups, Mapping) and str(groups) != "folder":
        groups = read_groups(groups)
    elif groups is not None and str(groups) == "folder":
        groups = "folder"
    jobs = []
    for (stem, entry), lp, ip, s in zip(objects.items(), label_paths, paired, sizes):
        unknown = sorted(set(entry["classes"].values()) - set(class_names))
        if unknown:
            raise InputError(f"category id(s) {unknown} used by annotations of '{stem}' are not "
                             "declared in 'categories'", path=json_path)
        by_class = pred_dir / f"{stem}_labels_by_class.tif"
        jobs.append({"label_path": str(lp), "image_path": None if ip is None else str(ip),
                     "by_class_path": str(by_class) if by_class.is_file() else None,
                     "pixel_size": s, "scores": entry["scores"], "classes": entry["classes"],
                     "class_names": class_names, "image_name": stem,
                     "group": _group_of(stem, lp, groups),
                     "exclude_border": exclude_border, "properties": properties,
                     "method": method})
    if not jobs:
        props = resolve_properties(properties, with_image=False)
        return empty_table(table_columns(properties=props, physical=pixel_size is not None,
                                         scores=True, group=groups is not None))
    return _batch_table(_run_jobs(jobs, _n_jobs(n_jobs), strict=strict))


# --------------------------------------------------------------------------------------------
# writing and reading tables
# --------------------------------------------------------------------------------------------


TABLE_SUFFIXES = (".csv", ".parquet")


def check_table_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"table must end in .csv or .parquet, got '{path.suffix or path.name}'",
                         path=path)
    if path.suffix.lower() == ".parquet":
        from morphoscope.extras import require

        require("parquet", "a .parquet table")  # checked before any work is done
    return path


def write_table(table: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a table as CSV or Parquet (by the file extension), atomically."""
    import io

    from morphoscope.io.atomic import atomic_write

    path = check_table_path(path)
    if path.suffix.lower() == ".csv":
        with atomic_write(path, overwrite=overwrite, mode="w") as fh:
            table.to_csv(fh, index=False, lineterminator="\n")
    else:
        buf = io.BytesIO()
        plain = table.copy()
        plain.attrs = {}
        plain.to_parquet(buf, index=False)
        with atomic_write(path, overwrite=overwrite) as fh:
            fh.write(buf.getvalue())
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a measurement table written by :func:`write_table` (CSV or Parquet)."""
    path = check_table_path(path)
    if not path.is_file():
        raise InputError("table not found", path=path)
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, dtype={"image": str, "class": str, "group": str})
        return pd.read_parquet(path)
    except Exception as exc:
        raise InputError(f"cannot read table ({type(exc).__name__}: {exc})", path=path) from None
