"""Label Studio's own export formats: JSON and JSON_MIN (regions in percent of the image, brush
masks in Label Studio's bit-packed RLE) and BRUSH_TO_PNG (one PNG per brush region, named after
its task). Its COCO, COCO_WITH_IMAGES and BRUSH_TO_COCO exports are COCO and read by
:mod:`.dataset`.

Regions read: PolygonLabels, BrushLabels, RectangleLabels (also turned), EllipseLabels, and the
plain Polygon / Brush / Rectangle / Ellipse tags with a separate Labels tag. KeyPointLabels are
points, not object outlines: they are left out with a warning. Per task, the latest annotation
that was not cancelled is read (a ground-truth one first); predictions are not annotations.

Classes and their order come from the project's labelling config (an ``.xml`` file with a
``<View>`` root beside the export, e.g. copied from Settings > Labeling Interface > Code), else
from the labels used, sorted by name.
"""

from __future__ import annotations

import json
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.formats.common import (
    AnnotatedObject,
    ImageFinder,
    origin_dir,
    reference_basename,
    shown,
    strip_upload_prefix,
)
from morphoscope.formats.shapes import (
    EDGE_TOLERANCE,
    ShapeError,
    box_mask,
    check_points,
    ellipse_mask,
    polygons_mask,
    rotated_box_polygon,
)

__all__ = ["LabelConfig", "decode_brush_rle", "brush_rle_mask", "read_label_config",
           "load_labelstudio_json", "load_labelstudio_brush_png"]

REGION_KINDS = ("polygon", "brush", "rectangle", "ellipse", "keypoint")
# JSON_MIN keys that describe the record, not the task's data or its regions
JSON_MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time",
                 "agreement", "history", "was_cancelled", "drafts", "predictions"}
BRUSH_PNG_NAME = re.compile(r"^task-(\d+)-annotation-(\d+)-by-([^-]*)-(.+)-(\d+)\.png$")
_POWERS = 2 ** np.arange(31, -1, -1, dtype=np.int64)


# ---- brush RLE -------------------------------------------------------------------------------

class _Bits:
    def __init__(self, data: np.ndarray):
        self.bits = np.unpackbits(data)
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > len(self.bits):
            raise ShapeError("has a truncated brush RLE")
        v = int(self.bits[self.pos:self.pos + n] @ _POWERS[32 - n:])
        self.pos += n
        return v

    def read_many(self, count: int, n: int) -> np.ndarray:
        if self.pos + count * n > len(self.bits):
            raise ShapeError("has a truncated brush RLE")
        words = self.bits[self.pos:self.pos + count * n].reshape(count, n) @ _POWERS[32 - n:]
        self.pos += count * n
        return words


def _brush_bytes(rle) -> np.ndarray:
    data = np.asarray(rle)
    if (data.ndim != 1 or data.size < 8 or not np.issubdtype(data.dtype, np.integer)
            or data.min() < 0 or data.max() > 255):
        raise ShapeError("has a brush RLE that is not a list of bytes")
    return data.astype(np.uint8)


def brush_rle_length(rle) -> int:
    """The number of values a brush RLE holds (its 32-bit header), read without decoding it."""
    return _Bits(_brush_bytes(rle)).read(32)


def decode_brush_rle(rle, *, length: int | None = None) -> np.ndarray:
    """Label Studio's brush RLE (a list of bytes) -> the flat array it encodes (RGBA values of the
    image, row by row). The format is thi.ng's rle-pack: a 32-bit value count, a 5-bit word size
    minus 1, four 4-bit run-length sizes minus 1, then records of a repeat bit, a 2-bit index into
    the run-length sizes, a run length minus 1, and one word (repeated) or run-length words.

    ``length``, when given, is checked against the header before anything is allocated."""
    bits = _Bits(_brush_bytes(rle))
    num = bits.read(32)
    if length is not None and num != length:
        raise ShapeError(f"has a brush RLE of {num} values, not the {length} of its image (4 x height x width)")
    word = bits.read(5) + 1
    sizes = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8 if word <= 8 else np.uint16 if word <= 16 else np.uint32)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = i + 1 + bits.read(sizes[bits.read(2)])
        if j > num:
            raise ShapeError("has a corrupt brush RLE (a run goes past its end)")
        if repeat:
            out[i:j] = bits.read(word)
        else:
            out[i:j] = bits.read_many(j - i, word)
        i = j
    return out


def brush_rle_mask(rle, height: int, width: int) -> np.ndarray:
    """A brush region -> bool mask: the pixels whose alpha is not 0, as Label Studio's own
    converters read it (BRUSH_TO_PNG writes the alpha, BRUSH_TO_COCO traces alpha > 0)."""
    flat = decode_brush_rle(rle, length=4 * height * width)
    return flat.reshape(height, width, 4)[:, :, 3] > 0


# ---- labelling config -----------------------------------------------------------------------

@dataclass
class LabelConfig:
    """What morphoscope needs from a project's labelling config."""

    path: Path
    classes: list[str] = field(default_factory=list)  # region labels, in the config's order
    image_key: str | None = None  # the task data key of the <Image> tag ("image" for $image)
    aliases: dict[str, str] = field(default_factory=dict)  # Label alias -> value


def read_label_config(path: str | Path) -> LabelConfig:
    """Parse a Label Studio labelling config (``<View>...</View>``)."""
    path = Path(path)
    try:
        root = ET.fromstring(path.read_text(encoding="utf-8"))
    except (ET.ParseError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read the labelling config ({exc})", path=shown(path)) from None
    cfg = LabelConfig(path)
    for el in root.iter():
        tag = el.tag.lower()
        if tag == "image" and cfg.image_key is None and el.get("value", "").startswith("$"):
            cfg.image_key = el.get("value")[1:]
        if tag.endswith("labels") and tag not in ("keypointlabels", "choices"):
            for lab in el.iter():
                if lab.tag.lower() == "label" and lab.get("value") is not None:
                    if lab.get("value") not in cfg.classes:
                        cfg.classes.append(lab.get("value"))
                    if lab.get("alias"):
                        cfg.aliases[lab.get("alias")] = lab.get("value")
    return cfg


def find_label_config(export: Path) -> LabelConfig | None:
    """The labelling config beside an export (or beside the zip it came in), if there is one."""
    dirs = [export.parent] + ([origin_dir(export)] if origin_dir(export) else [])
    found = []
    for d in dict.fromkeys(dirs):
        for p in sorted(d.glob("*.xml")):
            from morphoscope.formats.dataset import _sniff

            if _sniff(p) == "labelstudio-config":
                found.append(p)
    if not found:
        return None
    named = [p for p in found if p.name == "label_config.xml"]
    if len(found) > 1 and not named:
        warnings.warn(f"{shown(export)}: several labelling configs beside it "
                      f"({', '.join(p.name for p in found)}); none is used (name one label_config.xml)",
                      stacklevel=3)
        return None
    return read_label_config((named or found)[0])


# ---- tasks -----------------------------------------------------------------------------------

@dataclass
class _Region:
    kind: str  # one of REGION_KINDS, or "unsupported <type>"
    value: dict
    labels: list[str]
    size: tuple[int, int] | None  # (height, width) Label Studio recorded for the image
    where: str
    from_name: str | None = None


@dataclass
class _Task:
    task_id: object
    image_ref: str
    regions: list[_Region]
    annotation_id: object
    where: str


def _labels_of(value: dict) -> list[str]:
    for k, v in value.items():
        if k.lower().endswith("labels") and isinstance(v, list):
            return [str(x) for x in v]
    return []


def _geometry_kind(value: dict) -> str | None:
    if "points" in value:
        return "polygon"
    if "rle" in value or value.get("format") == "rle":
        return "brush"
    if "radiusX" in value and "radiusY" in value:
        return "ellipse"
    if all(k in value for k in ("x", "y", "width", "height")):
        return "rectangle"
    if "x" in value and "y" in value:
        return "keypoint"
    return None


def _region_kind(types: list[str], value: dict) -> str | None:
    """The shape of a region from its result types (or, in JSON_MIN, its label key) and value."""
    for t in types:
        t = t.lower()
        base = t[:-len("labels")] if t.endswith("labels") and t != "labels" else t
        if base in REGION_KINDS:
            return base
    geometry = _geometry_kind(value)
    if geometry is None:
        return None  # choices, text areas, relations, ...: not regions
    odd = [t for t in types if t and t.lower() != "labels"]
    return f"unsupported '{odd[0]}'" if odd else geometry


def _size_of(result: dict, where: str, path: Path) -> tuple[int, int] | None:
    w, h = result.get("original_width"), result.get("original_height")
    if w is None or h is None:
        return None
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise InputError(f"{where} gives the image size {w!r}x{h!r}; it must be positive integers",
                         path=shown(path))
    if result.get("image_rotation"):
        raise InputError(f"{where} was drawn on an image turned by {result['image_rotation']} degrees "
                         "in Label Studio; turned images are not read", path=shown(path))
    return h, w


def _image_ref(data: dict, config: LabelConfig | None, where: str, path: Path) -> str:
    if config is not None and config.image_key in data:
        return str(data[config.image_key])
    if isinstance(data.get("image"), str):
        return data["image"]
    strings = [v for v in data.values() if isinstance(v, str)]
    if len(strings) == 1:
        return strings[0]
    raise InputError(f"{where}: cannot tell which of its data fields ({', '.join(map(str, data))}) is the "
                     "image; put the labelling config beside the export", path=shown(path))


def _latest(candidates: list[dict], *keys: str):
    """The latest of several annotations: ground truth first, then by time and id."""
    def key(a):
        return (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at") or ""),
                a.get(keys[0]) if isinstance(a.get(keys[0]), (int, float)) else 0)
    return max(candidates, key=key)


def _read_tasks(path: Path, config: LabelConfig | None) -> tuple[list[_Task], int]:
    """Label Studio JSON or JSON_MIN -> tasks, and how many tasks had several annotations."""
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path=shown(path)) from None
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise InputError("not a Label Studio export: expected a list of tasks", path=shown(path))
    return _read_full(data, path, config) if _is_full_export(data) else _read_min(data, path, config)


def _is_full_export(data: list[dict]) -> bool:
    """JSON tasks carry 'data' and 'annotations'; JSON_MIN records are flat."""
    return any("data" in t or "annotations" in t or "completions" in t for t in data)


def _read_full(tasks: list[dict], path: Path, config) -> tuple[list[_Task], int]:
    out, several = [], 0
    for t in tasks:
        where = f"task {t.get('id')}"
        ref = _image_ref(t.get("data") or {}, config, where, path)
        anns = [a for a in (t.get("annotations") or t.get("completions") or [])
                if isinstance(a, dict) and not a.get("was_cancelled") and not a.get("skipped")]
        several += len(anns) > 1
        chosen = _latest(anns, "id") if anns else None
        groups: dict = {}
        for k, r in enumerate((chosen or {}).get("result") or []):
            if isinstance(r, dict):
                groups.setdefault(r.get("id", f"#{k}"), []).append(r)
        regions = []
        for rid, rs in groups.items():
            value: dict = {}
            for r in rs:
                value.update(r.get("value") or {})
            kind = _region_kind([str(r.get("type", "")) for r in rs], value)
            if kind is None:
                continue
            rwhere = f"{where}, region '{rid}'"
            sizes = {s for r in rs if (s := _size_of(r, rwhere, path)) is not None}
            regions.append(_Region(kind, value, _labels_of(value), next(iter(sizes), None), rwhere,
                                   rs[0].get("from_name")))
        out.append(_Task(t.get("id"), ref, regions, (chosen or {}).get("id"), where))
    return out, several


def _is_region(v) -> bool:
    return isinstance(v, dict) and (_geometry_kind(v) is not None or bool(_labels_of(v)))


def _read_min(records: list[dict], path: Path, config) -> tuple[list[_Task], int]:
    by_task: dict = {}
    for rec in records:
        by_task.setdefault(rec.get("id"), []).append(rec)
    out, several = [], 0
    for tid, recs in by_task.items():
        several += len(recs) > 1
        rec = _latest(recs, "annotation_id")
        where = f"task {tid}"
        data, regions = {}, []
        for k, v in rec.items():
            if k in JSON_MIN_META:
                continue
            items = v if isinstance(v, list) else [v]
            if items and all(_is_region(x) for x in items):
                for n, r in enumerate(items, start=1):
                    label_keys = [key for key in r if key.lower().endswith("labels")]
                    kind = _region_kind(label_keys, r)
                    if kind is None:
                        continue
                    rwhere = f"{where}, '{k}' region {n}"
                    regions.append(_Region(kind, r, _labels_of(r), _size_of(r, rwhere, path), rwhere, k))
            else:
                data[k] = v
        # a plain shape tag and its Labels tag give one region twice, once without labels
        labelled = {json.dumps(_geometry(r.value), sort_keys=True) for r in regions if r.labels}
        regions = [r for r in regions if r.labels or json.dumps(_geometry(r.value), sort_keys=True) not in labelled]
        out.append(_Task(tid, _image_ref(data, config, where, path), regions, rec.get("annotation_id"), where))
    return out, several


def _geometry(value: dict) -> dict:
    return {k: v for k, v in value.items() if not k.lower().endswith("labels") and k != "type"}


# ---- regions -> objects ----------------------------------------------------------------------

def _finite(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ShapeError(f"has {what} = {v!r}, not a number")
    if not np.isfinite(v):
        raise ShapeError("has a non-finite coordinate (NaN or infinity)")
    return float(v)


def _number(value: dict, key: str) -> float:
    return _finite(value.get(key), key)


def _polygon_mask(points_pct, height: int, width: int) -> np.ndarray:
    flat = [c for x, y in points_pct for c in (x * width / 100, y * height / 100)]
    return polygons_mask([flat], height, width)


def _rectangle_mask(x, y, w, h, rotation, height: int, width: int) -> np.ndarray:
    px, py = x * width / 100, y * height / 100
    poly = rotated_box_polygon(px, py, w * width / 100, h * height / 100, rotation, pivot=(px, py))
    return box_mask(poly, height, width)


def _ellipse_mask(x, y, rx, ry, rotation, height: int, width: int) -> np.ndarray:
    return ellipse_mask(x * width / 100, y * height / 100, rx * width / 100, ry * height / 100,
                        rotation, height, width)


def _region_object(r: _Region, class_index: int, size: tuple[int, int] | None) -> AnnotatedObject:
    """Check a region's numbers now (so bad files fail when read, not mid-training) and return
    it as a lazily rasterised object."""
    v = r.value
    if r.kind == "polygon":
        pts = v.get("points")
        if not isinstance(pts, list) or len(pts) < 3 or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
            raise ShapeError("has 'points' that are not a list of at least 3 [x, y] pairs")
        pts = [(_finite(p[0], "x"), _finite(p[1], "y")) for p in pts]
        if size is not None:
            h, w = size
            check_points([x * w / 100 for x, _ in pts], [y * h / 100 for _, y in pts], h, w)
        return AnnotatedObject(class_index, r.where, partial(_polygon_mask, pts))
    if r.kind == "brush":
        if v.get("format", "rle") != "rle" or "rle" not in v:
            raise ShapeError(f"is a brush region in format {v.get('format')!r}; only 'rle' is read")
        n = brush_rle_length(v["rle"])
        if size is not None and n != 4 * size[0] * size[1]:
            raise ShapeError(f"has a brush RLE of {n} values, not the {4 * size[0] * size[1]} of its "
                             f"{size[1]}x{size[0]} image")
        return AnnotatedObject(class_index, r.where, partial(brush_rle_mask, v["rle"]))
    if r.kind == "rectangle":
        x, y, w_, h_ = (_number(v, k) for k in ("x", "y", "width", "height"))
        rot = _number(v, "rotation") if "rotation" in v else 0.0
        if size is not None:
            h, w = size
            poly = rotated_box_polygon(x * w / 100, y * h / 100, w_ * w / 100, h_ * h / 100, rot,
                                       pivot=(x * w / 100, y * h / 100))
            check_points(poly[0::2], poly[1::2], h, w)
        return AnnotatedObject(class_index, r.where, partial(_rectangle_mask, x, y, w_, h_, rot))
    if r.kind == "ellipse":
        x, y, rx, ry = (_number(v, k) for k in ("x", "y", "radiusX", "radiusY"))
        rot = _number(v, "rotation") if "rotation" in v else 0.0
        if size is not None:
            h, w = size
            check_points([x * w / 100], [y * h / 100], h, w, tolerance=EDGE_TOLERANCE)
        return AnnotatedObject(class_index, r.where, partial(_ellipse_mask, x, y, rx, ry, rot))
    raise AssertionError(r.kind)


def _classes(tasks: list[_Task], config: LabelConfig | None, class_name: str, extra=()) -> list[str]:
    used = {lab for t in tasks for r in t.regions if r.kind in REGION_KINDS[:4] for lab in r.labels[:1]}
    used |= set(extra)
    if config is not None:
        used = {config.aliases.get(u, u) for u in used}
        names = list(config.classes) + sorted(used - set(config.classes))
    else:
        names = sorted(used)
    unlabelled = any(not r.labels for t in tasks for r in t.regions if r.kind in REGION_KINDS[:4])
    if unlabelled or not names:
        names.append(class_name)
    return names


def _samples(tasks: list[_Task], finder: ImageFinder):
    """Find each task's image; yields ``(task, image path, name)`` with names made unique."""
    seen = set()
    for t in tasks:
        found = finder.find(t.image_ref)
        if found is None:
            raise finder.missing(t.image_ref, t.where)
        name = Path(strip_upload_prefix(reference_basename(t.image_ref))).stem
        if name in seen:  # the same image uploaded twice
            name = f"{name}_task{t.task_id}"
        seen.add(name)
        yield t, found[0], name


def load_labelstudio_json(path: str | Path, *, images: str | Path | None = None,
                          class_name: str = "nucleus"):
    """Read a Label Studio JSON or JSON_MIN export into an :class:`~.dataset.InstanceDataset`."""
    from morphoscope.formats.dataset import InstanceDataset, Sample

    path = Path(path)
    where = shown(path)
    config = find_label_config(path)
    tasks, several = _read_tasks(path, config)
    if not tasks:
        raise InputError("the export holds no tasks", path=where)
    names = _classes(tasks, config, class_name)
    index = {n: k for k, n in enumerate(names, start=1)}
    finder = ImageFinder(path, Path(images) if images is not None else None)
    samples, skipped, unsupported, multi = [], 0, {}, 0
    for t, image_path, name in _samples(tasks, finder):
        sizes = {r.size for r in t.regions if r.size is not None}
        if len(sizes) > 1:
            raise InputError(f"{t.where}: its regions give different image sizes {sorted(sizes)}", path=where)
        size = next(iter(sizes), None)
        objects = []
        for r in t.regions:
            if r.kind == "keypoint":
                skipped += 1
                continue
            if r.kind not in REGION_KINDS:
                unsupported[r.kind] = unsupported.get(r.kind, 0) + 1
                continue
            multi += len(r.labels) > 1
            label = (config.aliases.get(r.labels[0], r.labels[0]) if config else r.labels[0]) if r.labels else class_name
            try:
                objects.append(_region_object(r, index[label], size))
            except ShapeError as exc:
                raise InputError(f"{r.where} {exc}", path=where) from None
        samples.append(Sample(name=name, image_path=image_path, layout="labelstudio", objects=objects,
                              annotation_path=path, declared_size=size))
    _warn(where, several, skipped, unsupported, multi)
    return InstanceDataset(path, "labelstudio", samples, names)


def _warn(where, several: int, keypoints: int, unsupported: dict, multi: int) -> None:
    if several:
        warnings.warn(f"{where}: {several} task(s) have several annotations; the latest of each is read",
                      stacklevel=3)
    if keypoints:
        warnings.warn(f"{where}: {keypoints} keypoint(s) are not object outlines and were left out",
                      stacklevel=3)
    for kind, n in unsupported.items():
        warnings.warn(f"{where}: {n} {kind} region(s) were left out (not an object outline morphoscope "
                      "reads)", stacklevel=3)
    if multi:
        warnings.warn(f"{where}: {multi} region(s) carry several labels; the first is their class",
                      stacklevel=3)


# ---- BRUSH_TO_PNG ----------------------------------------------------------------------------

def _brush_png_mask(path: Path, height: int, width: int) -> np.ndarray:
    from morphoscope.io.images import read_image

    try:
        arr = read_image(path)
    except InputError as exc:
        raise ShapeError(f"cannot be read ({exc.message})") from None
    if arr.ndim == 3:  # Label Studio writes the alpha alone ("L"); take it from RGBA too
        arr = arr[..., -1] if arr.shape[-1] in (2, 4) else arr[..., 0]
    if arr.shape != (height, width):
        raise ShapeError(f"is {arr.shape[1]}x{arr.shape[0]}, not its image's {width}x{height}")
    return arr > 0


def _tasks_json_for(folder: Path, task_ids: set) -> tuple[Path, list[_Task], int, LabelConfig | None]:
    """The Label Studio JSON / JSON_MIN export beside a BRUSH_TO_PNG folder that knows its tasks."""
    from morphoscope.formats.dataset import _sniff

    dirs = [folder, folder.parent] + ([origin_dir(folder)] if origin_dir(folder) else [])
    candidates = []
    for d in dict.fromkeys(dirs):
        for p in sorted(d.glob("*.json")):
            if _sniff(p) != "labelstudio":
                continue
            config = find_label_config(p)
            try:
                tasks, several = _read_tasks(p, config)
            except InputError:
                continue
            if task_ids <= {str(t.task_id) for t in tasks}:
                with open(p, "rb") as fh:  # prefer JSON to JSON_MIN: it keeps annotation ids per task
                    full = b'"annotations"' in fh.read(1 << 16)
                candidates.append((not full, p, tasks, several, config))
    if not candidates:
        raise InputError("BRUSH_TO_PNG names its masks after task ids only (task-N-annotation-...png): "
                         "put the project's JSON or JSON_MIN export beside it, so that tasks can be "
                         "matched to their images", path=shown(folder))
    _, p, tasks, several, config = min(candidates, key=lambda c: (c[0], str(c[1])))
    return p, tasks, several, config


def load_labelstudio_brush_png(folder: str | Path, *, images: str | Path | None = None,
                               class_name: str = "nucleus"):
    """Read a BRUSH_TO_PNG export (a folder of ``task-T-annotation-A-by-U-TAG-LABEL-I.png``, one
    per brush region) with the project's JSON or JSON_MIN export beside it."""
    from morphoscope.formats.dataset import InstanceDataset, Sample

    folder = Path(folder)
    where = shown(folder)
    pngs: dict = {}
    for p in sorted(folder.iterdir()):
        m = BRUSH_PNG_NAME.match(p.name)
        if m:
            pngs.setdefault(m.group(1), {}).setdefault(int(m.group(2)), []).append((p, m.group(4)))
    json_path, tasks, several, config = _tasks_json_for(folder, set(pngs))
    from_names = sorted({r.from_name for t in tasks for r in t.regions if r.from_name}, key=len, reverse=True)

    def label_of(rest: str) -> str:
        for f in from_names:
            if rest.startswith(f + "-"):
                return rest[len(f) + 1:]
        return rest.split("-", 1)[1] if "-" in rest else rest

    known = set(config.classes) if config else {lab for t in tasks for r in t.regions for lab in r.labels}
    per_task, several_png = {}, 0
    for tid, by_ann in pngs.items():
        task = next(t for t in tasks if str(t.task_id) == tid)
        ann = task.annotation_id if task.annotation_id in by_ann else max(by_ann)
        several_png += len(by_ann) > 1
        objs = []
        for p, rest in by_ann[ann]:
            label = label_of(rest)
            if label not in known and "-" in label:  # several labels joined by "-": the first known
                label = next((x for x in label.split("-") if x in known), label)
            objs.append((p, None if label == "no_label" else label))
        per_task[tid] = objs
    names = _classes(tasks, config, class_name, extra={lab for o in per_task.values() for _, lab in o if lab})
    if any(lab is None for o in per_task.values() for _, lab in o) and class_name not in names:
        names.append(class_name)
    index = {n: k for k, n in enumerate(names, start=1)}
    finder = ImageFinder(json_path, Path(images) if images is not None else None)
    samples = []
    for t, image_path, name in _samples(tasks, finder):
        objects = [AnnotatedObject(index[lab or class_name], f"mask {p.name}", partial(_brush_png_mask, p))
                   for p, lab in per_task.get(str(t.task_id), [])]
        sizes = {r.size for r in t.regions if r.size is not None}
        samples.append(Sample(name=name, image_path=image_path, layout="labelstudio-png", objects=objects,
                              annotation_path=folder, declared_size=next(iter(sizes), None) if len(sizes) == 1 else None))
    if several or several_png:
        warnings.warn(f"{where}: {max(several, several_png)} task(s) have several annotations; the latest "
                      "of each is read", stacklevel=2)
    return InstanceDataset(folder, "labelstudio-png", samples, names)
