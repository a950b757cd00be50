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


class SkippedInputs(InputError):
    """Some inputs of a batch could not be processed and were skipped; the others were.

    ``failed`` lists ``(file name, problem)``; ``done`` counts the inputs that were processed;
    ``result`` holds what the batch made of them (a table, a metrics dict) when the caller still
    has to write it. The message names the first :attr:`LISTED` failures.
    """

    LISTED = 5

    def __init__(self, failed: list[tuple[str, str]], *, done: int, action: str, outcome: str,
                 result=None):
        self.failed, self.done, self.result = list(failed), done, result
        shown = "; ".join(f"{name}: {problem}" for name, problem in self.failed[:self.LISTED])
        more = f"; and {len(self.failed) - self.LISTED} more" if len(self.failed) > self.LISTED else ""
        super().__init__(f"{len(self.failed)} of {len(self.failed) + done} input(s) could not be "
                         f"{action} ({shown}{more}); {outcome}")
