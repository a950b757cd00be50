"""Exports for the tools labs already use, written beside the standard outputs of a prediction
folder (``morphoscope predict --export NAME,...``). Each exporter is an object with:

``files(out, name) -> list[Path]``      the files it writes for input ``name`` (checked before
                                         the run so nothing is overwritten by surprise)
``run_files(out) -> list[Path]``        the run-wide files it writes at the end
``write_image(ctx: ExportItem)``        write one input's files
                                         (:class:`morphoscope.engine.writer.ExportItem`)
``finish(out, records, records_dir)``   write the run-wide files from the per-input records
"""

from __future__ import annotations

EXPORTERS: dict = {}
