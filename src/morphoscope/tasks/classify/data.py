"""Classification datasets: reading, checking, splitting, and the training/evaluation transforms.

Two layouts are read (:func:`load_classification_dataset` tells them apart):

``csv``      a CSV with columns ``Id`` and ``Target`` (space-separated class ids, the Kaggle HPA
             layout) and the images in ``images/`` beside it (or beside the CSV, or ``data.images``).
             An optional ``Dir`` column gives each row's image folder (absolute, or relative to the
             CSV). The image of row ``Id`` is ``<Id>.<ext>``, or with ``channels: [a, b]`` the files
             ``<Id>_a.<ext>``, ``<Id>_b.<ext>`` stacked as channels (HPA: ``<Id>_green.png``).
``folders``  one sub-folder of images per class (``root/<class name>/*.png``); one label per image.

Class names come from ``class_names`` (class id k is ``class_names[k]``), a text file of names,
or, for class folders, the sorted folder names; a CSV without names gets ``class_0 ...``.
Problems are :class:`~morphoscope.errors.InputError` naming the file and CSV line: label ids
outside the declared classes, images listed but missing, unexpected channel counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from morphoscope.errors import ConfigError, InputError
from morphoscope.io.images import IMAGE_SUFFIXES, TIFF_SUFFIXES, normalize_percentile, read_image


@dataclass
class ClassificationSample:
    """One image (one file, or one file per channel) and its class ids (0-based)."""

    id: str
    files: list[Path]
    labels: tuple[int, ...]
    line: int | None = None  # CSV line (1 = header), for error messages

    def where(self) -> str:
        return f"line {self.line} (Id '{self.id}')" if self.line is not None else f"'{self.id}'"


@dataclass
class ClassificationDataset:
    source: Path  # the CSV file or the class-folder root
    layout: str  # "csv" | "folders"
    samples: list[ClassificationSample]
    class_names: list[str]
    channels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> ClassificationSample:
        return self.samples[i]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def label_matrix(self) -> np.ndarray:
        """``(N, K)`` 0/1 int array: sample i has class k."""
        y = np.zeros((len(self.samples), len(self.class_names)), np.int64)
        for i, s in enumerate(self.samples):
            y[i, list(s.labels)] = 1
        return y

    def subset(self, indices) -> ClassificationDataset:
        return ClassificationDataset(self.source, self.layout, [self.samples[i] for i in indices],
                                     self.class_names, self.channels)


# ----------------------------------------------------------------------------------------- reading


def read_class_names_file(path: Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("class names file not found", path=path)
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not names:
        raise ConfigError("class names file is empty", path=path)
    if len(set(names)) != len(names):
        raise ConfigError("class names file has duplicate names", path=path)
    return names


def read_id_file(path: Path) -> list[str]:
    """Ids, one per line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("Id list file not found", path=path)
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def detect_classification_layout(path: Path) -> tuple[str, Path]:
    """``("csv", csv_file)`` or ``("folders", root)``."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise InputError("expected a CSV file (Id,Target) or a dataset folder", path=path)
        return "csv", path
    if not path.is_dir():
        raise InputError("dataset not found", path=path)
    if (path / "labels.csv").is_file():
        return "csv", path / "labels.csv"
    csvs = sorted(path.glob("*.csv"))
    if len(csvs) == 1:
        return "csv", csvs[0]
    subdirs = [d for d in sorted(path.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if subdirs and any(_list_images(d) for d in subdirs):
        return "folders", path
    raise InputError("cannot tell the dataset layout: expected labels.csv (Id,Target) with images/, "
                     "a CSV file, or one sub-folder of images per class", path=path)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def load_classification_dataset(path: str | Path, *, class_names: list[str] | None = None,
                                class_names_file: Path | None = None, channels: list[str] | None = None,
                                images: Path | None = None, single_label: bool = False) -> ClassificationDataset:
    """Read a labelled dataset in either layout (module docstring). With ``single_label`` every
    image must have exactly one label."""
    if class_names_file is not None:
        class_names = read_class_names_file(class_names_file)
    layout, where = detect_classification_layout(Path(path))
    if layout == "csv":
        ds = _load_csv(where, class_names, channels, images)
    else:
        ds = _load_folders(where, class_names, channels)
    if not ds.samples:
        raise InputError("dataset has no images", path=ds.source)
    if single_label:
        for s in ds.samples:
            if len(s.labels) != 1:
                raise InputError(f"{s.where()}: single-label classification needs exactly one label per "
                                 f"image, got {len(s.labels)} ({' '.join(map(str, s.labels)) or 'none'})",
                                 path=ds.source)
    return ds


class _ImageIndex:
    """File names of a folder, listed once (fast look-ups for tens of thousands of rows)."""

    def __init__(self):
        self._dirs: dict[Path, dict[str, Path]] = {}

    def find(self, folder: Path, stem: str) -> Path | None:
        if folder not in self._dirs:
            self._dirs[folder] = ({p.name: p for p in folder.iterdir() if p.is_file()}
                                  if folder.is_dir() else {})
        names = self._dirs[folder]
        if stem in names and Path(stem).suffix.lower() in IMAGE_SUFFIXES:
            return names[stem]
        for suf in IMAGE_SUFFIXES:
            for cand in (stem + suf, stem + suf.upper()):
                if cand in names:
                    return names[cand]
        return None


def _load_csv(csv_path: Path, class_names, channels, images) -> ClassificationDataset:
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read CSV ({exc})", path=csv_path) from None
    if not rows:
        raise InputError("CSV is empty", path=csv_path)
    header = [h.strip().lower() for h in rows[0]]
    if "id" not in header or "target" not in header:
        raise InputError(f"CSV needs the columns Id and Target, found {rows[0]}", path=csv_path)
    ci, ct = header.index("id"), header.index("target")
    cd = header.index("dir") if "dir" in header else None
    if images is not None:
        img_dir = Path(images)
        if not img_dir.is_dir():
            raise InputError("image folder not found", path=img_dir)
    else:
        img_dir = csv_path.parent / "images" if (csv_path.parent / "images").is_dir() else csv_path.parent

    parsed = []
    top = -1
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(ci, ct, cd if cd is not None else 0):
            raise InputError(f"line {n}: expected {len(header)} columns, got {len(row)}", path=csv_path)
        sid = row[ci].strip()
        if not sid:
            raise InputError(f"line {n}: empty Id", path=csv_path)
        labels = []
        for tok in row[ct].replace(",", " ").replace(";", " ").split():
            try:
                v = int(tok)
            except ValueError:
                raise InputError(f"line {n} (Id '{sid}'): label '{tok}' is not a class id (an integer "
                                 "0..K-1)", path=csv_path) from None
            if v < 0 or (class_names is not None and v >= len(class_names)):
                k = len(class_names) if class_names is not None else None
                raise InputError(f"line {n} (Id '{sid}'): label {v} is outside the declared classes "
                                 f"(0..{k - 1 if k else '?'}" + (f", {k} class names)" if k else ")"),
                                 path=csv_path)
            labels.append(v)
            top = max(top, v)
        folder = img_dir
        if cd is not None and row[cd].strip():
            folder = Path(row[cd].strip())
            if not folder.is_absolute():
                folder = csv_path.parent / folder
        parsed.append((n, sid, tuple(sorted(set(labels))), folder))
    if class_names is None:
        class_names = [f"class_{k}" for k in range(top + 1)]
    seen: dict[str, int] = {}
    index = _ImageIndex()
    samples = []
    for n, sid, labels, folder in parsed:
        if sid in seen:
            raise InputError(f"line {n}: Id '{sid}' is listed twice (first on line {seen[sid]})", path=csv_path)
        seen[sid] = n
        files = []
        for stem in ([f"{sid}_{c}" for c in channels] if channels else [sid]):
            f = index.find(folder, stem)
            if f is None:
                raise InputError(f"line {n} (Id '{sid}'): image not found: no {folder / stem}"
                                 f".{{{','.join(s[1:] for s in IMAGE_SUFFIXES)}}}", path=csv_path)
            files.append(f)
        samples.append(ClassificationSample(sid, files, labels, n))
    return ClassificationDataset(csv_path, "csv", samples, list(class_names), channels)


def _load_folders(root: Path, class_names, channels) -> ClassificationDataset:
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    folders = [d for d in folders if _list_images(d)]
    if class_names is None:
        class_names = [d.name for d in folders]
    index = {n: k for k, n in enumerate(class_names)}
    samples = []
    for d in folders:
        if d.name not in index:
            raise InputError(f"class folder '{d.name}' is not one of the declared classes "
                             f"{class_names}", path=d)
        for sid, files in _group_channel_files(_list_images(d), channels, d).items():
            samples.append(ClassificationSample(f"{d.name}/{sid}", files, (index[d.name],)))
    return ClassificationDataset(root, "folders", samples, list(class_names), channels)


def _group_channel_files(files: list[Path], channels: list[str] | None, folder: Path) -> dict[str, list[Path]]:
    if not channels:
        out: dict[str, list[Path]] = {}
        for f in files:
            if f.stem in out:
                raise InputError(f"two images share the name '{f.stem}' ({out[f.stem][0].name}, {f.name})",
                                 path=folder)
            out[f.stem] = [f]
        return out
    groups: dict[str, dict[str, Path]] = {}
    for f in files:
        for c in channels:
            if f.stem.endswith(f"_{c}"):
                groups.setdefault(f.stem[: -len(c) - 1], {})[c] = f
                break
    out = {}
    for sid, by_channel in sorted(groups.items()):
        missing = [c for c in channels if c not in by_channel]
        if missing:
            raise InputError(f"image '{sid}' has no file for channel(s) {missing} "
                             f"(expected {', '.join(f'{sid}_{c}.*' for c in channels)})", path=folder)
        out[sid] = [by_channel[c] for c in channels]
    return out


def group_prediction_files(paths: list[Path], channels: list[str] | None) -> list[tuple[str, list[Path]]]:
    """Input files of ``predict`` grouped into images: ``(name, files)``. The name is the file
    stem, or, when stems repeat (class folders), the path below the common folder without suffix
    (``dense/img1``). With per-channel files (``channels``), ``X_green.png`` ... become one image
    ``X``; other files are refused."""
    if not channels:
        names = [p.stem for p in paths]
        if len(set(names)) < len(names):
            # e.g. class folders holding the same file names: name rows by their folder too
            import os

            root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
            names = [p.resolve().relative_to(root).with_suffix("").as_posix() for p in paths]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"several input images share the name(s) {', '.join(dupes[:5])}; "
                             "the rows of classifications.csv would be ambiguous")
        return list(zip(names, [[p] for p in paths]))
    groups: dict[str, dict[str, Path]] = {}
    for p in paths:
        for c in channels:
            if p.stem.endswith(f"_{c}"):
                groups.setdefault(p.stem[: -len(c) - 1], {})[c] = p
                break
        else:
            raise InputError(f"file name does not end in one of the model's channels "
                             f"{['_' + c for c in channels]}", path=p)
    out = []
    for sid, by_channel in sorted(groups.items()):
        missing = [c for c in channels if c not in by_channel]
        if missing:
            some = next(iter(by_channel.values()))
            raise InputError(f"image '{sid}' lacks the channel file(s) "
                             f"{', '.join(f'{sid}_{c}.*' for c in missing)}", path=some)
        out.append((sid, [by_channel[c] for c in channels]))
    return out


# ------------------------------------------------------------------------------------------ images


def probe_channels(path: Path) -> int:
    """Channels of an image file from its header (no pixel data read where possible)."""
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
            return _channels_of_shape(shape, path)
        from PIL import Image

        with Image.open(path) as im:
            mode, info = im.mode, im.info
        return {"1": 1, "L": 1, "LA": 1, "I": 1, "F": 1, "I;16": 1, "I;16B": 1, "I;16L": 1,
                "P": 4 if "transparency" in info else 3, "RGB": 3, "RGBA": 4, "CMYK": 3,
                "YCbCr": 3}.get(mode, 3)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read image ({type(exc).__name__}: {exc})", path=path) from None


def _channels_of_shape(shape, path) -> int:
    shape = tuple(shape)
    if len(shape) == 2:
        return 1
    if len(shape) == 3 and shape[-1] <= 4 < min(shape[0], shape[1]):
        return shape[-1]
    if len(shape) == 3 and shape[0] <= 4 < min(shape[1], shape[2]):
        return shape[0]
    raise InputError(f"image has shape {shape}; classification takes 2D images with up to 4 channels "
                     "(channels last or first)", path=path)


def _channels_last(img: np.ndarray, path: Path) -> np.ndarray:
    if img.ndim == 2:
        return img[..., None]
    c = _channels_of_shape(img.shape, path)
    if img.shape[-1] == c and img.shape[0] > 4:
        return img
    return np.moveaxis(img, 0, -1)


def fit_channels(img: np.ndarray, expected: int | None, path: Path, where: str = "") -> np.ndarray:
    """``(H, W, C)`` image with ``expected`` channels. Grey stored as RGB(A) becomes grey for a
    1-channel model and a constant alpha is dropped for a 3-channel one; any other mismatch is an
    error naming the file."""
    c = img.shape[-1]
    if expected is None or c == expected:
        return img
    if expected == 1 and c in (3, 4) and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]):
        return img[..., :1]
    if expected == 3 and c == 4 and img[..., 3].min() == img[..., 3].max():
        return img[..., :3]
    raise InputError(f"{where + ': ' if where else ''}image has {c} channel(s), expected {expected}", path=path)


def read_sample_image(files: list[Path], expected: int | None = None, where: str = "") -> np.ndarray:
    """Native-dtype ``(H, W, C)`` image of one sample (per-channel files are stacked)."""
    if len(files) == 1:
        img = _channels_last(read_image(files[0]), files[0])
        return fit_channels(img, expected, files[0], where)
    planes = []
    for f in files:
        p = fit_channels(_channels_last(read_image(f), f), 1, f, where)
        if planes and p.shape[:2] != planes[0].shape[:2]:
            raise InputError(f"{where + ': ' if where else ''}size {p.shape[:2]} differs from "
                             f"{files[0].name} {planes[0].shape[:2]}", path=f)
        planes.append(p[..., 0])
    if len({p.dtype for p in planes}) > 1:
        raise InputError(f"{where + ': ' if where else ''}channel files have different bit depths "
                         f"({', '.join(str(p.dtype) for p in planes)})", path=files[0])
    img = np.stack(planes, axis=-1)
    return fit_channels(img, expected, files[0], where)


def check_channels(dataset: ClassificationDataset, expected: int | None) -> int:
    """Check every image's channel count (from its header; images whose header is ambiguous, such
    as grey stored as RGB, are read); returns the count (the first image's when ``expected`` is
    None). Errors name the CSV line and the file."""
    first = None
    for s in dataset.samples:
        if len(s.files) > 1:
            for f in s.files:
                if probe_channels(f) != 1:  # grey stored as RGB(A) is fine: read and check it
                    fit_channels(_channels_last(read_image(f), f), 1, f, f"{s.where()}: per-channel file")
            c = len(s.files)
        else:
            c = probe_channels(s.files[0])
        want = expected if expected is not None else first
        if want is not None and c != want:
            origin = ("model.in_channels" if expected is not None
                      else f"the first image ({dataset.samples[0].files[0].name})")
            if (want, c) in ((1, 3), (1, 4), (3, 4)) and len(s.files) == 1:
                try:  # grey stored as RGB, or a constant alpha channel
                    fit_channels(_channels_last(read_image(s.files[0]), s.files[0]), want, s.files[0])
                    c = want
                except InputError:
                    pass
            if c != want:
                raise InputError(f"{s.where()}: image has {c} channel(s) but {origin} has {want}",
                                 path=s.files[0])
        if first is None:
            first = c
    return expected if expected is not None else first


def scale_intensity(img: np.ndarray, mode: str) -> np.ndarray:
    """Native ``(H, W, C)`` -> float32 ``(C, H, W)``: by the dtype's range (8/16-bit -> 0..1) or
    per-image percentiles (1st -> 0, 99.8th -> 1)."""
    if mode == "percentile":
        x = normalize_percentile(img, low=1.0, high=99.8)
    elif np.issubdtype(img.dtype, np.integer):
        x = img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
    else:
        x = img.astype(np.float32, copy=False)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def channel_stats(dataset: ClassificationDataset, indices, *, in_channels: int, intensity: str,
                  max_images: int = 200, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the (scaled) training images (at most ``max_images``,
    each subsampled to about 256 x 256 pixels)."""
    idx = np.asarray(list(indices))
    if len(idx) > max_images:
        idx = np.random.default_rng(seed).choice(idx, max_images, replace=False)
    s1 = np.zeros(in_channels)
    s2 = np.zeros(in_channels)
    n = 0
    for i in idx:
        s = dataset.samples[int(i)]
        x = scale_intensity(read_sample_image(s.files, in_channels, s.where()), intensity)
        step = max(1, int(math.sqrt(x.shape[1] * x.shape[2] / 65536)))
        x = x[:, ::step, ::step].reshape(in_channels, -1).astype(np.float64)
        s1 += x.sum(1)
        s2 += (x ** 2).sum(1)
        n += x.shape[1]
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0))
    return [float(v) for v in mean], [float(max(v, 1e-3)) for v in std]


# ------------------------------------------------------------------------------------------- split


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/val indices of the label matrix ``y (N, K)`` by iterative stratification (Sechidis et
    al. 2011): the rarest label is distributed first, each image to the subset that still wants
    most of that label. Single-label data becomes an ordinary stratified split. Deterministic
    for a given ``seed``; both subsets are non-empty."""
    y = np.asarray(y, bool)
    n = len(y)
    if n < 2:
        raise InputError(f"{n} image(s): a train/validation split needs at least 2")
    rng = np.random.default_rng(seed)
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    ratios = np.array([(n - n_val) / n, n_val / n])
    want_total = np.array([n - n_val, n_val], float)
    want = np.outer(ratios, y.sum(0)).astype(float)
    subset = np.full(n, -1)
    label_order = rng.permutation(y.shape[1])  # random tie-break among equally rare labels

    def pick(options: np.ndarray) -> int:
        return int(options[0]) if len(options) == 1 else int(rng.choice(options))

    while True:
        left = subset < 0
        counts = y[left].sum(0)
        if not counts[label_order].any():
            break
        cand = label_order[counts[label_order] > 0]
        lab = cand[np.argmin(counts[cand])]
        for i in rng.permutation(np.flatnonzero(left & y[:, lab])):
            open_ = np.flatnonzero(want_total > 0)
            if len(open_) == 0:
                open_ = np.arange(2)
            d = want[open_, lab]
            best = open_[d == d.max()]
            if len(best) > 1:
                t = want_total[best]
                best = best[t == t.max()]
            j = pick(best)
            subset[i] = j
            want[j, y[i]] -= 1
            want_total[j] -= 1
    for i in rng.permutation(np.flatnonzero(subset < 0)):  # images without labels
        t = want_total
        j = pick(np.flatnonzero(t == t.max()))
        subset[i] = j
        want_total[j] -= 1
    if not (subset == 1).any():
        subset[rng.choice(np.flatnonzero(subset == 0))] = 1
    if not (subset == 0).any():
        subset[rng.choice(np.flatnonzero(subset == 1))] = 0
    return np.flatnonzero(subset == 0), np.flatnonzero(subset == 1)


# -------------------------------------------------------------------------------------- transforms


class ClassificationImages(Dataset):
    """Network inputs ``(C, S, S)`` float32 and targets (multi-hot float ``(K,)`` or class index).

    ``augment`` (a :class:`ClassifyAugmentConfig`) turns on the training transforms: random
    resized crop, flips, 90-degree and free rotations, brightness/contrast; without it the whole
    image is resized to ``S x S``. Randomness comes from ``(seed, epoch, index)`` alone, so a
    resumed run sees the same images and augmentations. With ``shuffle`` the ``length`` items of
    an epoch walk through seeded permutations of ``indices``; without, through ``indices`` in order.
    """

    def __init__(self, dataset: ClassificationDataset, indices, *, in_channels: int, image_size: int,
                 intensity: str, mean, std, multi_label: bool, augment=None, seed: int = 0,
                 length: int | None = None, cache: bool = True, shuffle: bool = False):
        self.dataset = dataset
        self.indices = np.asarray(list(indices), np.int64)
        self.in_channels = in_channels
        self.size = image_size
        self.intensity = intensity
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.multi_label = multi_label
        self.augment = augment
        self.shuffle = shuffle
        self.seed = seed
        self.length = len(self.indices) if length is None else length
        self.epoch = 0
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self.num_classes = len(dataset.class_names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def sample_index(self, index: int) -> int:
        if not self.shuffle:
            return int(self.indices[index % len(self.indices)])
        n = len(self.indices)
        perm = np.random.default_rng([self.seed, self.epoch, index // n, 7]).permutation(n)
        return int(self.indices[perm[index % n]])

    def load(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        s = self.dataset.samples[i]
        img = read_sample_image(s.files, self.in_channels, s.where())
        if self.cache:
            self._cache[i] = img
        return img

    def target(self, i: int):
        labels = list(self.dataset.samples[i].labels)
        if self.multi_label:
            t = torch.zeros(self.num_classes)
            t[labels] = 1.0
            return t
        return torch.tensor(labels[0], dtype=torch.int64)

    def __getitem__(self, index: int):
        i = self.sample_index(index)
        x = torch.from_numpy(scale_intensity(self.load(i), self.intensity))
        if self.augment is None:
            x = resize_to(x, self.size)
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            x = augment_image(x, self.size, self.augment, rng)
        return (x - self.mean) / self.std, self.target(i)


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.resize(x, [size, size], antialias=True)


def augment_image(x: torch.Tensor, size: int, a, rng: np.random.Generator) -> torch.Tensor:
    """Random resized crop to ``size``, flips, rotations and brightness/contrast of ``(C, H, W)``."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    h, w = x.shape[-2:]
    top, left, ch, cw = 0, 0, h, w
    for _ in range(10):
        area = h * w * rng.uniform(*a.crop_scale)
        ratio = math.exp(rng.uniform(math.log(a.crop_ratio[0]), math.log(a.crop_ratio[1])))
        cw_, ch_ = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw_ <= w and 0 < ch_ <= h:
            ch, cw = ch_, cw_
            top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            break
    x = F.resized_crop(x, top, left, ch, cw, [size, size], antialias=True)
    if a.hflip and rng.random() < 0.5:
        x = x.flip(-1)
    if a.vflip and rng.random() < 0.5:
        x = x.flip(-2)
    if a.rot90:
        k = int(rng.integers(4))
        if k:
            x = torch.rot90(x, k, (-2, -1))
    if a.rotation > 0:
        angle = float(rng.uniform(-a.rotation, a.rotation))
        x = F.rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
    if a.intensity > 0:
        gain = 1.0 + float(rng.uniform(-a.intensity, a.intensity))
        bias = float(rng.uniform(-a.intensity, a.intensity)) * float(x.mean()) * 0.5
        x = x * gain + bias
    return x.contiguous()


def prepare_input(img: np.ndarray, *, intensity: str, image_size: int, mean, std) -> torch.Tensor:
    """One native ``(H, W, C)`` image -> the normalised network input ``(C, S, S)``."""
    x = resize_to(torch.from_numpy(scale_intensity(img, intensity)), image_size)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (x - m) / s


# ------------------------------------------------------------------------------------------ config


def datasets_from_config(cfg) -> tuple[ClassificationDataset, np.ndarray, np.ndarray, ClassificationDataset | None]:
    """``(dataset, train_indices, val_indices, val_dataset)`` of a ClassifyConfig. With a separate
    ``data.val`` set the val indices index into ``val_dataset``; otherwise into ``dataset``."""
    d = cfg.data
    single = cfg.model.head == "single_label"
    kw = dict(class_names=d.class_names, class_names_file=d.class_names_file, channels=d.channels,
              single_label=single)
    ds = load_classification_dataset(d.train, images=d.images, **kw)
    if d.val is not None:
        val = load_classification_dataset(d.val, **{**kw, "class_names": ds.class_names,
                                                     "class_names_file": None})
        return ds, np.arange(len(ds)), np.arange(len(val)), val
    ids = {s.id: i for i, s in enumerate(ds.samples)}

    def lookup(path):
        out = []
        for sid in read_id_file(path):
            if sid not in ids:
                raise InputError(f"Id '{sid}' is not in the dataset {ds.source}", path=path)
            out.append(ids[sid])
        return np.array(sorted(set(out)), np.int64)

    if d.val_ids is not None or d.train_ids is not None:
        val_idx = lookup(d.val_ids) if d.val_ids is not None else None
        tr_idx = lookup(d.train_ids) if d.train_ids is not None else None
        if tr_idx is None:
            tr_idx = np.setdiff1d(np.arange(len(ds)), val_idx)
        if val_idx is None:
            val_idx = np.setdiff1d(np.arange(len(ds)), tr_idx)
        both = np.intersect1d(tr_idx, val_idx)
        if len(both):
            raise InputError(f"{len(both)} Id(s) are in both train_ids and val_ids, e.g. '{ds.samples[both[0]].id}'",
                             path=d.val_ids)
        if len(tr_idx) == 0:
            raise InputError("no training images left", path=d.train_ids or d.val_ids)
        return ds, tr_idx, val_idx, None
    seed = d.split_seed if d.split_seed is not None else cfg.train.seed
    tr_idx, val_idx = stratified_split(ds.label_matrix(), d.val_fraction, seed)
    return ds, tr_idx, val_idx, None
