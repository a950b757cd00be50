"""Training data for semantic models: 2D images and stacks with label images, as 2D planes.

Layouts: a folder with ``images/NAME.ext`` and ``labels/NAME.png|tif`` (the BBBC039 layout; a
label file may be a stack of the same shape as its image stack, minus the channel axis), and the
Kaggle and COCO layouts that :func:`morphoscope.formats.load_instance_dataset` reads (2D only).
Labels are lossless only: JPEG labels are refused with a warning that explains why.

Each training item is a random crop of one 2D plane, augmented (flips, 90° rotations, scale,
brightness/contrast, gamma, blur, noise), with its targets: the class of each pixel (-1 where the
crop was padded) and the boundary or distance map for the extra head. Randomness comes from
``(seed, epoch, index)`` only, so a resumed run sees exactly the items the uninterrupted run would.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from morphoscope.errors import InputError
from morphoscope.io.images import IMAGE_SUFFIXES, normalize_percentile, read_label_image, to_model_input
from morphoscope.io.stacks import Stack, read_stack

LABEL_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class SemanticSample:
    name: str
    image_path: Path
    label_path: Path | None = None
    label_classes: dict[int, int] | None = None  # instance label -> class (classes.json)
    instance_sample: object | None = None  # formats.dataset.Sample for the kaggle / coco layouts


@dataclass
class Plane:
    """One 2D training plane: normalised image (C, H, W) float32, instance ids and class per id."""

    image: np.ndarray
    instances: np.ndarray  # int32 (H, W); 0 = background
    classes: np.ndarray  # int32 (H, W) per-pixel class 0..K
    name: str


def _warn_jpeg(path: Path) -> None:
    warnings.warn(f"{path}: JPEG label images are lossy (label values change at object borders) and "
                  "cannot be used; save labels as PNG or TIFF. morphoscope never converts data to JPEG.",
                  stacklevel=3)


def list_samples(root: str | Path) -> list[SemanticSample]:
    """The samples of a dataset folder (see module docstring)."""
    root = Path(root)
    if root.is_dir() and (root / "images").is_dir() and (root / "labels").is_dir():
        img_dir, lab_dir = root / "images", root / "labels"
        images = sorted(p for p in img_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        jpeg_labels = [p for p in lab_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")]
        for p in jpeg_labels:
            _warn_jpeg(p)
        labels = {p.stem: p for p in lab_dir.iterdir() if p.suffix.lower() in LABEL_SUFFIXES}
        per_object = {}
        sidecar = lab_dir / "classes.json"
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            per_object = {k: {int(a): int(b) for a, b in v.items()} for k, v in meta.get("objects", {}).items()}
        missing = [p.name for p in images if p.stem not in labels]
        if missing:
            why = " (JPEG labels are not accepted)" if jpeg_labels else ""
            raise InputError(f"{len(missing)} image(s) have no lossless label image in {lab_dir}{why}: "
                             + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""), path=img_dir)
        if not images:
            raise InputError("no images found", path=img_dir)
        return [SemanticSample(p.stem, p, labels[p.stem], per_object.get(p.stem)) for p in images]
    from morphoscope.formats import load_instance_dataset

    ds = load_instance_dataset(root)
    return [SemanticSample(s.name, s.image_path, instance_sample=s) for s in ds.samples]


def _trim_empty_ends(keep: list[tuple[dict, bool]], axis: str | None) -> list[dict]:
    """Indices of planes without the label-free planes at both ends along ``axis``."""
    if axis is None:
        return [i for i, _ in keep]
    has = {}
    for idx, nonempty in keep:
        has[idx[axis]] = has.get(idx[axis], False) or nonempty
    pos = sorted(p for p, v in has.items() if v)
    if not pos:
        return []
    lo, hi = pos[0], pos[-1]
    return [i for i, _ in keep if lo <= i[axis] <= hi]


def load_planes(sample: SemanticSample, *, data_cfg, in_channels: int, num_classes: int) -> list[Plane]:
    """Read one sample (2D image or stack) into normalised 2D planes with their labels."""
    norm = data_cfg.normalize
    if sample.instance_sample is not None:  # kaggle / coco: 2D
        s = sample.instance_sample
        img = s.load_image()
        inst, cls_of = s.load_label_image(img.shape)
        stack = Stack(img, "YX" if img.ndim == 2 else "YXC")
        lab = Stack(inst.astype(np.int32), "YX")
        label_classes = cls_of
    else:
        stack = read_stack(sample.image_path, axes=data_cfg.axes if _is_stack_file(sample.image_path) else None)
        if sample.label_path.suffix.lower() in (".tif", ".tiff"):
            lab_axes = stack.axes.replace("C", "")
            lab = read_stack(sample.label_path, axes=lab_axes if not stack.is_2d else None)
            if lab.axes != lab_axes and sorted(lab.axes) == sorted(lab_axes):
                lab = Stack(np.transpose(lab.data, [lab.axes.index(a) for a in lab_axes]), lab_axes)
        else:
            lab = Stack(read_label_image(sample.label_path), "YX")
        label_classes = sample.label_classes
        expected = tuple(stack.data.shape[stack.axes.index(a)] for a in stack.axes if a != "C")
        if lab.axes != stack.axes.replace("C", "") or lab.data.shape != expected:
            raise InputError(f"label shape {lab.data.shape} (axes {lab.axes}) does not match image "
                             f"{sample.image_path.name} shape {stack.data.shape} (axes {stack.axes})",
                             path=sample.label_path)
        if not np.issubdtype(lab.data.dtype, np.integer) or lab.data.min() < 0:
            raise InputError(f"labels must be non-negative integers, got dtype {lab.data.dtype}",
                             path=sample.label_path)
    where = sample.label_path or sample.image_path
    if data_cfg.labels == "class":
        top = int(lab.data.max(initial=0))
        if top > num_classes:
            raise InputError(f"label value (class id) {top} is not declared: the config has {num_classes} "
                             f"class(es) {list(data_cfg.classes)} (ids 1..{num_classes}, 0 = background)",
                             path=where)
    elif label_classes:
        bad = sorted({c for c in label_classes.values() if c > num_classes or c < 1})
        if bad:
            raise InputError(f"class id(s) {bad} in the labels' classes.json are not declared: the config has "
                             f"{num_classes} class(es) {list(data_cfg.classes)}", path=where)
    stack_range = None
    if norm.per == "stack" and not stack.is_2d:
        stack_range = np.percentile(stack.data, [norm.low, norm.high])
    planes = []
    lab_planes = dict((tuple(i.items()), p) for i, p in lab.planes())
    items = []
    for idx, img in stack.planes():
        li = lab_planes[tuple(idx.items())]
        items.append((idx, img, li))
    if data_cfg.skip_empty_slices and not stack.is_2d:
        axis = "Z" if "Z" in stack.plane_axes else stack.plane_axes[-1]
        keep = _trim_empty_ends([(idx, bool(li.any())) for idx, _, li in items], axis)
        keep_set = {tuple(i.items()) for i in keep}
        items = [it for it in items if tuple(it[0].items()) in keep_set]
    for idx, img, li in items:
        if stack_range is not None:
            lo, hi = (float(v) for v in stack_range)
            x = _channels(((img.astype(np.float32) - lo) / max(hi - lo, 1e-6)), in_channels)
        else:
            x = to_model_input(img, low=norm.low, high=norm.high, channels=in_channels) if img.ndim == 2 or img.shape[-1] <= 4 \
                else _channels(normalize_percentile(img, low=norm.low, high=norm.high), in_channels)
        li = li.astype(np.int32)
        if data_cfg.labels == "class":
            classes = li
            inst = np.zeros_like(li)
            n = 0
            for c in range(1, num_classes + 1):
                cc, k = ndimage.label(li == c)
                inst[cc > 0] = cc[cc > 0] + n
                n += k
        else:
            inst = li
            if label_classes:
                lut = np.zeros(int(li.max(initial=0)) + 1, np.int32)
                lut[1:] = 1
                for lv, c in label_classes.items():
                    if lv < len(lut):
                        lut[lv] = c
                classes = lut[li]
            else:
                classes = (li > 0).astype(np.int32)
        tag = sample.name + ("" if not idx else "[" + ",".join(f"{a}={v}" for a, v in idx.items()) + "]")
        planes.append(Plane(np.ascontiguousarray(x, np.float32), inst, classes, tag))
    return planes


def _is_stack_file(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def _channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, C) float -> (channels, H, W), clipped like to_model_input."""
    if x.ndim == 2:
        x = x[..., None]
    c = x.shape[-1]
    if c == 1 and channels != 1:
        x = np.repeat(x, channels, axis=-1)
    elif c != channels:
        raise InputError(f"image has {c} channels, the model expects {channels} (model.in_channels)")
    return np.ascontiguousarray(np.clip(x, -1.0, 3.0).transpose(2, 0, 1))


def aux_target(instances: np.ndarray, kind: str, width: int = 2) -> np.ndarray:
    """Boundary (1 on the inner border of each object, ``width`` px) or per-object normalised distance."""
    from skimage.segmentation import find_boundaries

    fg = instances > 0
    border = find_boundaries(instances, mode="inner") & fg
    if kind == "boundary":
        if width > 1:
            border = ndimage.binary_dilation(border, iterations=width - 1) & fg
        return border.astype(np.float32)
    inner = fg & ~border
    dist = ndimage.distance_transform_edt(inner).astype(np.float32)
    if not fg.any():
        return dist
    top = ndimage.maximum(dist, instances, index=np.arange(int(instances.max()) + 1))
    top = np.asarray(top, np.float32)
    top[top <= 0] = 1.0
    return np.where(fg, dist / top[instances], 0.0).astype(np.float32)


class SemanticCropDataset(Dataset):
    """``length`` augmented random crops of the planes per epoch (see module docstring)."""

    def __init__(self, planes: list[Plane], *, crop_size: int | None, length: int, augment, seed: int = 0,
                 aux: str = "mask", boundary_width: int = 2):
        if not planes:
            raise InputError("no training planes (are all slices empty and skip_empty_slices set?)")
        self.planes = planes
        self.crop_size = crop_size
        self.length = length
        self.augment = augment
        self.seed = seed
        self.aux = aux
        self.boundary_width = boundary_width
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        p = self.planes[int(rng.integers(len(self.planes))) if self.length != len(self.planes) else index]
        a = self.augment
        f = 1.0
        if a is not None:
            lo, hi = a.scale
            if hi > lo or lo != 1.0:
                f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        x, inst, cls = p.image, p.instances, p.classes
        if self.crop_size is not None:
            src = max(8, int(round(self.crop_size / f)))
            x, inst, cls = _crop(x, inst, cls, src, rng)
            if src != self.crop_size:
                z = self.crop_size / src
                x = ndimage.zoom(x, (1, z, z), order=1)
                inst = ndimage.zoom(inst, z, order=0)
                cls = ndimage.zoom(cls, z, order=0)
                x, inst, cls = (v[..., : self.crop_size, : self.crop_size] for v in (x, inst, cls))
        elif abs(f - 1) > 1e-3:
            x = ndimage.zoom(x, (1, f, f), order=1)
            inst = ndimage.zoom(inst, f, order=0)
            cls = ndimage.zoom(cls, f, order=0)
        if a is not None:
            if a.hflip and rng.random() < 0.5:
                x, inst, cls = x[..., ::-1], inst[:, ::-1], cls[:, ::-1]
            if a.vflip and rng.random() < 0.5:
                x, inst, cls = x[:, ::-1], inst[::-1], cls[::-1]
            if a.rot90:
                k = int(rng.integers(4))
                if k:
                    x, inst, cls = np.rot90(x, k, (1, 2)), np.rot90(inst, k), np.rot90(cls, k)
            x = _photometric(np.ascontiguousarray(x, np.float32), a, rng)
        valid = cls >= 0
        inst = np.where(valid, inst, 0)
        target = {"classes": torch.from_numpy(np.ascontiguousarray(cls, np.int64))}
        if self.aux != "mask":
            target["aux"] = torch.from_numpy(aux_target(np.ascontiguousarray(inst), self.aux, self.boundary_width))
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)), target


def _crop(x, inst, cls, c, rng):
    h, w = inst.shape
    if h < c or w < c:  # pad: padded pixels are ignored by the loss (class -1)
        ph, pw = max(0, c - h), max(0, c - w)
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
        inst = np.pad(inst, ((0, ph), (0, pw)))
        cls = np.pad(cls, ((0, ph), (0, pw)), constant_values=-1)
        h, w = inst.shape
    y0 = int(rng.integers(h - c + 1))
    x0 = int(rng.integers(w - c + 1))
    return x[:, y0:y0 + c, x0:x0 + c], inst[y0:y0 + c, x0:x0 + c], cls[y0:y0 + c, x0:x0 + c]


def _photometric(x: np.ndarray, a, rng) -> np.ndarray:
    if a.intensity > 0:
        gain = 1.0 + float(rng.uniform(-a.intensity, a.intensity))
        bias = float(rng.uniform(-a.intensity, a.intensity)) * 0.5
        x = x * gain + bias
    glo, ghi = a.gamma
    if ghi > glo:
        g = float(np.exp(rng.uniform(np.log(glo), np.log(ghi))))
        x = np.clip(x, 0, None) ** g
    slo, shi = a.blur_sigma
    if shi > 0 and rng.random() < a.blur_prob:
        sigma = float(rng.uniform(max(slo, 0.1), shi))
        x = ndimage.gaussian_filter(x, (0, sigma, sigma))
    if a.noise_std > 0:
        x = x + rng.standard_normal(x.shape).astype(np.float32) * float(rng.uniform(0, a.noise_std))
    return x.astype(np.float32)


def collate(batch):
    """Stack items, padding to a common size (multiple of 32) with ignored pixels."""
    images, targets = zip(*batch)
    h = max(im.shape[-2] for im in images)
    w = max(im.shape[-1] for im in images)
    H, W = -(-h // 32) * 32, -(-w // 32) * 32
    xs, cs, auxs = [], [], []
    for im, t in zip(images, targets):
        ph, pw = H - im.shape[-2], W - im.shape[-1]
        xs.append(torch.nn.functional.pad(im, (0, pw, 0, ph)))
        cs.append(torch.nn.functional.pad(t["classes"], (0, pw, 0, ph), value=-1))
        if "aux" in t:
            auxs.append(torch.nn.functional.pad(t["aux"], (0, pw, 0, ph)))
    out = {"classes": torch.stack(cs)}
    if auxs:
        out["aux"] = torch.stack(auxs)
    return torch.stack(xs), out
