"""QuPath GeoJSON: ``NAME.geojson``, one Feature per object, as QuPath (0.4 and later) writes and
reads it (File > Import objects from file, or drag the file onto the open image).

Each Feature has a UUID ``id`` (the same for the same input and label in every run), a Polygon or
MultiPolygon ``geometry`` in pixel coordinates (origin at the top-left corner of the image, along
the objects' pixel edges: :mod:`morphoscope.formats.outlines`; for a plane of a stack, QuPath's
``"plane": {"c": -1, "z": .., "t": ..}``), and ``properties``: ``objectType`` (``"detection"``,
or ``"annotation"`` for ``QuPathGeoJson(object_type="annotation")``), ``name`` (the label, the
object's value in ``NAME_labels.tif``), ``classification`` ``{"name", "color": [r, g, b]}`` (the
overlay's class colours) and ``measurements`` (``label``, ``score`` and, with ``--measure``, every
number of the object's row in ``measurements.csv``, under the same names; values that are not
finite are left out, as JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

from morphoscope.formats.export_common import class_colour, exported_objects
from morphoscope.formats.outlines import mask_outline

OBJECT_TYPES = ("detection", "annotation")
#: namespace of the Features' UUIDs (uuid5 of input name and label)
ID_NAMESPACE = uuid.UUID("6f1c2a4e-4f3b-5d8e-9a77-3d2b1c0e9f10")
#: table columns that say which object a row is, not what it measures
_IDENTITY = {"image", "group", "label", "class", "t", "z", "c"}


def feature_id(input_name: str, label: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{input_name}\n{label}"))


def geometry_json(geometry, *, plane: dict | None = None) -> dict:
    """GeoJSON geometry of a shapely Polygon/MultiPolygon (integer coordinates written as
    integers); ``plane`` ({"Z": z, "T": t}) adds QuPath's image plane."""
    from shapely.geometry import mapping

    def compact(coords):
        if isinstance(coords, (tuple, list)) and coords and isinstance(coords[0], (int, float)):
            return [int(v) if float(v).is_integer() else float(v) for v in coords]
        return [compact(c) for c in coords]

    g = mapping(geometry)
    out = {"type": g["type"], "coordinates": compact(g["coordinates"])}
    if plane:
        out["plane"] = {"c": -1, "z": int(plane.get("Z", 0)), "t": int(plane.get("T", 0))}
    return out


def measurement_values(row: dict | None) -> dict:
    """The numbers of a measurement-table row (booleans as 0/1; no NaN or infinity)."""
    out = {}
    for key, value in (row or {}).items():
        if key in _IDENTITY or isinstance(value, str) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


class QuPathGeoJson:
    """The ``geojson`` export: ``NAME.geojson`` per input (a FeatureCollection)."""

    name = "geojson"
    needs_measurements = False

    def __init__(self, *, object_type: str = "detection"):
        if object_type not in OBJECT_TYPES:
            raise ValueError(f"object_type must be one of {OBJECT_TYPES}, got {object_type!r}")
        self.object_type = object_type

    def files(self, out: Path, name: str) -> list[Path]:
        return [Path(out) / f"{name}.geojson"]

    def run_files(self, out: Path) -> list[Path]:
        return []

    def features(self, ctx) -> list[dict]:
        features = []
        for o in exported_objects(ctx):
            measurements = {"label": float(o.label), "score": o.score, **measurement_values(o.measurements)}
            features.append({
                "type": "Feature",
                "id": feature_id(ctx.item.name, o.label),
                "geometry": geometry_json(mask_outline(o.crop, o.origin), plane=o.plane),
                "properties": {
                    "objectType": self.object_type,
                    "name": str(o.label),
                    "classification": {"name": o.class_name, "color": list(class_colour(o.class_id))},
                    "measurements": measurements,
                },
            })
        return features

    def write_image(self, ctx) -> None:
        from morphoscope.io.atomic import atomic_write

        data = {"type": "FeatureCollection", "features": self.features(ctx)}
        with atomic_write(self.files(ctx.out, ctx.item.name)[0], mode="w") as fh:
            json.dump(data, fh, allow_nan=False, separators=(",", ":"))

    def finish(self, out: Path, records: list[dict], records_dir: Path) -> None:
        return None
