"""Convert an annotated dataset (any layout :func:`~.dataset.load_instance_dataset` reads: label
folders, Kaggle folders, COCO, Label Studio and CVAT exports and their zips) into COCO JSON, an
instance-label folder or Kaggle mask folders.

Images are copied byte for byte and named after the samples (the user's image names, with Label
Studio's upload prefix stripped); masks are converted losslessly. A label folder cannot hold
overlapping objects: where masks of one class overlap, the later annotation keeps the shared
pixels; objects of different classes that overlap (an organelle inside its cell) are refused with
an error, since one label image would cut one of them or hide it (convert to COCO instead).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np

from morphoscope.errors import InputError, OutputExistsError
from morphoscope.formats.coco import masks_to_coco_annotations
from morphoscope.formats.dataset import load_instance_dataset
from morphoscope.io.atomic import atomic_write
from morphoscope.io.images import write_png

FORMATS = ("coco", "labels", "kaggle")


def _refuse_class_overlaps(sample, class_names: list[str], shape) -> None:
    """Raise :class:`InputError` when objects of different classes share pixels in ``sample``."""
    planes, _ = sample.load_class_planes(len(class_names), shape)
    shared = (planes > 0).sum(0) > 1
    if shared.any():
        names = [n for n, plane in zip(class_names, planes) if (plane[shared] > 0).any()]
        raise InputError(
            f"objects of different classes overlap in '{sample.name}' ({int(shared.sum())} pixels shared by "
            f"{', '.join(names)}; e.g. an organelle inside its cell). A label image holds one object per "
            "pixel and would cut one of them or hide it: convert to 'coco', which keeps every mask whole "
            "(training, predict, evaluate and measure handle overlapping classes)", path=sample.annotation_path)


def convert_dataset(src: str | Path, dst: str | Path, *, to: str, overwrite: bool = False,
                    images: str | Path | None = None, class_name: str = "nucleus") -> Path:
    """Convert the dataset at ``src`` (any layout) into ``dst`` in layout ``to``.

    ``images`` is the folder of the user's images for exports without them (matched by name).
    An export without any annotated object is converted (into empty label images) with a warning;
    training refuses it (:meth:`~.dataset.InstanceDataset.require_objects`).

    ``coco``: ``dst/annotations.json`` + ``dst/images/``; ``labels``: ``dst/images/`` +
    ``dst/labels/NAME.png`` (uint16; ``labels/classes.json`` when there are several classes);
    ``kaggle``: ``dst/<name>/images/<name>.<ext>`` + ``dst/<name>/masks/<k>.png``.
    Returns the path of the written dataset (the JSON file for COCO).
    """
    if to not in FORMATS:
        raise InputError(f"unknown format '{to}' (choose from {', '.join(FORMATS)})")
    ds = load_instance_dataset(src, images=images, class_name=class_name)
    if not ds.has_objects():
        warnings.warn(f"{src}: no annotated objects in its {len(ds)} image(s); the output holds empty "
                      "annotations (was the export made before anything was annotated?)", stacklevel=2)
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise OutputExistsError("output path exists and is not a folder", path=dst)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise OutputExistsError("output folder is not empty; pass --overwrite to write into it", path=dst)
    if to == "labels" and len(ds.class_names) > 1:  # checked before anything is written
        for s in ds.samples:
            if s.objects:
                _refuse_class_overlaps(s, ds.class_names, s.load_image().shape)
    dst.mkdir(parents=True, exist_ok=True)

    def copy_image(sample, target: Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.image_path, target)

    if to == "coco":
        images, anns, next_id = [], [], 1
        for k, s in enumerate(ds.samples, start=1):
            img = s.load_image()
            masks, classes = s.load_instances(img.shape)
            fname = f"{s.name}{s.image_path.suffix}"
            copy_image(s, dst / "images" / fname)
            images.append({"id": k, "file_name": fname, "height": int(img.shape[0]), "width": int(img.shape[1])})
            new = masks_to_coco_annotations(masks, classes, image_id=k, start_id=next_id)
            next_id += len(new)
            anns += new
        cats = [{"id": i, "name": n} for i, n in enumerate(ds.class_names, start=1)]
        out = dst / "annotations.json"
        with atomic_write(out, mode="w") as fh:
            json.dump({"images": images, "annotations": anns, "categories": cats}, fh)
        return out

    if to == "labels":
        per_object = {}
        for s in ds.samples:
            img = s.load_image()
            labels, classes = s.load_label_image(img.shape)
            if labels.max(initial=0) > 65535:
                raise InputError("more than 65,535 objects do not fit a 16-bit PNG label image", path=s.image_path)
            copy_image(s, dst / "images" / f"{s.name}{s.image_path.suffix}")
            write_png(dst / "labels" / f"{s.name}.png", labels.astype(np.uint16))
            per_object[s.name] = {str(k): int(v) for k, v in classes.items()}
        if len(ds.class_names) > 1:
            with atomic_write(dst / "labels" / "classes.json", mode="w") as fh:
                json.dump({"names": ds.class_names, "objects": per_object}, fh)
        return dst

    if len(ds.class_names) > 1:
        raise InputError("the Kaggle layout holds one class only; convert to 'coco' or 'labels'", path=src)
    for s in ds.samples:
        img = s.load_image()
        masks, _ = s.load_instances(img.shape)
        copy_image(s, dst / s.name / "images" / f"{s.name}{s.image_path.suffix}")
        (dst / s.name / "masks").mkdir(parents=True, exist_ok=True)
        for k, m in enumerate(masks, start=1):
            write_png(dst / s.name / "masks" / f"{k:05d}.png", m.astype(np.uint8) * 255)
    return dst
