"""Comparing trained models side by side on the same annotated images (``morphoscope compare``).

:func:`compare` evaluates every model with the same metrics, writes one table (Markdown, CSV,
JSON) and plots, and flags the differences that are larger than image-to-image variation
(:func:`~morphoscope.compare.bootstrap.paired_bootstrap`). See docs/compare.md.
"""

from __future__ import annotations


def compare(*args, **kwargs):
    from morphoscope.compare.core import compare as _compare

    return _compare(*args, **kwargs)


compare.__doc__ = "See :func:`morphoscope.compare.core.compare`."


def __getattr__(name):
    if name in ("paired_bootstrap", "bootstrap_difference", "Statistic", "resample_weights"):
        from morphoscope.compare import bootstrap

        return getattr(bootstrap, name)
    if name in ("format_markdown", "write_outputs"):
        from morphoscope.compare import core

        return getattr(core, name)
    raise AttributeError(name)
