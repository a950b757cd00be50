"""Nothing is lost: every output is written to a temporary file beside it and renamed into place,
and existing results are only replaced when the caller says ``overwrite``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from morphoscope.errors import OutputExistsError


@contextlib.contextmanager
def atomic_write(path: str | Path, *, overwrite: bool = True, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are normal files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that need a file name (not a file object);
    on success it is renamed to ``path``, on an exception removed."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(paths, *, overwrite: bool) -> None:
    """Raise before any work starts if one of ``paths`` exists and ``overwrite`` is false."""
    if overwrite:
        return
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"output already exists{more}; pass --overwrite to replace it", path=existing[0]
        )


def prepare_output_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError("output path exists and is not a folder", path=path)
    path.mkdir(parents=True, exist_ok=True)
    return path
