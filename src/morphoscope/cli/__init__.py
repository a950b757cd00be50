"""The ``morphoscope`` command. Each sub-command lives in its own module of this package and
mirrors a function of the Python API; errors in the user's input are printed as one line."""

from __future__ import annotations

import importlib
import sys

import typer

from morphoscope.errors import MorphoscopeError

app = typer.Typer(
    name="morphoscope",
    help="Microscopy images and annotations to trained models, predictions, measurements and reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """morphoscope: instance segmentation, morphology and reports for microscopy images."""


# Sub-command modules; each defines register(app). A module that is missing (feature not built
# yet) is skipped so the rest of the CLI keeps working.
COMMAND_MODULES = [
    "demo", "train", "predict", "evaluate", "convert", "measure", "report",
    "tune", "compare", "serve", "models",
]

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"morphoscope.cli.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"morphoscope.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    try:
        app()
    except MorphoscopeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
