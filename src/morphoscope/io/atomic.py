"""Nothing is lost: every output is written to a temporary file beside it and renamed into place,
and existing results are only replaced when the caller says ``overwrite``."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from morphoscope.errors import OutputExistsError


@contextlib.contextmanager
def atomic_write(path: str | Path, *, overwrite: bool = True, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and ``path`` is left as it was. Temporary
    files of ``path`` left by a killed process are removed first. Errors of the operating
    system (permission denied, disk full, ...) name ``path``, never the temporary file.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", path=path)
    tmp = None
    try:
        _make_parent(path)
        remove_orphans(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=path.parent)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are normal files
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if exc.filename is None or is_temporary_of(path, exc.filename):
            exc.filename = str(path)  # a full disk while writing, a folder refusing files
        raise
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that need a file name rather than a file
    object (tifffile's BigTIFF writer); on success it is renamed to ``path``, on an exception
    removed. (For a folder, such as an OME-Zarr store, build it under ``.NAME.part`` and rename.)"""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", path=path)
    tmp = None
    try:
        _make_parent(path)
        remove_orphans(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if exc.filename is None or is_temporary_of(path, exc.filename):
            exc.filename = str(path)  # name the result, as atomic_write does
        raise
    except BaseException:
        _discard(tmp)
        raise


PART_SUFFIX = ".part"
#: ``.NAME.<8 random characters>.part``: the temporary files of :func:`atomic_write`
_TEMPORARY_RE = r"\.{name}\.[a-z0-9_]{{8}}\.part"


def is_temporary_of(path: str | Path, candidate: str | Path) -> bool:
    """Whether ``candidate`` is a temporary file :func:`atomic_write` makes for ``path``."""
    path, candidate = Path(path), Path(candidate)
    return (candidate.parent == path.parent
            and re.fullmatch(_TEMPORARY_RE.format(name=re.escape(path.name)), candidate.name) is not None)


def remove_orphans(path: str | Path) -> list[Path]:
    """Remove the temporary files of ``path`` that a killed run of :func:`atomic_write` left
    beside it (never a finished file); returns them."""
    path = Path(path)
    found = [p for p in path.parent.glob(f".{glob.escape(path.name)}.*{PART_SUFFIX}")
             if is_temporary_of(path, p)]
    for p in found:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return found


def _make_parent(path: Path) -> None:
    """Create the folder of ``path``; a file where a folder of the path should be is
    NotADirectoryError naming ``path`` (mkdir would say 'File exists' about the file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once, at import: os.umask can only be read by setting it, which races with other threads
# creating files (the prediction writer runs in one)
_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


def check_writable(paths, *, overwrite: bool) -> None:
    """Raise before any work starts if one of ``paths`` exists and ``overwrite`` is false, or
    cannot be written (its folder refuses new files, or a file stands where a folder should)."""
    probed: set[Path] = set()
    for p in paths:
        _probe_folder(Path(p), probed)
    if overwrite:
        return
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"output already exists{more}; pass --overwrite to replace it", path=existing[0]
        )


def _probe_folder(path: Path, probed: set[Path]) -> None:
    """Create and remove a temporary file in the nearest existing folder of ``path``; the
    operating system's refusal is raised naming ``path``. (Permission bits do not tell: an
    administrator may write anywhere, and read-only disks keep theirs.)"""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder in probed:
        return
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=folder)
    except OSError as exc:
        exc.filename = str(path)
        raise
    os.close(fd)
    os.unlink(tmp)
    probed.add(folder)


def prepare_output_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError("output path exists and is not a folder", path=path)
    path.mkdir(parents=True, exist_ok=True)
    return path
