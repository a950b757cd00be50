"""CellProfiler-compatible tables: ``cellprofiler/Image.csv`` and ``cellprofiler/<Objects>.csv``,
laid out as CellProfiler's ExportToSpreadsheet writes them (comma-separated, no file-name prefix),
for CellProfiler Analyst, CytoTable, pycytominer and scripts written for CellProfiler output.

The object table has one row per object: ``ImageNumber``, ``ObjectNumber`` and then, sorted by
name as ExportToSpreadsheet sorts them, the ``AreaShape_*`` features of CellProfiler's
MeasureObjectSizeShape and the ``Location_Center_X/Y`` of its Identify modules that morphoscope
measures *with the same definition* (:data:`AREA_SHAPE`; docs/interop.md lists each mapping and
what is not mapped). Values are in pixels, as in CellProfiler, whatever the pixel size. The image
table has one row per image (a plane of a stack is an image): ``ImageNumber``, ``Count_<Objects>``,
``FileName_Image``, ``Height_Image``, ``Width_Image`` (and ``Metadata_Z`` / ``Metadata_T`` for
stacks), columns sorted by name as CellProfiler sorts them.

``<Objects>`` is the model's class for a one-class model (``nucleus.csv``, ``Count_nucleus``) and
``Objects`` otherwise, with ClassifyObjects-style columns ``Classify_<class>`` (0/1) per object and
``Classify_<class>_NumObjectsPerBin`` per image. ``ObjectNumber`` numbers the objects of each
image 1..N in label order: for a 2D image it is the object's value in ``NAME_labels.tif``. The
features are those of ``measurements.csv`` (the object's pixels in ``NAME_labels.tif``); an object
of a multi-class model that is wholly hidden there under an object of another class has none
(``nan``, as CellProfiler writes a missing value).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from morphoscope.errors import ConfigError, InputError
from morphoscope.formats.export_common import RECORDS, exported_objects, record_path

FOLDER = "cellprofiler"
IMAGE_TABLE = "Image.csv"
IMAGE_NAME = "Image"  # CellProfiler's name for the input image (FileName_Image, ...)

#: AreaShape feature -> (morphoscope measurement, its kind: "area", "length" or "ratio"); the
#: definitions agree with MeasureObjectSizeShape's (scikit-image regionprops of the object)
AREA_SHAPE = {
    "Area": ("area", "area"),
    "Perimeter": ("perimeter", "length"),
    "ConvexArea": ("area_convex", "area"),
    "MajorAxisLength": ("axis_major_length", "length"),
    "MinorAxisLength": ("axis_minor_length", "length"),
    "EquivalentDiameter": ("equivalent_diameter", "length"),
    "Eccentricity": ("eccentricity", "ratio"),
    "Solidity": ("solidity", "ratio"),
    "Extent": ("extent", "ratio"),
    "Orientation": ("orientation", "angle"),
}
#: features computed from morphoscope's pixel measurements with CellProfiler's own formulas
DERIVED = ("FormFactor", "Compactness", "BoundingBoxArea", "BoundingBoxMinimum_X", "BoundingBoxMaximum_X",
           "BoundingBoxMinimum_Y", "BoundingBoxMaximum_Y", "Center_X", "Center_Y")


def object_set_name(class_names) -> str:
    """CellProfiler's name for the objects: the class of a one-class model, else ``Objects``
    (letters, digits and ``_`` only, starting with a letter, as CellProfiler requires)."""
    if len(class_names) != 1:
        return "Objects"
    name = "".join(ch if ch.isalnum() else "_" for ch in str(class_names[0])) or "Objects"
    return name if name[0].isalpha() else f"Objects_{name}"


def _column(row: dict, base: str, kind: str, pixel_size: float | None) -> float | None:
    """Measurement ``base`` of a table row in pixel units (the table may be in µm)."""
    suffixes = {"area": ("_px2", "_um2"), "length": ("_px", "_um"), "angle": ("_deg", "_deg"),
                "ratio": ("", "")}[kind]
    for suffix, physical in zip(suffixes, (False, True)):
        key = base + suffix
        if key in row and row[key] is not None:
            value = float(row[key])
            if physical and kind in ("area", "length"):
                size = row.get("pixel_size_um", pixel_size)
                if size is None or not size > 0:
                    raise InputError(f"measurement {key} is in µm but the pixel size is unknown")
                value /= float(size) ** (2 if kind == "area" else 1)
            return value
    return None


def area_shape(row: dict, *, pixel_size: float | None = None) -> dict[str, float]:
    """The CellProfiler features of one measurement-table row (pixels), by CellProfiler name
    without the ``AreaShape_`` prefix; ``Location_Center_X/Y`` included."""
    out = {}
    for feature, (base, kind) in AREA_SHAPE.items():
        value = _column(row, base, kind, pixel_size)
        if value is not None:
            out[feature] = value
    area, perimeter = out.get("Area"), out.get("Perimeter")
    if area is not None and perimeter is not None:
        # MeasureObjectSizeShape: FormFactor = 4*pi*Area/Perimeter**2 (not clipped at 1, unlike
        # morphoscope's circularity); Compactness = Perimeter**2 / max(4*pi*Area, 1)
        out["FormFactor"] = 4 * math.pi * area / perimeter**2 if perimeter > 0 else math.nan
        out["Compactness"] = perimeter**2 / max(4 * math.pi * area, 1.0)
    r0, c0, r1, c1 = (row.get(k) for k in ("bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max"))
    if None not in (r0, c0, r1, c1):
        # regionprops' bbox: max exclusive, as CellProfiler writes it
        out.update(BoundingBoxMinimum_X=float(c0), BoundingBoxMaximum_X=float(c1),
                   BoundingBoxMinimum_Y=float(r0), BoundingBoxMaximum_Y=float(r1),
                   BoundingBoxArea=float((r1 - r0) * (c1 - c0)))
    if row.get("centroid_row") is not None:
        out.update(Center_X=float(row["centroid_col"]), Center_Y=float(row["centroid_row"]))
        out.update(Location_Center_X=float(row["centroid_col"]), Location_Center_Y=float(row["centroid_row"]))
    return out


class CellProfilerTables:
    """The ``cellprofiler`` export: ``cellprofiler/Image.csv`` and ``cellprofiler/<Objects>.csv``
    for the whole run (needs the measurements: ``--measure``, which ``--export cellprofiler``
    turns on)."""

    name = "cellprofiler"
    needs_measurements = True

    def files(self, out: Path, name: str) -> list[Path]:
        return []

    def run_files(self, out: Path) -> list[Path]:
        return [Path(out) / FOLDER]

    def write_image(self, ctx) -> None:
        """Keep this input's rows (one image per plane) in the run's records; :meth:`finish`
        numbers the images and writes the tables."""
        from morphoscope.io.atomic import atomic_write

        if ctx.table is None:
            raise ConfigError("the cellprofiler export needs the measurements: predict with measure=True "
                              "(--measure)")
        item = ctx.item
        multi = len(ctx.class_names) > 1
        images = {}
        for p in ctx.planes:
            entry = {"plane": {a: int(i) for a, i in p.index.items()}, "FileName": item.file_name or item.name,
                     "Height": int(p.objects.shape[0]), "Width": int(p.objects.shape[1]), "count": len(p.objects),
                     "classes": {}, "objects": []}
            images[tuple(sorted(entry["plane"].items()))] = entry
        for o in exported_objects(ctx):
            # an object hidden in NAME_labels.tif under one of another class has no row: NaN
            measured = area_shape(o.measurements, pixel_size=ctx.pixel_size) if o.measurements else {}
            features = {("AreaShape_" + k if not k.startswith("Location") else k): v for k, v in measured.items()}
            if multi:
                for c in ctx.class_names:
                    features[f"Classify_{c}"] = int(o.class_name == c)
            entry = images[tuple(sorted(o.plane.items()))]
            entry["classes"][o.class_name] = entry["classes"].get(o.class_name, 0) + 1
            entry["objects"].append({"ObjectNumber": o.number, **features})
        record = record_path(Path(ctx.out) / RECORDS, self.name, item.name, ".json")
        with atomic_write(record, mode="w") as fh:
            json.dump({"name": item.name, "class_names": list(ctx.class_names), "images": list(images.values())},
                      fh, allow_nan=True)

    def finish(self, out: Path, records: list[dict], records_dir: Path) -> None:
        import pandas as pd

        from morphoscope.io.atomic import atomic_write

        image_rows, object_rows = [], []
        class_names = None
        for rec in records:
            path = record_path(records_dir, self.name, rec["name"], ".json")
            if not path.is_file():
                raise InputError(f"no CellProfiler record for {rec['name']} (predicted without this export); "
                                 "predict again with --overwrite")
            data = json.loads(path.read_text())
            class_names = data["class_names"]
            objects = object_set_name(class_names)
            for entry in data["images"]:
                number = len(image_rows) + 1
                row = {"ImageNumber": number, f"Count_{objects}": entry["count"],
                       f"FileName_{IMAGE_NAME}": entry["FileName"], f"Height_{IMAGE_NAME}": entry["Height"],
                       f"Width_{IMAGE_NAME}": entry["Width"]}
                for axis, i in entry["plane"].items():
                    row[f"Metadata_{axis}"] = i
                if len(class_names) > 1:
                    for c in class_names:
                        row[f"Classify_{c}_NumObjectsPerBin"] = entry["classes"].get(c, 0)
                image_rows.append(row)
                object_rows += [{"ImageNumber": number, **o} for o in entry["objects"]]
        if class_names is None:
            return
        objects = object_set_name(class_names)
        images = pd.DataFrame(image_rows)
        images = images[sorted(images.columns)]  # ExportToSpreadsheet sorts the image features
        table = pd.DataFrame(object_rows, columns=None if object_rows else ["ImageNumber", "ObjectNumber"])
        if len(table):
            features = sorted(c for c in table.columns if c not in ("ImageNumber", "ObjectNumber"))
            table = table[["ImageNumber", "ObjectNumber", *features]]
        folder = Path(out) / FOLDER
        with atomic_write(folder / IMAGE_TABLE, mode="w") as fh:
            images.to_csv(fh, index=False, lineterminator="\n")
        with atomic_write(folder / f"{objects}.csv", mode="w") as fh:
            table.to_csv(fh, index=False, lineterminator="\n", na_rep="nan")
