"""The ``morphoscope`` command. Each sub-command lives in its own module of this package and
mirrors a function of the Python API.

Whatever goes wrong in a sub-command ends as one line on stderr, never a traceback
(:class:`MorphoscopeGroup`, so in-process test runners see exactly what users see):

* bad input or settings (:class:`~morphoscope.errors.MorphoscopeError`): ``error: FILE: problem``,
  exit status 2; a batch that skipped inputs lists each one when there are more than fit the
  summary line;
* the operating system refusing a file (permission denied, a read-only or full disk, a file where
  a folder should be): ``error: FILE: reason (what to do)``, exit status 2;
* Ctrl-C: ``interrupted``, exit status 130 (finished outputs are kept; ``--resume`` goes on);
* anything else is a bug: one line naming the exception and how to see its traceback
  (``MORPHOSCOPE_DEBUG=1``), exit status 1.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback

import typer
from typer.core import TyperGroup

from morphoscope.errors import MorphoscopeError, SkippedInputs

DEBUG_VARIABLE = "MORPHOSCOPE_DEBUG"
EXIT_INPUT = 2  # the user's input, settings or file system
EXIT_BUG = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

#: what to do about the operating-system errors a user meets
OS_ERROR_HINTS = {
    errno.EACCES: "check the permissions, or choose another location",
    errno.EPERM: "check the permissions, or choose another location",
    errno.EROFS: "choose a location on a writable disk",
    errno.ENOSPC: "free some space, or choose another location",
    errno.EDQUOT: "free some space, or choose another location",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EISDIR: "a file name is needed here, not a folder",
    errno.ENAMETOOLONG: "choose a shorter name",
}


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined with '; ' (with ' ' after a line ending in ':')."""
    line = ""
    for part in (p.strip() for p in str(text).splitlines()):
        if part:
            line += ("" if not line else " " if line.endswith(":") else "; ") + part
    return line


def describe_os_error(exc: OSError) -> str:
    """``FILE: reason (what to do)`` for an error the operating system raised."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = OS_ERROR_HINTS.get(exc.errno)
    text = f"{reason} ({hint})" if hint else reason
    return f"{where}: {text}" if where else text


def report_error(exc: BaseException) -> int:
    """Print ``exc`` for the user (see the module docstring); returns the exit status."""
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    if isinstance(exc, KeyboardInterrupt):
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        return EXIT_INTERRUPTED
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, SkippedInputs) and len(exc.failed) > SkippedInputs.LISTED:
        for name, message in exc.failed:  # the summary line names only the first few
            typer.secho(f"skipped {name}: {one_line(message)}", fg=typer.colors.YELLOW, err=True)
    if isinstance(exc, MorphoscopeError):
        line, status = str(exc), EXIT_INPUT
    elif isinstance(exc, OSError):
        line, status = describe_os_error(exc), EXIT_INPUT
    elif isinstance(exc, MemoryError):
        line, status = ("out of memory; process fewer or smaller images at a time (predict: a "
                        "smaller --block-size or --batch-size)"), EXIT_INPUT
    else:
        line = f"unexpected {type(exc).__name__}: {exc}" if str(exc) else f"unexpected {type(exc).__name__}"
        if not debug:
            line += f" (set {DEBUG_VARIABLE}=1 to see the traceback)"
        status = EXIT_BUG
    typer.secho(f"error: {one_line(line)}", fg=typer.colors.RED, err=True)
    return status


class MorphoscopeGroup(TyperGroup):
    """The command group; a sub-command's errors become one line and an exit status
    (:func:`report_error`). Usage errors and explicit exits stay click's."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):  # usage errors, explicit exits
            raise
        except (Exception, KeyboardInterrupt) as exc:
            raise typer.Exit(report_error(exc)) from None


app = typer.Typer(
    name="morphoscope",
    cls=MorphoscopeGroup,
    help="Microscopy images and annotations to trained models, predictions, measurements and reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """morphoscope: instance segmentation, morphology and reports for microscopy images."""


# One module per command, each with register(app); imported here after `app` exists.
from morphoscope.cli import (  # noqa: E402
    compare,
    convert,
    demo,
    evaluate,
    export,
    measure,
    models,
    predict,
    report,
    serve,
    train,
    tune,
)

for _module in (demo, train, predict, evaluate, convert, measure, report, tune, compare, serve, models, export):
    _module.register(app)


def main() -> None:
    """The console entry point: ``morphoscope ...`` and ``python -m morphoscope ...``."""
    try:
        app(prog_name="morphoscope")
    except KeyboardInterrupt:  # while starting up or parsing, before a sub-command runs
        sys.exit(report_error(KeyboardInterrupt()))
