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
from morphoscope.io.images import IMAGE_SUFFIXES, label_file_of, normalize_percentile, read_label_image, to_model_input
from morphoscope.io.stacks import Stack, read_stack

LABEL_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class SemanticSample:
    name: str
    image_path: Path
    label_path: Path | None = None
    label_classes: dict[int, int] | None = None  # instance label -> class (classes.json)
    instance_sample: object | None = None  # formats.dataset.Sample for the kaggle / coco layouts
    group: str | None = None  # e.g. the imaging modality (data sources' group / groups table)
    weight: float = 1.0  # the source's sampling weight


@dataclass
class Plane:
    """One 2D training plane: normalised image (C, H, W) float32, instance ids and class per id."""

    image: np.ndarray  # (C, H, W); C = 1 for a grey image even when the model takes 3 channels
    instances: np.ndarray  # int32 (H, W); 0 = background
    classes: np.ndarray  # int32 (H, W) per-pixel class 0..K
    name: str
    group: str | None = None
    weight: float = 1.0

    @property
    def diameters(self) -> np.ndarray:
        """Equivalent diameter (pixels) of each instance id (index 0 and absent ids: 0)."""
        a = np.bincount(self.instances.ravel()).astype(np.float64)
        a[0] = 0
        return 2 * np.sqrt(a / np.pi)

    @property
    def median_diameter(self) -> float | None:
        """Median equivalent diameter of the objects (pixels), None without objects."""
        d = self.diameters[1:]
        d = d[d > 0]
        return float(np.median(d)) if len(d) else None


def _warn_jpeg(path: Path) -> None:
    warnings.warn(f"{path}: JPEG label images are lossy (label values change at object borders) and "
                  "cannot be used; save labels as PNG or TIFF. morphoscope never converts data to JPEG.",
                  stacklevel=3)


def source_samples(source) -> list[SemanticSample]:
    """The samples of a data source: a folder (``Path``) or a ``DataSource`` (a folder, a split
    list of sample names, a group per sample)."""
    from morphoscope.formats.splits import read_group_table, read_split_list, select_names

    if isinstance(source, (str, Path)):
        return list_samples(source)
    samples = list_samples(source.path)
    if source.split is not None:
        by_name = {s.name: s for s in samples}
        names = select_names(list(by_name), read_split_list(source.split), where=source.split)
        samples = [by_name[n] for n in names]
    table = read_group_table(source.groups, source.group_column) if source.groups is not None else {}
    for s in samples:
        s.group = table.get(s.name, source.group)
        s.weight = source.weight
    return samples


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
        paired = {p.stem: label_file_of(p.stem, labels) for p in images}  # NAME, NAME_masks, NAME_cp_masks, ...
        missing = [p.name for p in images if paired[p.stem] is None]
        if missing:
            why = " (JPEG labels are not accepted)" if jpeg_labels else ""
            raise InputError(f"{len(missing)} image(s) have no lossless label image in {lab_dir}{why}: "
                             + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""), path=img_dir)
        if not images:
            raise InputError("no images found", path=img_dir)
        return [SemanticSample(p.stem, p, paired[p.stem], per_object.get(p.stem)) for p in images]
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
        elif getattr(norm, "per_channel", False) and (img.ndim == 2 or img.shape[-1] <= 4):
            x = normalize_channels(img, low=norm.low, high=norm.high, channels=in_channels)
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
        planes.append(Plane(np.ascontiguousarray(x, np.float32), inst, classes, tag, group=sample.group,
                            weight=sample.weight))
    return planes


def is_grey(img: np.ndarray) -> bool:
    """A 2D image, or an RGB(A) one whose colour channels are all equal (grey stored as RGB)."""
    if img.ndim == 2 or img.shape[-1] == 1:
        return True
    c = img[..., :3]
    return bool(c.shape[-1] >= 3 and np.array_equal(c[..., 0], c[..., 1]) and np.array_equal(c[..., 0], c[..., 2]))


def channel_percentiles(img: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``low`` / ``high`` percentiles of an ``(H, W[, C])`` image (alpha dropped; a grey
    image stored as RGB gives equal values)."""
    x = img if img.ndim == 3 else img[..., None]
    x = x[..., :3] if x.shape[-1] == 4 else x
    flat = x.reshape(-1, x.shape[-1])
    if len(flat) > 4_000_000:
        flat = flat[:: len(flat) // 4_000_000 + 1]
    lo, hi = np.percentile(flat.astype(np.float32), [low, high], axis=0)
    return lo.astype(np.float32), hi.astype(np.float32)


def normalize_channels(img: np.ndarray, *, low: float, high: float, channels: int) -> np.ndarray:
    """``(H, W[, C])`` -> float32 ``(C', H, W)``: each channel stretched from its own percentiles
    to 0..1 (clipped to -1..3); a grey image (also grey stored as RGB) stays one channel, which
    the crops repeat to ``channels``; a colour image must have ``channels`` channels."""
    if is_grey(img):
        g = img if img.ndim == 2 else img[..., 0]
        lo, hi = channel_percentiles(g, low, high)
        x = (g.astype(np.float32) - lo[0]) / max(float(hi[0] - lo[0]), 1e-6)
        return np.ascontiguousarray(np.clip(x, -1.0, 3.0)[None])
    lo, hi = channel_percentiles(img, low, high)
    x = img[..., :3] if img.shape[-1] == 4 else img
    x = (x.astype(np.float32) - lo) / np.maximum(hi - lo, 1e-6)
    if x.shape[-1] != channels:
        if channels == 1:
            x = x.mean(-1, keepdims=True)
        else:
            raise InputError(f"image has {x.shape[-1]} channels, the model expects {channels} (model.in_channels)")
    return np.ascontiguousarray(np.clip(x, -1.0, 3.0).transpose(2, 0, 1))


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
    """``length`` augmented random crops of the planes per epoch (see module docstring).

    ``diameter`` (canonical object diameter, pixels): each plane is resampled so that the median
    diameter of its objects becomes this, on top of the scale augmentation; crops are cut from the
    native plane and zoomed, so no enlarged copy of any image is kept. ``size_head`` adds the
    target ``size``: log2(object diameter in the crop / diameter) on object pixels. Planes are
    drawn with probability proportional to their source's weight times their group's weight over
    the group's number of planes (uniformly when no plane has a group or weight).
    """

    def __init__(self, planes: list[Plane], *, crop_size: int | None, length: int, augment, seed: int = 0,
                 aux: str = "mask", boundary_width: int = 2, diameter: float | None = None,
                 size_head: bool = False, group_weights: dict | None = None, channels: int | None = None):
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
        self.diameter = diameter
        self.size_head = size_head and diameter is not None
        self.channels = channels
        self.canon = np.ones(len(planes))
        if diameter is not None:
            for i, p in enumerate(planes):
                d = p.median_diameter
                if d:
                    self.canon[i] = diameter / d
        self.luts = [p.diameters for p in planes] if self.size_head else None
        gw = dict(group_weights or {})
        if gw or any(p.group is not None or p.weight != 1.0 for p in planes):
            counts: dict = {}
            for p in planes:
                counts[p.group] = counts.get(p.group, 0) + 1
            w = np.array([p.weight * gw.get(p.group, 1.0) / counts[p.group] for p in planes], np.float64)
            self.cdf = np.cumsum(w / w.sum())
        else:
            self.cdf = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _pick(self, rng, index: int) -> int:
        if self.cdf is not None:
            return int(min(np.searchsorted(self.cdf, rng.random(), side="right"), len(self.planes) - 1))
        return int(rng.integers(len(self.planes))) if self.length != len(self.planes) else index

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        k = self._pick(rng, index)
        p = self.planes[k]
        a = self.augment
        f = 1.0
        if a is not None:
            lo, hi = a.scale
            if getattr(a, "wide_prob", 0) > 0 and rng.random() < a.wide_prob:
                lo, hi = a.wide_scale
            if hi > lo or lo != 1.0:
                f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        f *= float(self.canon[k])
        x, inst, cls = p.image, p.instances, p.classes
        if self.crop_size is not None:
            src = max(8, int(round(self.crop_size / f)))
            x, inst, cls = _crop(x, inst, cls, src, rng)
            if src != self.crop_size:
                z = self.crop_size / src
                x = _zoom_image(x, z)
                inst = ndimage.zoom(inst, z, order=0)
                cls = ndimage.zoom(cls, z, order=0)
                x, inst, cls = (v[..., : self.crop_size, : self.crop_size] for v in (x, inst, cls))
        elif abs(f - 1) > 1e-3:
            x = _zoom_image(x, f)
            inst = ndimage.zoom(inst, f, order=0)
            cls = ndimage.zoom(cls, f, order=0)
        if self.channels and x.shape[0] == 1 and self.channels != 1:
            x = np.repeat(x, self.channels, axis=0)
        if a is not None:
            if a.hflip and rng.random() < 0.5:
                x, inst, cls = x[..., ::-1], inst[:, ::-1], cls[:, ::-1]
            if a.vflip and rng.random() < 0.5:
                x, inst, cls = x[:, ::-1], inst[::-1], cls[::-1]
            if a.rot90:
                r = int(rng.integers(4))
                if r:
                    x, inst, cls = np.rot90(x, r, (1, 2)), np.rot90(inst, r), np.rot90(cls, r)
            x = _photometric(np.ascontiguousarray(x, np.float32), a, rng)
        valid = cls >= 0
        inst = np.ascontiguousarray(np.where(valid, inst, 0))
        target = {"classes": torch.from_numpy(np.ascontiguousarray(cls, np.int64))}
        if self.aux == "boundary+distance":
            target["boundary"] = torch.from_numpy(aux_target(inst, "boundary", self.boundary_width))
            target["distance"] = torch.from_numpy(aux_target(inst, "distance", self.boundary_width))
        elif self.aux != "mask":
            target["aux"] = torch.from_numpy(aux_target(inst, self.aux, self.boundary_width))
        if self.size_head:
            d = self.luts[k][inst] * f  # object diameter in the crop (f includes the canonical factor)
            size = np.where(inst > 0, np.log2(np.maximum(d, 1e-3) / self.diameter), 0.0)
            target["size"] = torch.from_numpy(size.astype(np.float32))
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)), target


def _zoom_image(x: np.ndarray, z: float) -> np.ndarray:
    """(C, h, w) zoomed by ``z`` (linear), low-pass filtered first when shrinking (no aliasing:
    what ``skimage.transform.rescale(anti_aliasing=True)`` does at prediction)."""
    if z < 1:
        sigma = max(0.0, (1 / z - 1) / 2)
        if sigma > 0:
            x = ndimage.gaussian_filter(x, (0, sigma, sigma), mode="nearest")
    return ndimage.zoom(x, (1, z, z), order=1)


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
    colour = getattr(a, "colour", 0.0)
    if x.shape[0] > 1:
        if getattr(a, "grey", 0.0) > 0 and rng.random() < a.grey:
            x = np.repeat(x.mean(0, keepdims=True), x.shape[0], axis=0)
        if colour > 0:
            gain = rng.uniform(1 - colour, 1 + colour, size=(x.shape[0], 1, 1)).astype(np.float32)
            bias = rng.uniform(-colour / 2, colour / 2, size=(x.shape[0], 1, 1)).astype(np.float32)
            x = x * gain + bias
    if getattr(a, "invert", 0.0) > 0 and rng.random() < a.invert:
        x = 1.0 - x
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
    xs = []
    maps: dict[str, list] = {k: [] for k in targets[0]}
    for im, t in zip(images, targets):
        ph, pw = H - im.shape[-2], W - im.shape[-1]
        xs.append(torch.nn.functional.pad(im, (0, pw, 0, ph)))
        for k, v in t.items():
            maps[k].append(torch.nn.functional.pad(v, (0, pw, 0, ph), value=-1 if k == "classes" else 0))
    return torch.stack(xs), {k: torch.stack(v) for k, v in maps.items()}
