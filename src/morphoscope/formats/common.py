"""What every annotation-file reader shares: lazily rasterised objects, finding the user's images
by name (Label Studio's upload prefix stripped), zip exports, and file names for messages."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from morphoscope.errors import InputError
from morphoscope.io.images import IMAGE_SUFFIXES

# Label Studio stores an upload NAME as "<8 hex digits>-NAME" (uuid4().hex[:8]).
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")


@dataclass(frozen=True)
class AnnotatedObject:
    """One object of an annotation file: its class (1..K), where it is in the file (for
    messages), and ``rasterize(height, width) -> bool mask``, called only when pixels are needed."""

    class_index: int
    where: str
    rasterize: Callable[[int, int], np.ndarray]


def strip_upload_prefix(name: str) -> str:
    """``"45af8a0a-NAME.png"`` -> ``"NAME.png"``; other names unchanged."""
    return UPLOAD_PREFIX.sub("", name, count=1)


def reference_basename(reference: str) -> str:
    """The file name in an image reference of an annotation tool: a path, a URL, Label Studio's
    ``/data/upload/3/NAME`` or ``/data/local-files/?d=dir/NAME``, percent-encoding undone."""
    ref = str(reference).strip()
    parsed = urlparse(ref)
    d = parse_qs(parsed.query).get("d")
    path = d[0] if d else parsed.path
    return PurePosixPath(unquote(path).replace("\\", "/")).name


# ---- zip exports ---------------------------------------------------------------------------

_EXTRACTED: dict[tuple, Path] = {}  # (zip path, size, mtime) -> extracted folder
_ORIGIN: dict[Path, Path] = {}  # extracted folder -> the zip it came from


_CREATOR = os.getpid()


def _cleanup() -> None:
    if os.getpid() != _CREATOR:  # a forked child must not remove its parent's folders
        return
    for folder in _EXTRACTED.values():
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(_cleanup)


def extract_zip(path: Path) -> Path:
    """Unpack an export zip once per process into a temporary folder (removed at exit)."""
    given, path = Path(path), Path(path).resolve()
    st = path.stat()
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _EXTRACTED and _EXTRACTED[key].is_dir():
        _ORIGIN[_EXTRACTED[key]] = given
        return _EXTRACTED[key]
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError("not a readable zip file", path=given) from None
    with zf:
        for info in zf.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise InputError(f"zip member '{info.filename}' points outside the archive", path=given)
        folder = Path(tempfile.mkdtemp(prefix="morphoscope-export-"))
        try:
            zf.extractall(folder)
        except (OSError, zipfile.BadZipFile) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise InputError(f"cannot unpack ({exc})", path=given) from None
    _EXTRACTED[key] = folder
    _ORIGIN[folder] = given
    return folder


def shown(path: Path | None) -> Path | None:
    """A path for messages: files unpacked from a zip are named as ``EXPORT.zip/member``."""
    if path is None:
        return None
    path = Path(path)
    for folder, zip_path in _ORIGIN.items():
        try:
            return zip_path / path.resolve().relative_to(folder)
        except ValueError:
            continue
    return path


def origin_dir(path: Path) -> Path | None:
    """For a file unpacked from a zip: the folder that holds the zip (where the files that came
    beside the download are), else None."""
    path = Path(path).resolve()
    for folder, zip_path in _ORIGIN.items():
        if path == folder or folder in path.parents:
            return zip_path.resolve().parent
    return None


# ---- images ----------------------------------------------------------------------------------

class ImageFinder:
    """Finds the image an annotation file names: in the user's ``images`` folder first, then
    beside the file and in ``images/`` (and its sub-folders) beside it.

    A name is tried as written, as its base name, with Label Studio's upload prefix stripped, and
    finally by stem alone when exactly one image has that stem (a TIFF annotated as a PNG copy)."""

    def __init__(self, annotation_file: Path, images: Path | None = None):
        self.annotation_file = annotation_file
        if images is not None and not Path(images).is_dir():
            raise InputError("images folder not found", path=images)
        roots = [annotation_file.parent]
        if annotation_file.parent.name == "annotations":  # COCO / Datumaro export layout
            roots.append(annotation_file.parent.parent)
        dirs = [Path(images)] if images is not None else []
        for r in roots:
            dirs.append(r)
            if (r / "images").is_dir():
                dirs.append(r / "images")
                dirs += sorted(d for d in (r / "images").iterdir() if d.is_dir())
        self.dirs = list(dict.fromkeys(dirs))
        # a "../" path in a file unpacked from a zip leads out of the temporary folder, nowhere
        self._from_zip = origin_dir(annotation_file) is not None
        self._stems: dict[Path, dict[str, list[Path]]] = {}

    def _by_stem(self, d: Path) -> dict[str, list[Path]]:
        if d not in self._stems:
            index: dict[str, list[Path]] = {}
            for p in d.iterdir():
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                    index.setdefault(p.stem, []).append(p)
            self._stems[d] = index
        return self._stems[d]

    def find(self, reference: str) -> tuple[Path, str] | None:
        """``(image path, the name under which it was found)`` or None."""
        base = reference_basename(reference)
        stripped = strip_upload_prefix(base)
        rel = PurePosixPath(str(reference).replace("\\", "/"))
        for d in self.dirs:
            candidates = []
            if not rel.is_absolute() and "://" not in str(reference) and not (self._from_zip and ".." in rel.parts):
                candidates.append((d / rel.as_posix(), base))
            candidates += [(d / base, base), (d / stripped, stripped)]
            for p, name in candidates:
                if p.is_file():
                    return p, name
        for d in self.dirs:
            for stem in dict.fromkeys([Path(stripped).stem, Path(base).stem]):
                hits = self._by_stem(d).get(stem, [])
                if len(hits) == 1:
                    return hits[0], hits[0].name
        return None

    def missing(self, reference: str, where: str) -> InputError:
        base = reference_basename(reference)
        stripped = strip_upload_prefix(base)
        also = f" (or '{stripped}')" if stripped != base else ""
        dirs = ", ".join(str(shown(d)) for d in self.dirs)
        return InputError(f"image '{base}'{also} of {where} was not found in {dirs}; "
                          "give the folder of your images (--images)", path=shown(self.annotation_file))
