"""Pascal VOC XML boxes (one ``<annotation>`` file per image), and the boxes of any dataset.

What is read, and how (docs/detection.md):

* a VOC folder: ``Annotations/*.xml`` with the images in ``JPEGImages/`` (or found by name beside
  the XML files or in the ``images`` folder given); also a plain folder of VOC XML files;
* one of its split lists, ``ImageSets/Main/NAME.txt`` (one image id per line): only the images it
  lists;
* a single VOC XML file.

Coordinates. VOC writes ``<bndbox>`` as ``xmin, ymin, xmax, ymax`` in 1-based, inclusive pixel
indices (the VOC devkit; a box of pixels 1..10 is 10 wide). They become the corner coordinates
every other reader here uses (pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``):
``x0 = xmin - 1, y0 = ymin - 1, x1 = xmax, y1 = ymax`` (as detectron2 reads VOC).

Checks, each naming the file:

* a box whose written size is zero (``xmax == xmin`` or ``ymax == ymin``, a stray click) is
  **dropped with a warning** that names every such file and object (bccd-platelets has two);
* ``xmax < xmin`` or ``ymax < ymin``, a non-numeric or missing coordinate, an object without a
  name or box, and a class outside ``labelmap.txt`` are errors;
* a box may pass the image edge by at most 1 pixel (tools that write 0-based corners put
  ``xmin = 0`` or ``xmax = width``): it is clipped to the image. A box further outside the
  image is an **error** (a box outside the image means the file and the image do not belong
  together, or the coordinates are not pixels);
* the ``<size>`` of the file must match its image (checked when pixels are read).

Classes: the names in ``labelmap.txt`` beside ``Annotations/`` (CVAT's Pascal VOC export), in its
order, without ``background``; otherwise every ``<name>`` in all the folder's XML files, sorted,
so that the train, val and test lists of one folder get the same classes. ``difficult`` and
``truncated`` objects are ordinary objects. VOC's segmentation PNGs are not read (boxes only).

Each box is an :class:`~morphoscope.formats.common.AnnotatedObject` whose ``rasterize`` is a
:class:`Box`, so it rasterises as a rectangle (instance training) and keeps its exact corners
(detection, box evaluation: :func:`boxes_of`).
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.formats.common import AnnotatedObject, ImageFinder, shown
from morphoscope.formats.shapes import box_mask

__all__ = ["Box", "boxes_of", "is_voc_split", "is_voc_xml", "load_voc"]

#: how far (pixels) a VOC box may pass the image edge and still be clipped to it
VOC_EDGE_TOLERANCE = 1.0


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in corner coordinates (``x1``, ``y1`` exclusive for whole pixels).
    Called as ``box(height, width)`` it is the object's mask: the pixels the box covers,
    rasterised as COCO box polygons are (pycocotools)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __call__(self, height: int, width: int) -> np.ndarray:
        x0, y0, x1, y1 = self.x0, self.y0, self.x1, self.y1
        return box_mask([x0, y0, x1, y0, x1, y1, x0, y1], height, width)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


# ---- sniffing --------------------------------------------------------------------------------

def _root_tag(path: Path) -> str | None:
    try:
        for _, el in ET.iterparse(path, events=("start",)):
            return el.tag
    except (ET.ParseError, OSError):
        return None
    return None


def is_voc_xml(path: Path) -> bool:
    """Whether ``path`` is a VOC annotation (an XML file whose root is ``<annotation>``)."""
    return Path(path).suffix.lower() == ".xml" and _root_tag(Path(path)) == "annotation"


def _voc_root_of_split(path: Path) -> Path | None:
    """The VOC root of a split list ``ROOT/ImageSets/<Main|...>/NAME.txt``, else None."""
    path = Path(path)
    if path.suffix.lower() != ".txt" or len(path.parents) < 3:
        return None
    root = path.parent.parent.parent
    return root if path.parent.parent.name == "ImageSets" and (root / "Annotations").is_dir() else None


def is_voc_split(path: Path) -> bool:
    """Whether ``path`` is a split list of a VOC folder (``ROOT/ImageSets/Main/NAME.txt``)."""
    return _voc_root_of_split(Path(path)) is not None


def is_voc_folder(path: Path) -> bool:
    """A VOC root (``Annotations/`` of XML files) or a folder whose XML files are VOC files."""
    path = Path(path)
    ann = path / "Annotations"
    if ann.is_dir():
        first = next((p for p in sorted(ann.glob("*.xml"))), None)
        return first is not None and is_voc_xml(first)
    xmls = sorted(path.glob("*.xml"))
    return bool(xmls) and all(is_voc_xml(p) for p in xmls[:3])


# ---- reading ---------------------------------------------------------------------------------

def _text(el, tag: str) -> str | None:
    child = el.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _number(box_el, tag: str, where: str, path: Path) -> float:
    raw = _text(box_el, tag)
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise InputError(f"{where} has {tag}={raw!r}, not a number", path=shown(path)) from None
    if not math.isfinite(v):
        raise InputError(f"{where} has a non-finite {tag} ({raw})", path=shown(path))
    return v


def _parse(path: Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"not valid XML ({exc})", path=shown(path)) from None
    if root.tag != "annotation":
        raise InputError(f"not a Pascal VOC annotation (root <{root.tag}>, expected <annotation>)",
                         path=shown(path))
    return root


def _declared_size(root, path: Path) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    try:
        w, h = int(float(_text(size, "width") or 0)), int(float(_text(size, "height") or 0))
    except ValueError:
        raise InputError("<size> holds a width or height that is not a number", path=shown(path)) from None
    return (h, w) if w > 0 and h > 0 else None  # some tools write 0: then the image decides


def _read_objects(root, path: Path, index: dict[str, int], size: tuple[int, int] | None,
                  dropped: list[str]) -> list[AnnotatedObject]:
    objects = []
    for n, obj in enumerate(root.findall("object"), start=1):
        name = _text(obj, "name")
        where = f"object {n}" + (f" ({name})" if name else "")
        if not name:
            raise InputError(f"{where} has no <name>", path=shown(path))
        if name not in index:
            raise InputError(f"{where}: class '{name}' is not in the label map "
                             f"({', '.join(index)})", path=shown(path))
        box_el = obj.find("bndbox")
        if box_el is None:
            raise InputError(f"{where} has no <bndbox>", path=shown(path))
        xmin, ymin, xmax, ymax = (_number(box_el, t, where, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise InputError(f"{where} has xmax < xmin or ymax < ymin ({xmin:g}, {ymin:g}, {xmax:g}, "
                             f"{ymax:g})", path=shown(path))
        if xmax == xmin or ymax == ymin:
            dropped.append(f"{shown(path).name} ({where}: {xmin:g},{ymin:g},{xmax:g},{ymax:g})")
            continue
        box = (xmin - 1.0, ymin - 1.0, xmax, ymax)
        if size is not None:
            box = _inside(box, size, where, path)
        objects.append(AnnotatedObject(index[name], where, Box(*box)))
    return objects


def _inside(box, size, where: str, path: Path, *, tolerance: float = VOC_EDGE_TOLERANCE):
    """``box`` clipped to the image when it passes an edge by at most ``tolerance`` pixels."""
    h, w = size
    x0, y0, x1, y1 = box
    if x0 < -tolerance or y0 < -tolerance or x1 > w + tolerance or y1 > h + tolerance:
        raise InputError(
            f"{where} lies outside its {w}x{h} image: xmin..xmax {x0 + 1:g}..{x1:g}, ymin..ymax "
            f"{y0 + 1:g}..{y1:g} (VOC pixels 1..{w} and 1..{h})", path=shown(path))
    return (max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h)))


def _class_names(root: Path | None, xml_files: list[Path]) -> list[str]:
    labelmap = root / "labelmap.txt" if root is not None else None
    if labelmap is not None and labelmap.is_file():
        names = []
        for line in labelmap.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name = line.split(":", 1)[0].strip()
            if name and name.lower() != "background" and name not in names:
                names.append(name)
        if not names:
            raise InputError("names no class", path=shown(labelmap))
        return names
    names = set()
    for p in xml_files:
        for obj in _parse(p).findall("object"):
            if (name := _text(obj, "name")):
                names.add(name)
    return sorted(names)


def load_voc(path: str | Path, *, images: str | Path | None = None, class_name: str = "object"):
    """Read VOC boxes: a VOC folder, a folder of VOC XML files, a split list
    ``ImageSets/Main/NAME.txt`` of a VOC folder, or one XML file (see the module docstring).
    Returns an :class:`~morphoscope.formats.dataset.InstanceDataset` with ``boxes_only=True``;
    ``class_name`` is used only when no file names any class."""
    from morphoscope.formats.dataset import InstanceDataset, Sample
    from morphoscope.formats.splits import read_split_list

    path = Path(path)
    wanted = None
    if path.is_file() and path.suffix.lower() == ".txt":
        root = _voc_root_of_split(path)
        if root is None:
            raise InputError("a split list must sit in ImageSets/<folder>/ of a VOC folder that has "
                             "Annotations/", path=path)
        wanted = read_split_list(path)
        ann_dir = root / "Annotations"
    elif path.is_file():  # one file; in ROOT/Annotations/ it takes the folder's classes and images
        ann_dir = path.parent
        root = ann_dir.parent if ann_dir.name == "Annotations" else None
    else:
        root = path
        ann_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    all_xml = sorted(ann_dir.glob("*.xml")) if root is not None or not path.is_file() else [path]
    if path.is_file() and wanted is None:
        xml_files = [path]
    elif wanted is not None:
        by_id = {p.stem: p for p in all_xml}
        missing = [n for n in wanted if n not in by_id]
        if missing:
            raise InputError(f"{len(missing)} id(s) of the split list have no {ann_dir.name}/ID.xml: "
                             f"{', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""), path=path)
        xml_files = [by_id[n] for n in wanted]
    else:
        xml_files = all_xml
    if not xml_files:
        raise InputError("no VOC annotation files (*.xml) found", path=ann_dir)
    names = _class_names(root, all_xml) or [class_name]
    index = {n: k for k, n in enumerate(names, start=1)}
    image_dir = Path(images) if images is not None else (
        root / "JPEGImages" if root is not None and (root / "JPEGImages").is_dir() else None)
    samples, dropped, seen = [], [], set()
    finder = None
    for xml_path in xml_files:
        ann = _parse(xml_path)
        if finder is None or finder.annotation_file.parent != xml_path.parent:
            finder = ImageFinder(xml_path, image_dir)
        reference = _text(ann, "filename") or f"{xml_path.stem}.jpg"
        found = finder.find(reference) or finder.find(f"{xml_path.stem}.jpg")
        if found is None:
            raise finder.missing(reference, f"{xml_path.name}")
        image_path, _ = found
        name = image_path.stem
        if name in seen:
            raise InputError(f"two annotation files name the image '{image_path.name}'", path=shown(xml_path))
        seen.add(name)
        size = _declared_size(ann, xml_path)
        objects = _read_objects(ann, xml_path, index, size, dropped)
        samples.append(Sample(name=name, image_path=image_path, layout="voc", objects=objects,
                              annotation_path=xml_path, declared_size=size))
    if dropped:
        warnings.warn(f"{len(dropped)} zero-size box(es) (xmax == xmin or ymax == ymin) were dropped: "
                      + "; ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""), stacklevel=3)
    return InstanceDataset(path, "voc", samples, names, boxes_only=True)


# ---- boxes of any dataset ------------------------------------------------------------------

def boxes_of(sample, image_shape=None) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (N, 4) float32 x0, y0, x1, y1 corners, classes (N,) int64 1..K)`` of a
    :class:`~morphoscope.formats.dataset.Sample` of any layout: the annotated boxes as written
    (VOC, box-only COCO), else each mask's extent. ``image_shape`` (the image's ``(H, W, ...)``)
    checks the size the annotation file declares; without it a box file is read without its
    image."""
    objects = sample.objects
    if objects is not None and all(isinstance(o.rasterize, Box) for o in objects):
        if image_shape is not None and sample.declared_size is not None and (
                tuple(sample.declared_size) != tuple(image_shape[:2])):
            dh, dw = sample.declared_size
            raise InputError(f"image '{sample.name}' is declared {dh}x{dw} but the file "
                             f"{shown(sample.image_path)} is {image_shape[0]}x{image_shape[1]}",
                             path=shown(sample.annotation_path))
        if image_shape is not None and sample.declared_size is None:  # no <size>: check now
            for o in objects:
                _inside(o.rasterize.xyxy, tuple(image_shape[:2]), o.where, sample.annotation_path)
        boxes = np.array([o.rasterize.xyxy for o in objects], np.float32).reshape(-1, 4)
        return boxes, np.array([o.class_index for o in objects], np.int64)
    if objects is not None:  # masks of an annotation file, one at a time
        if image_shape is None:
            image_shape = sample.load_image().shape
        h, w = image_shape[:2]
        boxes, classes = [], []
        for o in objects:
            if isinstance(o.rasterize, Box):
                boxes.append(o.rasterize.xyxy)
            else:
                m = o.rasterize(h, w)
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                if not len(rows):
                    raise InputError(f"{o.where} has an empty mask", path=shown(sample.annotation_path))
                boxes.append((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
            classes.append(o.class_index)
        return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)
    from scipy import ndimage

    labels, cls = sample.load_label_image(image_shape)
    boxes, classes = [], []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
        classes.append(cls.get(k, 1))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)
