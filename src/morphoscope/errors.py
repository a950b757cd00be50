"""Errors that reach users: each names the file and the problem, never a deep traceback."""

from __future__ import annotations

from pathlib import Path


class MorphoscopeError(Exception):
    """A problem with the user's input or settings, reported in one readable line.

    ``path`` is the file (or folder) the problem is in, when there is one.
    """

    def __init__(self, message: str, *, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputError(MorphoscopeError):
    """Unreadable, inconsistent or invalid input data (images, labels, annotations)."""


class ConfigError(MorphoscopeError):
    """An invalid configuration file or option."""


class OutputExistsError(MorphoscopeError):
    """An output would overwrite an existing result and ``overwrite`` was not given."""
