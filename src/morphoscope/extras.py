"""Optional parts of morphoscope and the packages they need (``pip install 'morphoscope[NAME]'``).

The core install runs ``predict``, ``measure``, ``evaluate``, ``train``, ``report`` and ``demo``
on a CPU. A command that needs an extra checks for it first and stops with one line saying which
extra to install, instead of an ImportError from deep inside.
"""

from __future__ import annotations

import importlib.util
import sys

from morphoscope.errors import MorphoscopeError

#: extra -> import names it provides (the packages themselves are listed in pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "web": ("fastapi", "uvicorn", "multipart", "fastapi_offline"),
    "tune": ("optuna",),
    "parquet": ("pyarrow",),
    "export": ("onnx", "onnxruntime", "bioimageio.spec", "bioimageio.core"),
    "napari": ("napari", "magicgui"),
}


class MissingExtra(MorphoscopeError):
    """An optional part of morphoscope is not installed."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    return [m for m in (EXTRAS[extra] if modules is None else modules) if not installed(m)]


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Stop with ``WHAT needs the EXTRA extra: pip install 'morphoscope[EXTRA]'`` when a module
    of ``extra`` (or just ``modules`` of it) is missing."""
    if missing(extra, modules):
        raise MissingExtra(f"{what} needs the {extra} extra: pip install 'morphoscope[{extra}]'")
