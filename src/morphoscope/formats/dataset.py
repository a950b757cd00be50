"""One in-memory view of an annotated instance dataset, whatever layout it came in.

These layouts are read, and :func:`detect_layout` tells them apart (docs/annotations.md lists
which export of which annotation tool gives which):

``labels``  a folder with ``images/NAME.ext`` and ``labels/NAME.png|tif`` instance-label images
            (0 = background, 1..N = one object each; the BBBC039 layout). One class, unless a
            ``labels/classes.json`` maps ``{"names": [...], "objects": {NAME: {label: class}}}``.
``kaggle``  ``<id>/images/<id>.png`` and ``<id>/masks/*.png``, one binary mask per object (the
            Kaggle DSB2018 layout). One class.
``coco``    a COCO JSON file (also Label Studio's COCO, COCO_WITH_IMAGES and BRUSH_TO_COCO, and
            CVAT's COCO 1.0). Categories with any ids become classes 1..K in the order of their
            ids.
``labelstudio``      Label Studio's JSON or JSON_MIN export (:mod:`.labelstudio`).
``labelstudio-png``  Label Studio's BRUSH_TO_PNG export, with the project's JSON export beside it.
``cvat``    CVAT for images 1.1 XML (:mod:`.cvat`).
``voc``     Pascal VOC boxes: a folder with ``Annotations/*.xml`` (+ ``JPEGImages/``), a folder of
            VOC XML files, one of its split lists ``ImageSets/Main/NAME.txt`` (those images
            only) or one XML file (:mod:`.voc`). Boxes only (``boxes_only``).

Any of them may come as the zip file the tool hands out. The images of an annotation file are
found by name (:class:`~.common.ImageFinder`): in the ``images`` folder given, else beside the file
or in ``images/`` beside it; Label Studio's upload prefix is stripped, so samples are named after
the user's images. A Label Studio labelling config (an ``.xml`` file with a ``<View>`` root) beside
an export gives the class names and their order.

Images without objects are valid samples. Problems are reported as :class:`InputError` naming the
file: images without labels, label/image size mismatches, empty masks, undeclared categories,
duplicate ids, non-finite or out-of-image coordinates.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.formats.coco import is_label_studio_coco, load_coco
from morphoscope.formats.common import (
    AnnotatedObject,
    ImageFinder,
    extract_zip,
    reference_basename,
    shown,
    strip_upload_prefix,
)
from morphoscope.formats.shapes import (
    ShapeError,
    coco_rle_mask,
    pixel_centre_polygons_mask,
    polygons_mask,
)
from morphoscope.formats.voc import Box, is_voc_folder, is_voc_split, load_voc
from morphoscope.io.images import IMAGE_SUFFIXES, label_file_of, read_image, read_label_image

LABEL_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class Sample:
    """One image and its objects; pixel data is read only when asked for."""

    name: str
    image_path: Path
    layout: str
    label_path: Path | None = None
    label_classes: dict[int, int] | None = None  # label value -> class index (labels layout)
    mask_paths: list[Path] = field(default_factory=list)  # kaggle layout
    coco_image: dict | None = None
    coco_anns: list[dict] = field(default_factory=list)
    coco_path: Path | None = None
    cat_to_class: dict[int, int] | None = None
    # annotation-file layouts (coco, labelstudio, labelstudio-png, cvat): the objects, the file
    # they come from and the image size that file declares
    objects: list[AnnotatedObject] | None = None
    annotation_path: Path | None = None
    declared_size: tuple[int, int] | None = None

    def load_image(self) -> np.ndarray:
        try:
            img = read_image(self.image_path)
        except InputError as exc:  # name files unpacked from a zip by the zip
            raise InputError(exc.message, path=shown(exc.path)) from None
        if img.ndim == 3 and img.shape[-1] not in (1, 2, 3, 4):
            raise InputError(
                f"image has shape {img.shape}; instance segmentation takes 2D grey or RGB images "
                "(select a page of a stack first)", path=shown(self.image_path))
        return img

    def _check_shape(self, shape, image_shape, where: Path) -> None:
        if tuple(shape) != tuple(image_shape[:2]):
            raise InputError(
                f"size {tuple(shape)} does not match its image {self.image_path.name} "
                f"{tuple(image_shape[:2])}", path=where)

    def load_instances(self, image_shape=None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``masks (N, H, W) bool`` and ``classes (N,) int64`` (classes start at 1)."""
        if image_shape is None:
            image_shape = self.load_image().shape
        h, w = image_shape[:2]
        if self.layout == "labels":
            labels = read_label_image(self.label_path)
            self._check_shape(labels.shape, image_shape, self.label_path)
            ids = np.unique(labels)
            ids = ids[ids > 0]
            masks = labels[None] == ids[:, None, None] if len(ids) else np.zeros((0, h, w), bool)
            mapping = self.label_classes or {}
            classes = np.array([mapping.get(int(i), 1) for i in ids], np.int64)
            return masks, classes
        if self.layout == "kaggle":
            masks = []
            for p in self.mask_paths:
                m = read_image(p)
                if m.ndim == 3:
                    m = m[..., 0]
                self._check_shape(m.shape, image_shape, p)
                m = m > 0
                if not m.any():
                    raise InputError("mask is empty (no foreground pixel)", path=p)
                masks.append(m)
            masks = np.stack(masks) if masks else np.zeros((0, h, w), bool)
            return masks, np.ones(len(masks), np.int64)
        return self._load_objects(h, w)

    def _load_objects(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        masks, classes = [], []
        for m, c in self._object_masks(h, w):
            masks.append(m)
            classes.append(c)
        masks = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        return masks, np.asarray(classes, np.int64)

    def _object_masks(self, h: int, w: int):
        """Yield ``(mask, class)`` per object, rasterised one at a time."""
        where = shown(self.annotation_path)
        if self.declared_size is not None and tuple(self.declared_size) != (h, w):
            dh, dw = self.declared_size
            raise InputError(
                f"image '{self.name}' is declared {dh}x{dw} but the file {shown(self.image_path)} is "
                f"{h}x{w}", path=where)
        for obj in self.objects or []:
            try:
                m = obj.rasterize(h, w)
            except ShapeError as exc:
                raise InputError(f"{obj.where} on '{self._file_label()}' {exc}", path=where) from None
            if not m.any():
                raise InputError(f"{obj.where} on '{self._file_label()}' has an empty mask", path=where)
            yield m, obj.class_index

    def _file_label(self) -> str:
        return self.coco_image["file_name"] if self.coco_image is not None else self.image_path.name

    def load_label_image(self, image_shape=None) -> tuple[np.ndarray, dict[int, int]]:
        """Instance labels ``(H, W)`` and ``{label: class}``; overlaps go to the later object."""
        if self.layout == "labels":
            if image_shape is None:
                image_shape = self.load_image().shape
            labels = read_label_image(self.label_path)
            self._check_shape(labels.shape, image_shape, self.label_path)
            ids = np.unique(labels)
            mapping = self.label_classes or {}
            return labels, {int(i): mapping.get(int(i), 1) for i in ids if i > 0}
        if self.objects is not None:  # paint one object at a time: memory of one image, not N
            h, w = (image_shape if image_shape is not None else self.load_image().shape)[:2]
            labels = np.zeros((h, w), np.uint32 if len(self.objects) > 65535 else np.uint16)
            classes = {}
            for i, (m, c) in enumerate(self._object_masks(h, w), start=1):
                labels[m] = i
                classes[i] = int(c)
            return labels, classes
        masks, classes = self.load_instances(image_shape)
        h, w = masks.shape[1:] if len(masks) else (image_shape[:2] if image_shape is not None else self.load_image().shape[:2])
        labels = np.zeros((h, w), np.uint32 if len(masks) > 65535 else np.uint16)
        for i, m in enumerate(masks, start=1):
            labels[m] = i
        return labels, {i: int(c) for i, c in enumerate(classes, start=1)}

    def load_class_planes(self, n_classes: int, image_shape=None) -> tuple[np.ndarray, dict[int, int]]:
        """One instance-label plane per class, ``(n_classes, H, W)``, and ``{label: class}``:
        plane ``k - 1`` holds the objects of class ``k`` under the numbers of
        :meth:`load_label_image`, so an object of one class inside an object of another (an
        organelle in its cell) is kept whole in its own plane. Within a class, overlaps go to the
        later object, as in :meth:`load_label_image`."""
        if self.objects is None and self.layout != "kaggle":  # a label image: nothing overlaps
            labels, classes = self.load_label_image(image_shape)
            planes = np.zeros((n_classes,) + labels.shape, labels.dtype)
            lut = np.zeros(int(labels.max(initial=0)) + 1, np.int64)
            for k, c in classes.items():
                lut[k] = c
            cls = lut[labels]
            for c in range(1, n_classes + 1):
                planes[c - 1] = np.where(cls == c, labels, 0)
            return planes, classes
        if self.objects is not None:
            h, w = (image_shape if image_shape is not None else self.load_image().shape)[:2]
            pairs = self._object_masks(h, w)
            n = len(self.objects)
        else:
            masks, cls = self.load_instances(image_shape)
            h, w = masks.shape[1:] if len(masks) else (image_shape if image_shape is not None
                                                       else self.load_image().shape)[:2]
            pairs, n = zip(masks, cls), len(masks)
        planes = np.zeros((n_classes, h, w), np.uint32 if n > 65535 else np.uint16)
        classes = {}
        for i, (m, c) in enumerate(pairs, start=1):
            if not 1 <= int(c) <= n_classes:
                raise InputError(f"object {i} of '{self.name}' has class {int(c)}, not 1..{n_classes}",
                                 path=shown(self.annotation_path or self.image_path))
            planes[int(c) - 1][m] = i
            classes[i] = int(c)
        return planes, classes

    def count_objects(self) -> int:
        """Number of objects; annotation files are counted without rasterising them."""
        if self.objects is not None:
            return len(self.objects)
        return len(self.load_instances()[1])


@dataclass
class InstanceDataset:
    """Samples of one dataset with its class names (class index k is ``class_names[k-1]``)."""

    root: Path
    layout: str
    samples: list[Sample]
    class_names: list[str]
    category_ids: list[int] | None = None  # COCO category id of each class, when from COCO
    boxes_only: bool = False  # every object is a box without a mask (VOC, box-only COCO)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def by_name(self) -> dict[str, Sample]:
        return {s.name: s for s in self.samples}

    def count_objects(self) -> int:
        """Number of annotated objects (reads every label file; annotation files are counted)."""
        return sum(s.count_objects() for s in self.samples)

    def has_objects(self) -> bool:
        """Whether any sample has an object (stops at the first one found)."""
        for s in self.samples:
            if s.objects is not None:
                if s.objects:
                    return True
            elif s.layout == "kaggle":
                if s.mask_paths:
                    return True
            elif s.count_objects():
                return True
        return False

    def require_objects(self, *, purpose: str = "training") -> None:
        """Raise :class:`InputError` naming the dataset when it has no annotated object at all
        (an export of a project nobody annotated yet); ``convert`` only warns."""
        if not self.has_objects():
            raise InputError(f"no annotated objects in its {len(self.samples)} image(s), so it cannot "
                             f"be used for {purpose}; was the export made before anything was "
                             "annotated?", path=shown(self.root))


# Label Studio's BRUSH_TO_PNG names each mask after its task and annotation
BRUSH_PNG = re.compile(r"^task-\d+-annotation-\d+-by-.*\.png$")


def _sniff(path: Path) -> str | None:
    """What an annotation file is, from its first bytes: ``coco`` (a JSON object),
    ``labelstudio`` (a JSON list: Label Studio's JSON / JSON_MIN), ``cvat`` (an ``<annotations>``
    XML), ``labelstudio-config`` (a ``<View>`` XML), or None."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".xml"):
        return None
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix == ".json":
        return {b"{"[0]: "coco", b"["[0]: "labelstudio"}.get(head[0]) if head else None
    text = re.sub(rb"<\?xml[^>]*\?>|<!--.*?-->", b"", head, flags=re.S).lstrip()
    if text.startswith(b"<annotations"):
        return "cvat"
    if text.startswith(b"<annotation") and text[len(b"<annotation"):][:1] in (b">", b" ", b"\n", b"\r", b"\t"):
        return "voc"
    if text.lower().startswith(b"<view"):
        return "labelstudio-config"
    return None


def _resolve(path: Path) -> tuple[str, Path]:
    """``(layout, the file or folder to read)`` for a dataset path; zips are unpacked first."""
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return _resolve_dir(extract_zip(path), shown_as=path)
        if path.suffix.lower() == ".txt" and is_voc_split(path):
            return "voc", path
        kind = _sniff(path)
        if kind == "labelstudio-config":
            raise InputError("this is a Label Studio labelling config, not an export: give the export "
                             "(JSON, JSON_MIN, COCO, ... or its zip) and keep this file beside it", path=path)
        if kind is None:
            raise InputError("expected an annotation export (COCO or Label Studio .json, CVAT .xml, "
                             "or the .zip a tool hands out) or a dataset folder", path=path)
        return kind, path
    if not path.is_dir():
        raise InputError("dataset not found", path=path)
    return _resolve_dir(path, shown_as=path)


def _resolve_dir(path: Path, *, shown_as: Path) -> tuple[str, Path]:
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return "labels", path
    if any(BRUSH_PNG.match(p.name) for p in path.iterdir()):
        return "labelstudio-png", path
    if is_voc_folder(path):
        return "voc", path
    files = [p for p in sorted(path.glob("*.json")) + sorted(path.glob("*.xml"))
             + sorted((path / "annotations").glob("*.json")) if p.is_file()]
    exports = [(k, p) for p in files if (k := _sniff(p)) in ("coco", "labelstudio", "cvat")]
    if len(exports) == 1:
        return exports[0]
    if len(exports) > 1:
        names = ", ".join(p.relative_to(path).as_posix() for _, p in exports)
        raise InputError(f"holds several annotation files ({names}); name the one to read", path=shown_as)
    subdirs = [d for d in path.iterdir() if d.is_dir()]
    if subdirs and all((d / "images").is_dir() for d in subdirs[:20]):
        return "kaggle", path
    raise InputError(
        "cannot tell the dataset layout: expected images/ + labels/ (instance-label images), "
        "<id>/images + <id>/masks (Kaggle), an annotation export (COCO or Label Studio .json, "
        "CVAT .xml) or the .zip a tool hands out", path=shown_as)


def detect_layout(path: str | Path) -> str:
    """The layout of the dataset at ``path`` (see the module docstring)."""
    return _resolve(Path(path))[0]


def load_instance_dataset(path: str | Path, *, class_name: str = "nucleus",
                          images: str | Path | None = None) -> InstanceDataset:
    """Read an annotated dataset in any layout (see the module docstring).

    ``images`` is the folder of the user's images, for exports that hold only annotations (Label
    Studio's JSON, JSON_MIN and COCO; CVAT's exports without images); images are matched by name.
    ``class_name`` names the one class of layouts without class names, and regions without label.
    """
    path = Path(path)
    layout, target = _resolve(path)
    images = Path(images) if images is not None else None
    if layout == "labels":
        return _load_labels_layout(target, class_name)
    if layout == "kaggle":
        return _load_kaggle_layout(target, class_name)
    if layout == "labelstudio":
        from morphoscope.formats.labelstudio import load_labelstudio_json

        return load_labelstudio_json(target, images=images, class_name=class_name)
    if layout == "labelstudio-png":
        from morphoscope.formats.labelstudio import load_labelstudio_brush_png

        return load_labelstudio_brush_png(target, images=images, class_name=class_name)
    if layout == "cvat":
        from morphoscope.formats.cvat import load_cvat_xml

        return load_cvat_xml(target, images=images)
    if layout == "voc":
        return load_voc(target, images=images, class_name=class_name)
    return _load_coco_layout(target, images=images, class_name=class_name)


def _load_labels_layout(root: Path, class_name: str) -> InstanceDataset:
    img_dir, lab_dir = root / "images", root / "labels"
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    labels = {p.stem: p for p in lab_dir.iterdir() if p.suffix.lower() in LABEL_SUFFIXES}
    names, per_object = [class_name], {}
    sidecar = lab_dir / "classes.json"
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
            names = list(meta["names"])
            per_object = {k: {int(l): int(c) for l, c in v.items()} for k, v in meta.get("objects", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # ValueError: bad JSON too
            raise InputError('not a classes file {"names": [...], "objects": {image: {label: class}}} '
                             f"({type(exc).__name__}: {exc})", path=sidecar) from None
    # labels/NAME.png, or NAME_labels.png, NAME_masks.png, Cellpose's NAME_cp_masks.png
    paired = {p.stem: label_file_of(p.stem, labels) for p in images}
    missing = [p.name for p in images if paired[p.stem] is None]
    if missing:
        raise InputError(
            f"{len(missing)} image(s) have no label image in {lab_dir}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else ""), path=img_dir)
    orphans = sorted(set(labels) - {lp.stem for lp in paired.values()})
    if orphans:
        raise InputError(f"label image(s) without an image in {img_dir}: {', '.join(orphans[:5])}", path=lab_dir)
    if not images:
        raise InputError("no images found", path=img_dir)
    samples = [Sample(name=p.stem, image_path=p, layout="labels", label_path=paired[p.stem],
                      label_classes=per_object.get(p.stem)) for p in images]
    return InstanceDataset(root, "labels", samples, names)


def _load_kaggle_layout(root: Path, class_name: str) -> InstanceDataset:
    samples = []
    for d in sorted(x for x in root.iterdir() if x.is_dir()):
        imgs = sorted(p for p in (d / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(imgs) != 1:
            raise InputError(f"expected exactly one image in images/, found {len(imgs)}", path=d / "images")
        mask_dir = d / "masks"
        masks = sorted(p for p in mask_dir.glob("*") if p.suffix.lower() in LABEL_SUFFIXES) if mask_dir.is_dir() else []
        samples.append(Sample(name=d.name, image_path=imgs[0], layout="kaggle", mask_paths=masks))
    if not samples:
        raise InputError("no <id>/images folders found", path=root)
    return InstanceDataset(root, "kaggle", samples, [class_name])


def _polygon_convention(poly, width: int, height: int) -> str:
    """How a polygon of Label Studio's BRUSH_TO_COCO was made: ``centre`` (an OpenCV contour of a
    brush mask: integer vertices, steps along rows, columns or diagonals, at least one diagonal),
    ``corner`` (a drawn polygon, rounded: anything else, or a vertex on the far image edge, where
    no pixel centre lies) or ``either`` (integer steps along rows and columns only)."""
    xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
    if (xs != np.round(xs)).any() or (ys != np.round(ys)).any() or xs.max() >= width or ys.max() >= height:
        return "corner"
    dx, dy = np.abs(np.diff(xs, append=xs[0])), np.abs(np.diff(ys, append=ys[0]))
    if not ((dx == 0) | (dy == 0) | (dx == dy)).all():
        return "corner"
    return "centre" if ((dx == dy) & (dx > 0)).any() else "either"


def _load_coco_layout(path: Path, *, images: Path | None = None, class_name: str = "nucleus") -> InstanceDataset:
    data = load_coco(path)
    where = shown(path)
    origin = is_label_studio_coco(data)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_to_class = {c["id"]: k for k, c in enumerate(cats, start=1)}
    by_image: dict = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    conventions: dict = {}
    if origin == "BRUSH_TO_COCO":
        # brush masks come as pixel-centre contours; polygons of polygon projects as rounded
        # area polygons; contours along rows and columns only follow the file's majority
        size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
        for a in data["annotations"]:
            if isinstance(a.get("segmentation"), list) and a["segmentation"]:
                kinds = {_polygon_convention(p, *size[a["image_id"]]) for p in a["segmentation"]}
                conventions[id(a)] = "corner" if "corner" in kinds else ("centre" if "centre" in kinds else "either")
        votes = list(conventions.values())
        majority = "centre" if votes.count("centre") > votes.count("corner") else "corner"
        conventions = {k: (majority if v == "either" else v) for k, v in conventions.items()}

    finder = ImageFinder(path, images)
    samples, seen = [], set()
    boxes_only = keypoints_only = 0
    for im in data["images"]:
        found = finder.find(im["file_name"])
        if found is None:
            raise finder.missing(im["file_name"], f"image id {im['id']}")
        image_path, found_name = found
        # Label Studio's own exports name the upload, never the user's file: strip its prefix
        label = strip_upload_prefix(reference_basename(im["file_name"])) if origin else found_name
        name = Path(label).stem
        if name in seen:
            name = f"{name}_{im['id']}"
        seen.add(name)
        objects = []
        for a in by_image.get(im["id"], []):
            seg, what = a.get("segmentation"), f"annotation {a.get('id')}"
            if isinstance(seg, dict):
                fn = partial(coco_rle_mask, seg)
            elif seg:
                fn = partial(pixel_centre_polygons_mask if conventions.get(id(a)) == "centre" else polygons_mask, seg)
            elif "keypoints" in a:
                keypoints_only += 1
                continue
            else:  # a box without a mask: the box is the object
                x, y, bw, bh = a["bbox"]
                boxes_only += 1
                fn = Box(x, y, x + bw, y + bh)  # rasterised as box_mask; keeps the corners
            objects.append(AnnotatedObject(cat_to_class[a["category_id"]], what, fn))
        samples.append(Sample(name=name, image_path=image_path, layout="coco", coco_image=im,
                              coco_anns=by_image.get(im["id"], []), coco_path=path, cat_to_class=cat_to_class,
                              objects=objects, annotation_path=path, declared_size=(im["height"], im["width"])))
    if boxes_only:
        warnings.warn(f"{where}: {boxes_only} annotation(s) have a box but no mask; each box is used as "
                      "its object's mask", stacklevel=3)
    if keypoints_only:
        warnings.warn(f"{where}: {keypoints_only} keypoint annotation(s) are not object outlines and were "
                      "left out", stacklevel=3)
    if not samples:
        raise InputError("the export lists no images (Label Studio's BRUSH_TO_COCO leaves out images "
                         "without brush annotations)" if origin else "the COCO file lists no images", path=where)
    names = [c["name"] for c in cats] or [class_name]
    return InstanceDataset(path, "coco", samples, names, [c["id"] for c in cats] or None,
                           boxes_only=bool(boxes_only) and boxes_only == len(data["annotations"]))
