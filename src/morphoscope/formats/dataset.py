"""One in-memory view of an annotated instance dataset, whatever layout it came in.

Three layouts are read, and :func:`detect_layout` tells them apart:

``labels``  a folder with ``images/NAME.ext`` and ``labels/NAME.png|tif`` instance-label images
            (0 = background, 1..N = one object each; the BBBC039 layout). One class, unless a
            ``labels/classes.json`` maps ``{"names": [...], "objects": {NAME: {label: class}}}``.
``kaggle``  ``<id>/images/<id>.png`` and ``<id>/masks/*.png``, one binary mask per object (the
            Kaggle DSB2018 layout). One class.
``coco``    a COCO JSON file; image files are found beside it or in an ``images/`` folder beside
            it. Categories with any ids become classes 1..K in the order of their ids.

Images without objects are valid samples. Problems are reported as :class:`InputError` naming the
file: images without labels, label/image size mismatches, empty masks, undeclared categories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError
from morphoscope.formats.coco import load_coco, segmentation_to_mask
from morphoscope.io.images import IMAGE_SUFFIXES, read_image, read_label_image

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

    def load_image(self) -> np.ndarray:
        img = read_image(self.image_path)
        if img.ndim == 3 and img.shape[-1] not in (1, 2, 3, 4):
            raise InputError(
                f"image has shape {img.shape}; instance segmentation takes 2D grey or RGB images "
                "(select a page of a stack first)", path=self.image_path)
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
        # coco
        ci = self.coco_image
        if (ci["height"], ci["width"]) != (h, w):
            raise InputError(
                f"image '{ci['file_name']}' is declared {ci['height']}x{ci['width']} but the file "
                f"{self.image_path} is {h}x{w}", path=self.coco_path)
        masks, classes = [], []
        for ann in self.coco_anns:
            m = segmentation_to_mask(ann["segmentation"], h, w).astype(bool)
            if not m.any():
                raise InputError(
                    f"annotation {ann.get('id')} on '{ci['file_name']}' has an empty mask",
                    path=self.coco_path)
            masks.append(m)
            classes.append(self.cat_to_class[ann["category_id"]])
        masks = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        return masks, np.asarray(classes, np.int64)

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
        masks, classes = self.load_instances(image_shape)
        h, w = masks.shape[1:] if len(masks) else (image_shape[:2] if image_shape is not None else self.load_image().shape[:2])
        labels = np.zeros((h, w), np.uint32 if len(masks) > 65535 else np.uint16)
        for i, m in enumerate(masks, start=1):
            labels[m] = i
        return labels, {i: int(c) for i, c in enumerate(classes, start=1)}


@dataclass
class InstanceDataset:
    """Samples of one dataset with its class names (class index k is ``class_names[k-1]``)."""

    root: Path
    layout: str
    samples: list[Sample]
    class_names: list[str]
    category_ids: list[int] | None = None  # COCO category id of each class, when from COCO

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def by_name(self) -> dict[str, Sample]:
        return {s.name: s for s in self.samples}

    def count_objects(self) -> int:
        """Number of annotated objects (reads every label file)."""
        return sum(len(s.load_instances()[1]) for s in self.samples)


def detect_layout(path: str | Path) -> str:
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise InputError("expected a COCO .json file or a dataset folder", path=path)
    if not path.is_dir():
        raise InputError("dataset not found", path=path)
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return "labels"
    jsons = sorted(path.glob("*.json"))
    if len(jsons) == 1 and (path / "images").is_dir():
        return "coco"
    subdirs = [d for d in path.iterdir() if d.is_dir()]
    if subdirs and all((d / "images").is_dir() for d in subdirs[:20]):
        return "kaggle"
    raise InputError(
        "cannot tell the dataset layout: expected images/ + labels/ (instance-label images), "
        "<id>/images + <id>/masks (Kaggle), or a COCO .json file", path=path)


def load_instance_dataset(path: str | Path, *, class_name: str = "nucleus") -> InstanceDataset:
    """Read an annotated dataset in any of the three layouts (see module docstring)."""
    path = Path(path)
    layout = detect_layout(path)
    if layout == "labels":
        return _load_labels_layout(path, class_name)
    if layout == "kaggle":
        return _load_kaggle_layout(path, class_name)
    if path.is_dir():
        path = sorted(path.glob("*.json"))[0]
    return _load_coco_layout(path)


def _load_labels_layout(root: Path, class_name: str) -> InstanceDataset:
    img_dir, lab_dir = root / "images", root / "labels"
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    labels = {p.stem: p for p in lab_dir.iterdir() if p.suffix.lower() in LABEL_SUFFIXES}
    names, per_object = [class_name], {}
    sidecar = lab_dir / "classes.json"
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        names = list(meta["names"])
        per_object = {k: {int(l): int(c) for l, c in v.items()} for k, v in meta.get("objects", {}).items()}
    missing = [p.name for p in images if p.stem not in labels]
    if missing:
        raise InputError(
            f"{len(missing)} image(s) have no label image in {lab_dir}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else ""), path=img_dir)
    orphans = sorted(set(labels) - {p.stem for p in images})
    if orphans:
        raise InputError(f"label image(s) without an image in {img_dir}: {', '.join(orphans[:5])}", path=lab_dir)
    if not images:
        raise InputError("no images found", path=img_dir)
    samples = [Sample(name=p.stem, image_path=p, layout="labels", label_path=labels[p.stem],
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


def _resolve_coco_image(json_path: Path, file_name: str) -> Path:
    candidates = [json_path.parent / file_name, json_path.parent / "images" / file_name,
                  json_path.parent / "images" / Path(file_name).name, json_path.parent / Path(file_name).name]
    for c in candidates:
        if c.is_file():
            return c
    raise InputError(f"image '{file_name}' listed in the COCO file was not found beside it or in images/", path=json_path)


def _load_coco_layout(path: Path) -> InstanceDataset:
    data = load_coco(path)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_to_class = {c["id"]: k for k, c in enumerate(cats, start=1)}
    anns: dict[int, list] = {}
    for a in data["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    samples = []
    seen = set()
    for im in data["images"]:
        p = _resolve_coco_image(path, im["file_name"])
        name = Path(im["file_name"]).stem
        if name in seen:
            name = f"{name}_{im['id']}"
        seen.add(name)
        samples.append(Sample(name=name, image_path=p, layout="coco", coco_image=im,
                              coco_anns=anns.get(im["id"], []), coco_path=path, cat_to_class=cat_to_class))
    return InstanceDataset(path, "coco", samples, [c["name"] for c in cats], [c["id"] for c in cats])
