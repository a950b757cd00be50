"""The one writer of a prediction folder (docs/outputs.md), for every task and every input shape.

Each input file's outputs are written as soon as its planes are predicted, every file through an
atomic rename, together with a small record in ``OUT/.morphoscope/``. The run-wide files
(``predictions.json``, ``measurements.csv``, ``classifications.csv``) are assembled from those
records at the end, so a run killed half-way keeps its finished images and ``--resume`` goes on
from there. Results are written by what they hold (objects or class scores), never by task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.engine.objects import Objects, crop_rle
from morphoscope.engine.result import ImageResult
from morphoscope.errors import InputError, OutputExistsError
from morphoscope.io.atomic import atomic_write, check_writable, prepare_output_dir

RECORDS = ".morphoscope"
PREDICTIONS_JSON = "predictions.json"
MEASUREMENTS_CSV = "measurements.csv"
CLASSIFICATIONS_CSV = "classifications.csv"
CLASSIFICATION_INFO = "classification_info.json"
#: planes above this many pixels are written block by block (a tiled BigTIFF and OME-Zarr labels,
#: class masks as tiled TIFFs), and their overlay is drawn on a downsampled copy
LARGE_PIXELS = 8192 * 8192
OVERLAY_MAX_SIDE = 4096

# Class colours (Okabe-Ito, colour-blind safe); class k uses PALETTE[(k-1) % len]
PALETTE = np.array([(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                    (213, 94, 0), (204, 121, 167), (255, 255, 255)], np.uint8)


def safe_class_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def overlay(image: np.ndarray, labels: np.ndarray, label_classes: np.ndarray) -> np.ndarray:
    """RGB image with each object's outline (inner boundary) in its class colour;
    ``label_classes[k]`` is the class of label ``k`` (index 0 unused)."""
    from skimage.segmentation import find_boundaries

    from morphoscope.io.images import to_display_rgb

    rgb = to_display_rgb(image)
    edges = find_boundaries(labels, mode="inner")
    cls = label_classes[labels[edges]]
    rgb[edges] = PALETTE[(cls - 1) % len(PALETTE)]
    return rgb


def overlay_by_class(image: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """RGB image with each object's outline in its class colour, drawn from per-class label
    planes ``(K, H, W)`` (:func:`labels_by_class`), so an object inside an object of another class
    (an organelle in its cell) is outlined too; classes of larger objects are drawn first."""
    from skimage.segmentation import find_boundaries

    from morphoscope.io.images import to_display_rgb

    rgb = to_display_rgb(image)

    def mean_area(plane):
        n = len(np.unique(plane)) - 1
        return -np.count_nonzero(plane) / n if n > 0 else 0.0

    for k in sorted(range(len(planes)), key=lambda k: mean_area(planes[k])):
        edges = find_boundaries(planes[k], mode="inner")
        rgb[edges] = PALETTE[k % len(PALETTE)]
    return rgb


def class_masks(labels: np.ndarray, classes: np.ndarray, objects: Objects, n_classes: int) -> np.ndarray:
    """``(K, ...)`` uint8 0/255 binary masks, one per class: every pixel of every object of that
    class. With several classes they come from the per-class planes, so a class's mask holds its
    objects whole even where an object of another class lies on top in the label image (a cell's
    mask includes its organelles; an organelle's mask is not emptied by its cell)."""
    if n_classes > 1:
        return (labels_by_class(objects, n_classes, dtype=np.uint32) > 0).astype(np.uint8) * 255
    return ((classes[labels] == 1) & (labels > 0)).astype(np.uint8)[None] * 255


@dataclass
class InputFile:
    """One input image or stack and how its planes are laid out (axes without C, sizes)."""

    name: str
    path: Path | None
    plane_axes: str = ""  # e.g. "TZ"; "" for a 2D image
    plane_shape: tuple[int, ...] = ()
    axes: str = "YX"  # label axes as stored in the input (no C)
    pixel_size: float | None = None
    z_spacing: float | None = None
    time_interval: float | None = None
    ome: bool = False
    file_name: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class ExportPlane:
    """One plane as the exporters see it: ``labels`` (label ``k`` is ``objects`` entry ``k - 1``,
    numbered from ``offset + 1`` in the written label image; None for a plane too large to hold
    whole, whose label images the writer paints block by block), each object's whole mask in
    ``objects`` (they may overlap), and the plane index ({} for a 2D image)."""

    index: dict
    labels: np.ndarray | None
    objects: Objects
    offset: int


@dataclass
class ExportItem:
    """What an exporter gets for one input: where to write, the input's layout and its planes;
    ``table`` holds the measurements when they were asked for."""

    out: Path
    item: InputFile
    class_names: list[str]
    planes: list[ExportPlane]
    pixel_size: float | None = None
    table: object = None


def exporter(name: str):
    """The exporter called ``name`` (see :mod:`morphoscope.formats.exports`)."""
    from morphoscope.formats.exports import EXPORTERS

    if name not in EXPORTERS:
        raise InputError(f"unknown export '{name}' (known: {', '.join(sorted(EXPORTERS)) or 'none'})")
    return EXPORTERS[name]


def label_arrays(objects: Objects, *, min_area: int = 1, by_class: bool = False):
    """The objects a label image shows, numbered 1..n by score: ``(labels, classes, scores,
    index)`` where label ``k`` is ``objects[index[k - 1]]`` (classes and scores indexed by label,
    0 = background). Where objects overlap the higher score keeps the pixel, and an object left
    with fewer than ``min_area`` pixels is dropped; ``by_class`` applies that rule within each
    class only, so an object of one class inside an object of another (an organelle in a cell)
    is kept even where the flat label image shows the other."""
    if not by_class:
        labels, index = objects.to_labels(min_area=min_area)
    else:
        keep = []
        for k in np.unique(objects.classes):
            members = np.flatnonzero(objects.classes == k)
            _, idx = objects.select(members).to_labels(min_area=min_area)
            keep.append(members[idx])
        index = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
        kept = objects.select(index)
        dtype = np.uint16 if len(index) < 65535 else np.uint32
        labels = kept.paint(tuple(slice(0, n) for n in objects.shape), np.arange(1, len(index) + 1), dtype=dtype)
    classes = np.concatenate([[0], objects.classes[index]]).astype(np.int64)
    scores = np.concatenate([[0.0], objects.scores[index]]).astype(np.float32)
    return labels, classes, scores, index


def labels_by_class(objects: Objects, n_classes: int, *, dtype=np.uint32) -> np.ndarray:
    """``(K, ...)``: plane ``k - 1`` holds the objects of class ``k`` numbered 1..n by score
    across all classes (the numbers of :func:`label_arrays` on the same objects)."""
    window = tuple(slice(0, n) for n in objects.shape)
    numbers = np.arange(1, len(objects) + 1)
    return np.stack([objects.paint(window, np.where(objects.classes == k, numbers, 0), dtype=dtype)
                     for k in range(1, n_classes + 1)])


def measure_objects(labels, objects: Objects, image, classes, scores, *, class_names, pixel_size=None,
                    image_name: str = "image", plane_index: dict | None = None):
    """The measurement table of one plane's objects as written (label ``k`` = ``objects[k-1]``;
    ``classes``/``scores`` indexed by label): :func:`morphoscope.morphology.measure_labels` on
    the label image, or, with several classes, on each class's own label plane, so that an
    object inside an object of another class (an organelle in a cell) is measured whole."""
    from morphoscope.morphology import concat_tables, measure_labels

    def table_of(lab):
        present = np.unique(lab)
        present = present[present > 0]
        return measure_labels(lab, image=image, pixel_size=pixel_size, image_name=image_name,
                              scores={int(k): float(scores[k]) for k in present},
                              classes={int(k): int(classes[k]) for k in present}, class_names=list(class_names))

    if len(class_names) > 1 and len(objects):
        planes = labels_by_class(objects, len(class_names))
        table = concat_tables([table_of(planes[k]) for k in range(len(class_names))])
        if len(table):
            table = table.sort_values("label", kind="stable").reset_index(drop=True)
    else:
        table = table_of(labels)
    for a, i in reversed(list((plane_index or {}).items())):
        table.insert(1, a.lower(), int(i))
    return table


class OutputFolder:
    """A prediction folder being written. ``info`` (model, settings, versions) goes into
    ``predictions.json``. Objects are written at each result's own threshold."""

    def __init__(self, out: str | Path, *, class_names, info: dict, overwrite: bool = False,
                 resume: bool = False, measure: bool = False, pixel_size: float | None = None,
                 min_area: int = 1, exports=()):
        self.out = Path(out)
        self.class_names = list(class_names)
        self.info = info
        self.overwrite = overwrite
        self.resume = resume
        self.measure = measure
        self.pixel_size = pixel_size
        self.min_area = min_area
        self.exports = [exporter(e) for e in exports]
        # exports that carry measurements (CellProfiler tables) need them taken
        self.measure = measure or any(getattr(e, "needs_measurements", False) for e in self.exports)
        self.records = self.out / RECORDS

    # ---- before the run ---------------------------------------------------------------------
    def outputs_of(self, item: InputFile, kind: str) -> list[Path]:
        if kind == "classes":
            return []
        ext = ".png" if not item.plane_axes else ".tif"
        by_class = [self.out / f"{item.name}_labels_by_class.tif"] if len(self.class_names) > 1 else []
        return ([self.out / f"{item.name}_labels.tif", self.out / f"{item.name}_overlay.png"] + by_class
                + [self.out / f"{item.name}_{safe_class_name(c)}{ext}" for c in self.class_names]
                + [p for e in self.exports for p in e.files(self.out, item.name)])

    def run_files(self, kind: str) -> list[Path]:
        if kind == "classes":
            return [self.out / CLASSIFICATIONS_CSV, self.out / CLASSIFICATION_INFO]
        return ([self.out / PREDICTIONS_JSON] + ([self.out / MEASUREMENTS_CSV] if self.measure else [])
                + [p for e in self.exports for p in e.run_files(self.out)])

    def prepare(self, items: list[InputFile], kind: str) -> list[InputFile]:
        """Check names and existing outputs before any work; returns the inputs still to do
        (all of them, or on ``resume`` those without a finished record)."""
        if self.out.exists() and not self.out.is_dir():
            raise OutputExistsError("output path exists and is not a folder", path=self.out)
        names = [it.name for it in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"several input images share the name(s) {', '.join(dupes[:5])}; "
                             "outputs would collide")
        if self.resume:
            todo = [it for it in items if not self.done(it.name)]
        else:
            todo = items
            targets = self.run_files(kind) + [p for it in items for p in self.outputs_of(it, kind)]
            check_writable(targets, overwrite=self.overwrite)
        prepare_output_dir(self.out)
        self.records.mkdir(exist_ok=True)
        for part in list(self.out.glob(".*.part")) + list(self.records.glob(".*.part")):
            if part.is_dir():  # an OME-Zarr store being built when a run was killed
                import shutil

                shutil.rmtree(part, ignore_errors=True)
            else:
                part.unlink(missing_ok=True)  # left by a killed run: never a finished file
        if not self.resume:
            for rec in self.records.glob("*.json"):
                rec.unlink()
            for rec in self.records.glob("*.csv"):
                rec.unlink()
        return todo

    def record(self, name: str, suffix: str) -> Path:
        """The record file of input ``name`` (names may hold '/', e.g. class-folder images)."""
        from urllib.parse import quote

        return self.records / f"{quote(name, safe='')}{suffix}"

    def done(self, name: str) -> bool:
        return self.record(name, ".json").is_file()

    # ---- one input --------------------------------------------------------------------------
    def write(self, item: InputFile, results: list[ImageResult], readers: list) -> dict:
        """Write one input's files from the results of its planes (in ``item``'s plane order).
        ``readers`` give each plane's pixels (arrays, or objects with ``read(region=None)``)."""
        kind = results[0].kind
        readers = [_Reader(r) for r in readers]
        if kind == "classes":
            record = self._classification_record(item, results[0])
            table = None
        elif len(results[0].shape) == 3:  # 3D objects, one result per time point
            record, table = self._objects_3d(item, results, [r.read() for r in readers])
        elif not item.plane_axes and _write_in_blocks(results[0].shape):
            record, table = self._objects_large(item, results[0], readers[0])
        else:
            record, table = self._objects(item, results, [r.read() for r in readers])
        record["warnings"] = sorted({w for r in results for w in r.warnings})
        if table is not None:
            from morphoscope.morphology import write_table

            write_table(table, self.record(item.name, ".csv"), overwrite=True)
        with atomic_write(self.record(item.name, ".json"), mode="w") as fh:
            json.dump(record, fh)
        return record

    def _objects(self, item: InputFile, results, planes):
        from morphoscope.io.stacks import write_stack

        per_plane = []
        offset = 0
        for res in results:
            objs = res.objects_at()  # at the result's own threshold (score or probability)
            # a detector's boxes all stay (one may lie under another); masks need visible pixels
            min_area = 0 if res.settings.get("objects") == "boxes" else self.min_area
            labels, classes, scores, index = label_arrays(objs, min_area=min_area,
                                                          by_class=len(self.class_names) > 1)
            per_plane.append((res, objs.select(index), labels, classes, scores, offset))
            offset += len(index)
        total = offset
        dtype = np.uint16 if total < 65535 else np.uint32
        stacked = not item.plane_axes == ""
        sizes = dict(pixel_size=self._pixel_size(item, results[0]), z_spacing=item.z_spacing,
                     time_interval=item.time_interval)
        if stacked:
            can = np.zeros(item.plane_shape + tuple(results[0].shape), dtype)
            class_can = {k: np.zeros(can.shape, np.uint8) for k in range(1, len(self.class_names) + 1)}
            for (res, objs_p, labels, classes, _, off), pidx in zip(per_plane, np.ndindex(*item.plane_shape)):
                lab = np.where(labels > 0, labels.astype(np.int64) + off, 0).astype(dtype)
                can[pidx] = lab
                masks = class_masks(labels, classes, objs_p, len(self.class_names))
                for k in class_can:
                    class_can[k][pidx] = masks[k - 1]
            order = item.plane_axes + "YX"
            axes = item.axes
            write_stack(self.out / f"{item.name}_labels.tif", _to_axes(can, order, axes), axes,
                        ome=item.ome or None, overwrite=True, **sizes)
            for k, c in enumerate(self.class_names, start=1):
                write_stack(self.out / f"{item.name}_{safe_class_name(c)}.tif", _to_axes(class_can[k], order, axes),
                            axes, ome=item.ome or None, overwrite=True, **sizes)
            mid = len(per_plane) // 2
            _, over_objs, labels, classes, _, _ = per_plane[mid]
            over_plane = planes[mid]
        else:
            _, over_objs, labels, classes, _, _ = per_plane[0]
            write_stack(self.out / f"{item.name}_labels.tif", labels.astype(dtype), "YX", overwrite=True,
                        compression="zlib", **sizes)
            masks = class_masks(labels, classes, over_objs, len(self.class_names))
            for k, c in enumerate(self.class_names, start=1):
                from morphoscope.io.images import write_png

                write_png(self.out / f"{item.name}_{safe_class_name(c)}.png", masks[k - 1], overwrite=True)
            over_plane = planes[0]
        if over_plane is not None:
            from morphoscope.io.images import write_png

            drawn = (overlay_by_class(over_plane, labels_by_class(over_objs, len(self.class_names)))
                     if len(self.class_names) > 1 else overlay(over_plane, labels, classes))
            write_png(self.out / f"{item.name}_overlay.png", drawn, overwrite=True)
        if len(self.class_names) > 1:  # overlapping classes: one label plane per class
            k = len(self.class_names)
            planes_k = [np.where(lk > 0, lk.astype(np.int64) + off, 0) for (_, objs, _, _, _, off) in per_plane
                        for lk in [labels_by_class(objs, k)]]
            stack = np.stack(planes_k).astype(dtype).reshape(item.plane_shape + (k,) + tuple(results[0].shape))
            write_stack(self.out / f"{item.name}_labels_by_class.tif", stack, item.plane_axes + "CYX",
                        ome=item.ome or None, overwrite=True, **sizes)
        if all(r.maps is not None for r in results):
            self._write_maps(item, results, sizes)
        # COCO entries, one image entry per plane
        images, tables = [], []
        for (res, objs, labels, classes, scores, off), plane, pidx in zip(
                per_plane, planes, np.ndindex(*item.plane_shape) if stacked else [()]):
            h, w = res.shape
            entry = {"file_name": item.file_name, "height": int(h), "width": int(w), **_scale_entry(res)}
            if stacked:
                entry["plane"] = {a: int(i) for a, i in zip(item.plane_axes, pidx)}
            image_anns = []
            for i in range(len(objs)):
                rle = objs.rle(i)
                image_anns.append(coco_annotation(rle, int(objs.classes[i]), float(objs.scores[i]), off + i + 1))
            images.append({"entry": entry, "annotations": image_anns})
            if self.measure:
                tables.append(measure_objects(labels, objs, plane, classes, scores, class_names=self.class_names,
                                              pixel_size=self._pixel_size(item, res), image_name=item.name,
                                              plane_index=entry.get("plane")))
        table = None
        if self.measure:
            from morphoscope.morphology import concat_tables

            table = concat_tables(tables)
        if self.exports:
            ctx = ExportItem(self.out, item, self.class_names,
                             [ExportPlane(dict(zip(item.plane_axes, pidx)), labels, objs, off)
                              for (res, objs, labels, _, _, off), pidx in zip(
                                  per_plane, np.ndindex(*item.plane_shape) if stacked else [()])],
                             pixel_size=sizes["pixel_size"], table=table)
            for e in self.exports:
                e.write_image(ctx)
        return {"name": item.name, "kind": "objects", "images": images, "objects": total}, table

    def _objects_3d(self, item: InputFile, results: list[ImageResult], planes: list):
        """3D objects (one result per time point, objects ``(Z, H, W)``): a label stack with the
        input's axes minus C, one label per object through Z and unique across T; class masks;
        one predictions.json ``images`` entry per plane whose annotations are the objects' slices
        in that plane, each with its object's ``label``; one measurement row per 3D object."""
        from morphoscope.io.stacks import write_stack

        if "Z" not in item.plane_axes:
            raise InputError("3D objects need an input with a Z axis", path=item.path)
        if self.exports:
            raise InputError("exports (--export) are not written for 3D objects yet; predict without "
                             "--export, or with --planes for 2D objects per plane", path=item.path)
        nz = item.plane_shape[item.plane_axes.index("Z")]
        h, w = results[0].shape[1:]
        multi = len(self.class_names) > 1
        per_t, offset = [], 0
        for res in results:
            if tuple(res.shape) != (nz, h, w):
                raise InputError(f"3D result of shape {res.shape} does not fit the input's {nz} planes of "
                                 f"{h}x{w}", path=item.path)
            objs = res.objects_at()
            labels, classes, scores, index = label_arrays(objs, min_area=self.min_area, by_class=multi)
            per_t.append((res, objs.select(index), labels, classes, scores, offset))
            offset += len(index)
        total = offset
        dtype = np.uint16 if total < 65535 else np.uint32

        def plane_of(res, z):  # the plane index tuple (in item.plane_axes order) of Z plane z
            return tuple(int(z) if a == "Z" else int(res.plane.get(a, 0)) for a in item.plane_axes)

        order = item.plane_axes + "YX"
        sizes = {"pixel_size": self._pixel_size(item, results[0]), "z_spacing": item.z_spacing,
                 "time_interval": item.time_interval}
        can = np.zeros(item.plane_shape + (h, w), dtype)
        class_can = {k: np.zeros(can.shape, np.uint8) for k in range(1, len(self.class_names) + 1)}
        for res, _, labels, classes, _, off in per_t:
            lab = np.where(labels > 0, labels.astype(np.int64) + off, 0).astype(dtype)
            pcls = classes[labels]
            for z in range(nz):
                idx = plane_of(res, z)
                can[idx] = lab[z]
                for k, mask in class_can.items():
                    mask[idx] = ((pcls[z] == k) & (labels[z] > 0)) * 255
        write_stack(self.out / f"{item.name}_labels.tif", _to_axes(can, order, item.axes), item.axes,
                    ome=item.ome or None, overwrite=True, **sizes)
        for k, c in enumerate(self.class_names, start=1):
            write_stack(self.out / f"{item.name}_{safe_class_name(c)}.tif", _to_axes(class_can[k], order, item.axes),
                        item.axes, ome=item.ome or None, overwrite=True, **sizes)
        flat = {idx: i for i, idx in enumerate(np.ndindex(*item.plane_shape))}  # plane index -> position
        res0, _, labels0, classes0, _, _ = per_t[0]
        mid = nz // 2
        over_plane = planes[flat[plane_of(res0, mid)]]
        if over_plane is not None:
            from morphoscope.io.images import write_png

            write_png(self.out / f"{item.name}_overlay.png", overlay(over_plane, labels0[mid], classes0),
                      overwrite=True)
        if multi:  # overlapping classes: one label plane per class
            k = len(self.class_names)
            stack = np.zeros(item.plane_shape + (k, h, w), dtype)
            for res, objs, _, _, _, off in per_t:
                lk = labels_by_class(objs, k)  # (K, Z, H, W)
                lk = np.where(lk > 0, lk.astype(np.int64) + off, 0)
                for z in range(nz):
                    stack[plane_of(res, z)] = lk[:, z]
            write_stack(self.out / f"{item.name}_labels_by_class.tif", stack, item.plane_axes + "CYX",
                        ome=item.ome or None, overwrite=True, **sizes)
        if all(r.maps is not None for r in results):  # kept 3D maps (channels, Z, H, W)
            from types import SimpleNamespace

            maps = [None] * len(flat)
            for res in results:
                for z in range(nz):
                    maps[flat[plane_of(res, z)]] = SimpleNamespace(maps=res.maps[:, z])
            self._write_maps(item, maps, sizes)
        # COCO: one image entry per plane; a 3D object's slice in it is an annotation with its label
        images = [None] * len(flat)
        tables = []
        for res, objs, labels, classes, scores, off in per_t:
            z0 = objs.origins[:, 0] if len(objs) else np.zeros(0, np.int64)
            z1 = z0 + np.array([c.shape[0] for c in objs.crops], np.int64)
            for z in range(nz):
                idx = plane_of(res, z)
                entry = {"file_name": item.file_name, "height": int(h), "width": int(w), **_scale_entry(res),
                         "plane": {a: int(i) for a, i in zip(item.plane_axes, idx)}}
                anns = []
                for i in np.flatnonzero((z0 <= z) & (z1 > z)):
                    piece = objs.crops[i][z - z0[i]]
                    if piece.any():
                        rle = crop_rle(piece, objs.origins[i][1:], (h, w))
                        anns.append(coco_annotation(rle, int(objs.classes[i]), float(objs.scores[i]), int(off + i + 1)))
                images[flat[idx]] = {"entry": entry, "annotations": anns}
            if self.measure:
                volume = np.stack([np.asarray(planes[flat[plane_of(res, z)]]) for z in range(nz)])
                tables.append(self._measure_3d(labels, volume, classes, scores, off, item, res))
        table = None
        if self.measure:
            from morphoscope.morphology import concat_tables

            table = concat_tables(tables)
        return {"name": item.name, "kind": "objects", "images": images, "objects": total, "volume": True}, table

    def _measure_3d(self, labels, volume, classes, scores, offset, item, res):
        """One row per 3D object (label numbers as written: ``offset`` + k), with ``t``."""
        from morphoscope.morphology.volume import measure_volume

        n = int(labels.max(initial=0))
        table = measure_volume(labels, image=volume, pixel_size=self._pixel_size(item, res), z_spacing=item.z_spacing,
                               image_name=item.name, scores={k: float(scores[k]) for k in range(1, n + 1)},
                               classes={k: int(classes[k]) for k in range(1, n + 1)},
                               class_names=self.class_names, path=item.path)
        table["label"] = table["label"] + offset
        for a in reversed([a for a in item.plane_axes if a != "Z"]):
            table.insert(1, a.lower(), int(res.plane.get(a, 0)))
        return table

    def _objects_large(self, item: InputFile, res: ImageResult, reader: _Reader):
        """A plane too large to hold as whole arrays: the label image, class masks and OME-Zarr
        labels are painted block by block from the objects, the overlay is drawn on a
        downsampled copy, and measurements are taken block by block. Object ``k`` of
        predictions.json is label ``k``; overlaps go to the higher score as usual."""
        objs = res.objects_at().tight(min_area=self.min_area)
        n = len(objs)
        dtype = np.uint16 if n < 65535 else np.uint32
        numbers = np.arange(1, n + 1, dtype=np.int64)
        sizes = dict(pixel_size=self._pixel_size(item, res))
        shape = tuple(res.shape)
        _write_tiled(self.out / f"{item.name}_labels.tif", [(objs, numbers)], shape, dtype, **sizes)
        by_class = [(objs.select(objs.classes == k), numbers[objs.classes == k])
                    for k in range(1, len(self.class_names) + 1)]
        lut = np.concatenate([[0], np.full(n, 255)]).astype(np.uint8)
        for c, layer in zip(self.class_names, by_class):
            # every pixel of every object of class k (objects of other classes on top do not cut it);
            # a TIFF (tiled), not the PNG of smaller planes: PNG cannot be written in pieces
            _write_tiled(self.out / f"{item.name}_{safe_class_name(c)}.tif", [layer], shape, np.uint8, lut=lut,
                         **sizes)
        if len(self.class_names) > 1:  # overlapping classes: one label plane per class, as for smaller planes
            _write_tiled(self.out / f"{item.name}_labels_by_class.tif", by_class, shape, dtype, **sizes)
        _write_zarr(self.out / f"{item.name}_labels.ome.zarr", objs, numbers, shape, dtype, **sizes)
        small = reader.sample()
        step = max(1, int(round(shape[0] / small.shape[0])))
        if max(small.shape[:2]) > OVERLAY_MAX_SIDE:
            f = int(np.ceil(max(small.shape[:2]) / OVERLAY_MAX_SIDE))
            small, step = small[::f, ::f], step * f
        lab_small, idx = objs.rescaled(small.shape[:2]).to_labels(dtype=np.uint32)
        cls_small = np.concatenate([[0], objs.rescaled(small.shape[:2]).classes[idx]])
        from morphoscope.io.images import write_png

        write_png(self.out / f"{item.name}_overlay.png", overlay(small, lab_small, cls_small), overwrite=True)
        anns = [coco_annotation(objs.rle(i), int(objs.classes[i]), float(objs.scores[i]), i + 1) for i in range(n)]
        entry = {"file_name": item.file_name, "height": int(shape[0]), "width": int(shape[1]), **_scale_entry(res)}
        table = self._measure_blocks(objs, numbers, reader, item, res) if self.measure else None
        if self.exports:  # exporters work from the objects' crops; the label images are written above
            ctx = ExportItem(self.out, item, self.class_names, [ExportPlane({}, None, objs, 0)],
                             pixel_size=sizes["pixel_size"], table=table)
            for e in self.exports:
                e.write_image(ctx)
        return {"name": item.name, "kind": "objects", "images": [{"entry": entry, "annotations": anns}],
                "objects": n, "large": True}, table

    def _measure_blocks(self, objs: Objects, numbers, reader: _Reader, item: InputFile, res: ImageResult):
        """Measurements of a large plane, block by block: each block measures the objects whose
        centre it owns, on a window that holds them whole."""
        from morphoscope.engine.tiling import block_grid
        from morphoscope.morphology import concat_tables, measure_labels

        shape = tuple(res.shape)
        extent = int(max((max(c.shape) for c in objs.crops), default=1))
        margin = extent + 2
        size = max(4096, 4 * margin)
        centres = objs.centres()
        owner = np.floor(centres + 0.5).astype(np.int64)
        # as measure_objects: with several classes each is measured on its own label plane, so
        # that an object inside one of another class is measured whole
        groups = ([np.ones(len(objs), bool)] if len(self.class_names) <= 1
                  else [objs.classes == k for k in range(1, len(self.class_names) + 1)])
        tables = []
        for block in block_grid(shape, size=size, margin=margin):
            own = np.all([(owner[:, a] >= s.start) & (owner[:, a] < s.stop) for a, s in enumerate(block.core)], axis=0)
            if not own.any():
                continue
            image = reader.read(block.window)
            for mine in groups:
                if not (own & mine).any():
                    continue
                labels = objs.select(mine).paint(block.window, numbers[mine], dtype=np.uint32)
                ids = numbers[own & mine]
                labels[~np.isin(labels, ids)] = 0
                table = measure_labels(labels, image=image, pixel_size=self._pixel_size(item, res),
                                       image_name=item.name, class_names=self.class_names,
                                       scores={int(k): float(objs.scores[k - 1]) for k in ids},
                                       classes={int(k): int(objs.classes[k - 1]) for k in ids})
                y0, x0 = block.offset
                for col, off in (("centroid_row", y0), ("bbox_row_min", y0), ("bbox_row_max", y0),
                                 ("centroid_col", x0), ("bbox_col_min", x0), ("bbox_col_max", x0)):
                    if col in table:
                        table[col] = table[col] + off
                if "touches_border" in table:
                    table["touches_border"] = ((table["bbox_row_min"] <= 0) | (table["bbox_col_min"] <= 0)
                                               | (table["bbox_row_max"] >= shape[0])
                                               | (table["bbox_col_max"] >= shape[1]))
                tables.append(table)
        out = concat_tables(tables)
        return out.sort_values("label", kind="stable").reset_index(drop=True) if len(out) else out

    def _write_maps(self, item: InputFile, results, sizes) -> None:
        """``NAME_prob.tif``: float32 probability of each foreground class (kept maps)."""
        from morphoscope.io.stacks import write_stack

        k = len(self.class_names)
        probs = np.stack([r.maps[1:k + 1].astype(np.float32) for r in results])  # (planes, K, H, W)
        probs = probs.reshape(item.plane_shape + probs.shape[1:]) if item.plane_axes else probs[0]
        axes = item.plane_axes + "CYX"
        if k == 1:
            probs = probs.reshape(probs.shape[:-3] + probs.shape[-2:])
            axes = item.plane_axes + "YX"
        write_stack(self.out / f"{item.name}_prob.tif", probs, axes, ome=item.ome or None, overwrite=True, **sizes)

    def _pixel_size(self, item: InputFile, res: ImageResult):
        if self.pixel_size is not None:
            return self.pixel_size
        return res.pixel_size if res.pixel_size is not None else item.pixel_size

    def _classification_record(self, item: InputFile, res: ImageResult) -> dict:
        probs = np.asarray(res.class_scores, np.float64)
        decided = set(res.decided or [])
        row = {"image": item.name, "file": item.file_name}
        for n, p in zip(self.class_names, probs):
            row[f"prob_{n}"] = round(float(p), 6)
        ids = [k for k, n in enumerate(self.class_names) if n in decided]
        row["labels"] = " ".join(str(k) for k in ids)
        row["label_names"] = ";".join(self.class_names[k] for k in ids)
        return {"name": item.name, "kind": "classes", "row": row}

    # ---- the run-wide files -----------------------------------------------------------------
    def finish(self, names: list[str]) -> dict:
        """Assemble the run-wide files from the records of ``names`` (in this order); inputs
        without a record (failed) are left out. Returns a summary."""
        records = []
        for n in names:
            p = self.record(n, ".json")
            if p.is_file():
                records.append(json.loads(p.read_text()))
        kinds = {r["kind"] for r in records}
        if kinds == {"classes"}:
            self._finish_classes(records)
        elif records:
            self._finish_objects(records)
            for e in self.exports:
                e.finish(self.out, records, self.records)
        return {"written": len(records), "warnings": {r["name"]: r["warnings"] for r in records if r.get("warnings")}}

    def _finish_objects(self, records) -> None:
        images, anns = [], []
        for rec in records:
            for im in rec["images"]:
                image_id = len(images) + 1
                images.append({"id": image_id, **im["entry"]})
                for a in im["annotations"]:
                    anns.append({"id": len(anns) + 1, "image_id": image_id, **a})
        data = {"info": self.info, "images": images,
                "categories": [{"id": k, "name": c} for k, c in enumerate(self.class_names, start=1)],
                "annotations": anns}
        with atomic_write(self.out / PREDICTIONS_JSON, overwrite=True, mode="w") as fh:
            json.dump(data, fh)
        if self.measure:
            from morphoscope.morphology import concat_tables, read_table, write_table

            tables = [read_table(self.record(r["name"], ".csv")) for r in records
                      if self.record(r["name"], ".csv").is_file()]
            write_table(concat_tables(tables), self.out / MEASUREMENTS_CSV, overwrite=True)

    def _finish_classes(self, records) -> None:
        import pandas as pd

        rows = [r["row"] for r in records]
        with atomic_write(self.out / CLASSIFICATIONS_CSV, overwrite=True, mode="w") as fh:
            pd.DataFrame(rows).to_csv(fh, index=False)
        with atomic_write(self.out / CLASSIFICATION_INFO, overwrite=True, mode="w") as fh:
            json.dump({**self.info, **self.info.get("settings", {}), "class_names": self.class_names,
                       "images": len(rows)}, fh, indent=2)
            fh.write("\n")


def scale_record(res: ImageResult) -> dict | None:
    """How the image was scaled for the model: ``scale`` = model pixels per input pixel,
    ``scale_from`` (``diameter`` given, ``estimate``, ``pixel_size``, ``scale``) and the objects'
    ``diameter`` in input pixels, so that a user sees what the automatic size estimate chose.
    None when the model ran at the input's scale."""
    st = res.settings
    if st.get("scale_from") in (None, "off") and float(st.get("scale", 1.0)) == 1.0:
        return None
    out = {"scale": round(float(st.get("scale", 1.0)), 6), "scale_from": st.get("scale_from")}
    if st.get("diameter") is not None:
        out["diameter"] = round(float(st["diameter"]), 3)
    return out


def _scale_entry(res: ImageResult) -> dict:
    """:func:`scale_record` as the ``morphoscope`` key of a COCO image entry (or nothing)."""
    rec = scale_record(res)
    return {"morphoscope": rec} if rec else {}


#: bytes per pixel the whole-array writer needs at its peak (image, labels, overlay, measurement)
BYTES_PER_PIXEL = 40


def _write_in_blocks(shape) -> bool:
    """Large planes, or planes whose whole arrays would not fit in the memory free now, are
    written block by block."""
    from morphoscope.io.memory import available_bytes

    pixels = int(shape[0]) * int(shape[1])
    return pixels > LARGE_PIXELS or pixels * BYTES_PER_PIXEL > 0.5 * available_bytes()


class _Reader:
    """A plane's pixels: an array, or a lazy reader with ``read(region=None)`` and ``sample()``."""

    def __init__(self, source):
        self.source = source

    def read(self, region=None) -> np.ndarray:
        if isinstance(self.source, np.ndarray):
            return self.source if region is None else self.source[region]
        return self.source.read(region) if region is not None else self.source.read()

    def sample(self) -> np.ndarray:
        if isinstance(self.source, np.ndarray):
            return self.source
        return self.source.sample()


TILE = 1024


def _write_tiled(path: Path, layers, shape, dtype, *, lut=None, pixel_size=None) -> None:
    """A tiled (Big)TIFF painted tile by tile from the objects (OME metadata with pixel size):
    ``layers`` = ``[(objects, numbers)]`` gives a ``YX`` image, several give ``CYX`` (one plane
    each); pixels hold the label numbers, or ``lut[label]`` when a lookup table is given."""
    import tifffile

    h, w = shape

    def tiles():
        for objs, numbers in layers:
            for y in range(0, h, TILE):
                for x in range(0, w, TILE):
                    t = objs.paint((slice(y, min(y + TILE, h)), slice(x, min(x + TILE, w))), numbers,
                                   dtype=np.uint32)
                    t = (lut[t] if lut is not None else t).astype(dtype, copy=False)
                    full = np.zeros((TILE, TILE), dtype)
                    full[: t.shape[0], : t.shape[1]] = t
                    yield full

    several = len(layers) > 1
    meta = {"axes": "CYX" if several else "YX"}
    if pixel_size:
        meta.update(PhysicalSizeX=float(pixel_size), PhysicalSizeY=float(pixel_size),
                    PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    from morphoscope.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=(len(layers), h, w) if several else (h, w), dtype=dtype,
                         tile=(TILE, TILE), compression="zlib",
                         bigtiff=True, ome=True, metadata=meta, photometric="minisblack")


def _write_zarr(path: Path, objs: Objects, numbers, shape, dtype, *, pixel_size=None) -> None:
    """OME-Zarr labels painted chunk by chunk, built beside ``path`` and renamed into place."""
    import os
    import shutil

    from morphoscope.io.omezarr import create_labels_zarr

    tmp = path.with_name(f".{path.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    arr = create_labels_zarr(tmp, shape=shape, axes="YX", dtype=dtype, chunks=(TILE, TILE), pixel_size=pixel_size)
    h, w = shape
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            win = (slice(y, min(y + TILE, h)), slice(x, min(x + TILE, w)))
            arr[win] = objs.paint(win, numbers, dtype=dtype)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def coco_annotation(rle: dict, category: int, score: float, label: int) -> dict:
    """One COCO results entry (no ids yet) of an object given by its RLE."""
    from pycocotools import mask as mask_utils

    enc = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return {"category_id": category, "segmentation": rle, "area": float(mask_utils.area(enc)),
            "bbox": [float(v) for v in mask_utils.toBbox(enc).tolist()], "score": score, "label": label,
            "iscrowd": 0}


def _to_axes(arr: np.ndarray, order: str, axes: str) -> np.ndarray:
    """``arr`` with axes ``order`` -> the stored order ``axes``."""
    return np.ascontiguousarray(np.transpose(arr, [order.index(a) for a in axes]))
