"""Exports for the tools labs already use, written beside the standard outputs of a prediction
folder (``morphoscope predict --export NAME,...``; docs/interop.md). Each exporter is an object with:

``name``                                 its name in :data:`EXPORTERS`
``needs_measurements``                   True when it writes measurements (callers turn them on)
``files(out, name) -> list[Path]``      the files it writes for input ``name`` (checked before
                                         the run so nothing is overwritten by surprise)
``run_files(out) -> list[Path]``        the run-wide files (or folder) it writes at the end
``write_image(ctx: ExportItem)``        write one input's files
                                         (:class:`morphoscope.engine.writer.ExportItem`)
``finish(out, records, records_dir)``   write the run-wide files from the per-input records
                                         (only each record's ``name`` is read)

=============  ===============================================  ============================
name           writes                                           for
=============  ===============================================  ============================
roi            ``NAME_rois.zip``                                ImageJ / Fiji ROI Manager
geojson        ``NAME.geojson``                                 QuPath (Import objects)
ome-zarr       ``NAME_labels.ome.zarr``                         napari, OME-Zarr / NGFF tools
cellprofiler   ``cellprofiler/Image.csv``, ``<Objects>.csv``    CellProfiler Analyst, CytoTable
=============  ===============================================  ============================
"""

from __future__ import annotations

from pathlib import Path

from morphoscope.errors import ConfigError
from morphoscope.formats.cellprofiler import CellProfilerTables
from morphoscope.formats.geojson import QuPathGeoJson
from morphoscope.formats.omezarr import OmeZarrLabels
from morphoscope.formats.roi import ImageJRois

EXPORTERS: dict = {e.name: e for e in (ImageJRois(), QuPathGeoJson(), OmeZarrLabels(), CellProfilerTables())}

ALL = "all"


def export_names(spec) -> list[str]:
    """The export names of ``spec``: a comma-separated string or a list of names, where ``all``
    means every export; unknown names raise :class:`ConfigError` listing the known ones."""
    if spec is None:
        return []
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in str(s).split(",")]
    names = [p.strip().lower() for p in parts if p.strip()]
    if ALL in names:
        return list(EXPORTERS)
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError(f"unknown export '{unknown[0]}' (known: {', '.join(EXPORTERS)}, or {ALL})")
    return list(dict.fromkeys(names))


def needs_measurements(names) -> bool:
    """Whether any of the exports ``names`` writes measurements (so predict must measure)."""
    return any(EXPORTERS[n].needs_measurements for n in export_names(names))


def write_exports(names, items, out: str | Path) -> list[Path]:
    """Run the exports ``names`` on ``items`` (ExportItems, e.g. built by a caller that holds its
    results in memory) into ``out`` and write the run-wide files; returns the paths written.
    Per-input records go to ``out/.morphoscope``."""
    from morphoscope.formats.export_common import RECORDS

    out = Path(out)
    exporters = [EXPORTERS[n] for n in export_names(names)]
    for item in items:
        for e in exporters:
            e.write_image(item)
    records = [{"name": item.item.name} for item in items]
    for e in exporters:
        e.finish(out, records, out / RECORDS)
    return ([p for item in items for e in exporters for p in e.files(out, item.item.name)]
            + [p for e in exporters for p in e.run_files(out)])
