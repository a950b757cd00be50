"""What the exporters of :mod:`morphoscope.formats.exports` share: the objects of one input as
they see them, their measurement rows, class colours and the folder for per-input records.

An exporter gets an ``ExportItem`` (:class:`morphoscope.engine.writer.ExportItem`, duck-typed
here: this layer does not import the engine) with ``out``, ``item`` (the input's name, file name,
plane axes, axes and physical sizes), ``class_names``, ``planes`` (each with its ``index``,
``labels``, ``objects`` and ``offset``), ``pixel_size`` and ``table`` (the measurements, or None).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

#: per-input records of a prediction folder (``morphoscope.engine.writer.RECORDS``); exporters
#: keep theirs in a sub-folder named after the export
RECORDS = ".morphoscope"

#: class colours (Okabe-Ito, colour-blind safe), the overlay's (``engine.writer.PALETTE``):
#: class k has ``CLASS_COLOURS[(k - 1) % 8]``
CLASS_COLOURS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                 (213, 94, 0), (204, 121, 167), (255, 255, 255))


def class_colour(class_id: int) -> tuple[int, int, int]:
    """RGB colour of class ``class_id`` (1..K)."""
    return CLASS_COLOURS[(int(class_id) - 1) % len(CLASS_COLOURS)]


@dataclass
class ExportedObject:
    """One object of one plane: its pixels (``crop`` at ``origin``, row and column), ``number``
    within its plane (1..N: the ``label`` of the measurement table and CellProfiler's
    ObjectNumber) and ``label``, its value in ``NAME_labels.tif``.

    The pixels are those of the object's class's label image: its mask less the pixels of
    higher-scoring objects *of the same class*. Objects of different classes keep their overlaps
    (an organelle inside a cell), as in the napari reader's per-class layers; for a one-class
    model (and wherever classes do not overlap) they are exactly the object's pixels in
    ``NAME_labels.tif``, the pixels ``measurements.csv`` measures."""

    plane: dict
    number: int
    label: int
    class_id: int
    class_name: str
    score: float
    crop: np.ndarray
    origin: tuple[int, int]
    measurements: dict | None = None


def plane_key(index: dict) -> tuple:
    """A plane index ``{"Z": 3, "T": 0}`` as a hashable key (axes in a fixed order)."""
    return tuple(sorted((str(a).upper(), int(i)) for a, i in index.items()))


def measurement_rows(table) -> dict[tuple, dict]:
    """Rows of a measurement table keyed by ``(plane_key, label)``; the plane columns are the
    lower-case axis letters the writer inserts for stacks (``t``, ``z``)."""
    if table is None or len(table) == 0:
        return {}
    axes = [c for c in table.columns if c in ("t", "z", "c")]
    rows = {}
    for row in table.to_dict("records"):
        key = plane_key({a: row[a] for a in axes})
        rows[(key, int(row["label"]))] = row
    return rows


def exported_objects(ctx) -> Iterator[ExportedObject]:
    """Every object of the input ``ctx`` (an ExportItem), plane by plane in label order (the
    highest score first)."""
    rows = measurement_rows(ctx.table)
    for plane in ctx.planes:
        objs = plane.objects
        key = plane_key(plane.index)
        taken: dict[int, _Taken] = {}  # per class: the pixels of its higher-scoring objects
        for i in range(len(objs)):
            k = int(objs.classes[i])
            name = ctx.class_names[k - 1] if 1 <= k <= len(ctx.class_names) else str(k)
            crop = np.asarray(objs.crops[i], bool)
            y, x = (int(v) for v in objs.origins[i])
            own = taken.setdefault(k, _Taken()).take(crop, y, x)
            yield ExportedObject(plane=dict(plane.index), number=i + 1, label=int(plane.offset) + i + 1,
                                 class_id=k, class_name=name, score=float(objs.scores[i]), crop=own,
                                 origin=(y, x), measurements=rows.get((key, i + 1)))


class _Taken:
    """The pixels of the objects seen so far, without a whole-plane mask (a plane may be a whole
    slide): a grid of cells lists the objects whose box touches each cell, so that an object is
    compared with its neighbours only."""

    CELL = 256

    def __init__(self):
        self.cells: dict[tuple[int, int], list[int]] = {}
        self.objects: list[tuple[np.ndarray, int, int]] = []

    def take(self, crop: np.ndarray, y: int, x: int) -> np.ndarray:
        """``crop`` (at row ``y``, column ``x``) less the pixels taken before; then taken."""
        h, w = crop.shape
        c = self.CELL
        cells = [(cy, cx) for cy in range(y // c, (y + h - 1) // c + 1) for cx in range(x // c, (x + w - 1) // c + 1)]
        own = crop.copy()
        for j in sorted({j for cell in cells for j in self.cells.get(cell, ())}):
            other, oy, ox = self.objects[j]
            y0, y1 = max(y, oy), min(y + h, oy + other.shape[0])
            x0, x1 = max(x, ox), min(x + w, ox + other.shape[1])
            if y0 < y1 and x0 < x1:
                own[y0 - y:y1 - y, x0 - x:x1 - x] &= ~other[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        for cell in cells:
            self.cells.setdefault(cell, []).append(len(self.objects))
        self.objects.append((crop, y, x))
        return own


def record_path(records_dir: Path, export: str, name: str, suffix: str) -> Path:
    """The record of input ``name`` kept by export ``export`` (names may hold '/')."""
    return Path(records_dir) / export / f"{quote(name, safe='')}{suffix}"


def total_objects(ctx) -> int:
    return int(sum(len(p.objects) for p in ctx.planes))
