"""Image reading with the dynamic range kept, explicit channel handling, and safe writing.

Images are returned in their native dtype (8/16-bit stays 8/16-bit); conversion to the network's
input happens once, in :func:`to_model_input`, by robust per-image percentile normalisation.
"""

from __future__ import annotations

import glob
import io
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.io.atomic import atomic_write

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
#: endings that mark the label image of image NAME: NAME_labels.tif, NAME_masks.png, Cellpose's
#: NAME_cp_masks.png, ... (compared without case)
LABEL_NAME_SUFFIXES = ("_cp_masks", "_labels", "_label", "_masks", "_mask", "_instances", "_instance",
                       "_seg")


def image_names_of_label(stem: str) -> list[str]:
    """The names the image of a label file named ``stem`` may have, most likely first: ``stem``
    without a label ending (Cellpose's ``a_cp_masks`` -> ``a``, then ``a_cp``), then ``stem``."""
    lower = stem.lower()
    names = [stem[: -len(end)] for end in LABEL_NAME_SUFFIXES if lower.endswith(end) and len(stem) > len(end)]
    return list(dict.fromkeys([*names, stem]))


def label_file_of(image_stem: str, labels: dict[str, Path]) -> Path | None:
    """The label file of the image ``image_stem`` among ``labels`` ({stem: path}): same stem,
    else the stem with a label ending (``NAME_labels``, ``NAME_masks``, ``NAME_cp_masks``, ...)."""
    if image_stem in labels:
        return labels[image_stem]
    by_lower = {k.lower(): v for k, v in labels.items()}
    for end in LABEL_NAME_SUFFIXES:
        found = by_lower.get((image_stem + end).lower())
        if found is not None:
            return found
    return None


def read_image(path: str | Path, *, page: int | None = None) -> np.ndarray:
    """Read an image file as a numpy array in its native dtype.

    Returns ``(H, W)`` for single-channel images and ``(H, W, C)`` for RGB(A). A multi-page TIFF is
    returned whole, pages first (``(P, H, W[, C])``), unless ``page`` selects one page.
    Raises :class:`InputError` naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("image file not found", path=path)
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if page is not None:
                    arr = tif.asarray(key=page)
                else:
                    arr = tif.asarray()
                    axes = tif.series[0].axes if tif.series else ""
                    if axes.endswith("SYX") and arr.shape[-3] in (3, 4):
                        arr = np.moveaxis(arr, -3, -1)  # planar RGB -> channels last
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L"):
                    arr = np.asarray(im, dtype=np.uint16)
                elif im.mode == "P":
                    arr = np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
                elif im.mode in ("LA",):
                    arr = np.asarray(im)[..., 0]
                elif im.mode == "CMYK":
                    arr = np.asarray(im.convert("RGB"))
                else:
                    arr = np.asarray(im)
    except InputError:
        raise
    except Exception as exc:  # every decoder error becomes one readable line
        raise InputError(f"cannot read image ({type(exc).__name__}: {exc})", path=path) from exc
    if arr.size == 0:
        what = "not a valid TIFF (no image data could be decoded)" if suffix in TIFF_SUFFIXES else "image is empty (0 pixels)"
        raise InputError(what, path=path)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return np.ascontiguousarray(arr)


def read_label_image(path: str | Path) -> np.ndarray:
    """Read an instance-label image (0 = background, 1..N objects) as a 2D integer array.

    Lossy formats are refused: JPEG changes label values at object borders.
    """
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise InputError("label images must be lossless (PNG or TIFF), not JPEG", path=path)
    arr = read_image(path)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if not (np.all(arr[..., 0] == arr[..., 1]) and np.all(arr[..., 0] == arr[..., 2])):
            raise InputError(
                "label image is colour (RGB); expected one integer label per pixel", path=path
            )
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputError(f"label image must be 2D, got shape {arr.shape}", path=path)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(f"label image has non-integer values (dtype {arr.dtype})", path=path)
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"label image must be integer, got dtype {arr.dtype}", path=path)
    if arr.min() < 0:
        raise InputError("label image has negative labels", path=path)
    return arr


def find_images(inputs, *, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image files."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        item_s = str(item)
        p = Path(item_s)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes)
        elif p.is_file():
            found.append(p)
        elif any(ch in item_s for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item_s, recursive=True))
            found += [m for m in matches if m.is_file() and m.suffix.lower() in suffixes]
            if not matches:
                raise InputError("pattern matches no files", path=item_s)
        else:
            raise InputError("no such file or folder", path=p)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputError(f"no images ({', '.join(suffixes)}) found in {', '.join(map(str, inputs))}")
    return unique


def as_channels_last(img: np.ndarray) -> np.ndarray:
    """Return ``(H, W, C)``: grey gets C=1, alpha is dropped."""
    if img.ndim == 2:
        return img[..., None]
    if img.ndim == 3 and img.shape[-1] in (1, 2, 3, 4):
        return img[..., :3] if img.shape[-1] == 4 else img
    raise ValueError(
        f"expected a 2D image or (H, W, C) with C<=4, got shape {img.shape}; "
        "for stacks select a page/slice first"
    )


def normalize_percentile(
    img: np.ndarray, *, low: float = 1.0, high: float = 99.8, eps: float = 1e-6
) -> np.ndarray:
    """Scale intensities so that the ``low``/``high`` percentiles map to 0/1 (float32, not clipped).

    Robust to hot pixels and to the 12-bit-in-16-bit storage common in microscopy. Percentiles are
    taken jointly over all channels so colour balance is kept, and over the finite values only
    (NaN and infinite pixels of float images stay non-finite).
    """
    x = img.astype(np.float32, copy=False)
    sample = x if x.size <= 4_000_000 else x.reshape(-1)[:: x.size // 4_000_000 + 1]
    if np.issubdtype(img.dtype, np.floating):
        finite = np.isfinite(sample)
        if not finite.all():
            sample = sample[finite]
        if sample.size == 0:
            return x.copy()
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))  # Python floats keep float32
    return (x - np.float32(lo)) / np.float32(max(hi - lo, eps))


def to_model_input(
    img: np.ndarray, *, low: float = 1.0, high: float = 99.8, channels: int = 3
) -> np.ndarray:
    """Image (any dtype, grey or RGB) -> float32 ``(channels, H, W)`` normalised for the network.

    Grey images are repeated to ``channels``; RGB images are used as they are (``channels`` must
    then be 3). Percentile normalisation makes 8-bit, 12-bit and 16-bit data look alike.
    """
    x = normalize_percentile(as_channels_last(img), low=low, high=high)
    c = x.shape[-1]
    if c == 1 and channels != 1:
        x = np.repeat(x, channels, axis=-1)
    elif c == 2:
        x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)[..., :channels]
    elif c != channels:
        if channels == 1:
            x = x.mean(axis=-1, keepdims=True)
        else:
            raise ValueError(f"image has {c} channels, model expects {channels}")
    return np.ascontiguousarray(np.clip(x, -1.0, 3.0).transpose(2, 0, 1))


def to_display_rgb(img: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` view of any image for overlays (percentile stretched; NaN pixels
    black, infinite ones black or white by their sign)."""
    x = normalize_percentile(as_channels_last(img), low=0.5, high=99.8)
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0, 1)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 2:
        x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
    return (x * 255 + 0.5).astype(np.uint8)


def write_label_tiff(path: str | Path, labels: np.ndarray, *, overwrite: bool = True, **meta) -> None:
    """Write an instance-label image as a zlib-compressed TIFF (uint16, or uint32 past 65535)."""
    import tifffile

    labels = np.asarray(labels)
    dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels.astype(dtype, copy=False), compression="zlib", **meta)
    with atomic_write(path, overwrite=overwrite) as fh:
        fh.write(buf.getvalue())


def write_png(path: str | Path, arr: np.ndarray, *, overwrite: bool = True) -> None:
    """Write a uint8/uint16 grey or uint8 RGB(A) array as PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=4)
    with atomic_write(path, overwrite=overwrite) as fh:
        fh.write(buf.getvalue())


def read_class_planes(path: str | Path, *, shape=None) -> np.ndarray:
    """``NAME_labels_by_class.tif`` of a prediction folder (models of several classes) as
    ``(K, H, W)``: plane ``k - 1`` holds the objects of class ``k`` whole (objects of different
    classes may overlap) under their numbers in ``NAME_labels.tif`` and ``predictions.json``.
    ``shape``: the ``(H, W)`` the planes must have."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no {path.name}: per-class label planes are written for models of more "
                         "than one class", path=path.parent)
    try:
        planes = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is an input problem
        raise InputError(f"cannot read per-class label planes ({type(exc).__name__}: {exc})",
                         path=path) from None
    if planes.ndim != 3 or (shape is not None and planes.shape[1:] != tuple(shape)):
        want = f"(K, {shape[0]}, {shape[1]})" if shape is not None else "(K, H, W)"
        raise InputError(f"expected one 2D label plane per class {want}, got shape {planes.shape}", path=path)
    if not np.issubdtype(planes.dtype, np.integer):
        raise InputError(f"label planes must be integer, got {planes.dtype}", path=path)
    return planes
