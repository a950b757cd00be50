"""Training samples for Mask R-CNN: random crops of real images with their instance masks,
augmented with torchvision transforms v2 so image, masks and boxes always stay consistent.

Determinism: each item's randomness comes from ``(seed, epoch, index)`` alone, so a resumed run
sees exactly the crops and augmentations the uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from morphoscope.config import AugmentConfig, NormalizeConfig
from morphoscope.formats.dataset import InstanceDataset
from morphoscope.io.images import to_model_input


class InstanceCropDataset(Dataset):
    """``length`` random crops per epoch from the images of ``dataset``.

    Each sample's image and label planes (one per class, so objects of different classes may
    overlap, e.g. organelles inside cells) are read once and kept in memory (far smaller than N
    binary masks). Objects with fewer than ``min_area`` pixels left after cropping are dropped;
    crops without objects are valid (they teach the background).
    """

    def __init__(self, dataset: InstanceDataset, *, crop_size: int | None, length: int,
                 augment: AugmentConfig | None, normalize: NormalizeConfig, seed: int = 0,
                 min_area: int = 4):
        self.dataset = dataset
        self.crop_size = crop_size
        self.length = length
        self.augment = augment
        self.normalize = normalize
        self.seed = seed
        self.min_area = min_area
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, dict]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _load(self, i: int):
        if i not in self._cache:
            s = self.dataset[i]
            img = s.load_image()
            # one label plane per class: an object inside an object of another class (an organelle
            # in its cell) stays whole, as its target mask must be
            planes, classes = s.load_class_planes(len(self.dataset.class_names), img.shape)
            x = to_model_input(img, low=self.normalize.low, high=self.normalize.high)
            self._cache[i] = (x, planes.astype(np.int32), classes)
        return self._cache[i]

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        i = int(rng.integers(len(self.dataset))) if self.length != len(self.dataset) else index
        x, labels, classes = self._load(i)
        x, labels = self._crop(x, labels, rng)
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(x)))
        mask = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(labels)))
        if self.augment is not None:
            # v2 draws from torch's global generator: give it this item's own seed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**31)))
                image, mask = self._geometric(image, mask, rng)
                image = self._photometric(image, rng)
        return image.as_subclass(torch.Tensor), self._target(mask.as_subclass(torch.Tensor), classes)

    def _crop(self, x, labels, rng):
        if self.crop_size is None:
            return x, labels
        c = self.crop_size
        h, w = labels.shape[-2:]
        if h < c or w < c:  # pad small images: zeros are "background" after normalisation
            ph, pw = max(0, c - h), max(0, c - w)
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
            labels = np.pad(labels, ((0, 0), (0, ph), (0, pw)))
            h, w = labels.shape[-2:]
        y0 = int(rng.integers(h - c + 1))
        x0 = int(rng.integers(w - c + 1))
        return x[:, y0:y0 + c, x0:x0 + c], labels[:, y0:y0 + c, x0:x0 + c]

    def _geometric(self, image, mask, rng):
        a = self.augment
        if a.hflip and rng.random() < 0.5:
            image, mask = v2.functional.horizontal_flip(image), v2.functional.horizontal_flip(mask)
        if a.vflip and rng.random() < 0.5:
            image, mask = v2.functional.vertical_flip(image), v2.functional.vertical_flip(mask)
        if a.rot90:
            k = int(rng.integers(4))
            if k:
                image, mask = torch.rot90(image, k, (-2, -1)), torch.rot90(mask, k, (-2, -1))
                image, mask = tv_tensors.Image(image), tv_tensors.Mask(mask)
        lo, hi = a.scale
        if hi > lo or lo != 1.0:
            f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if abs(f - 1.0) > 1e-3:
                size = [max(8, round(image.shape[-2] * f)), max(8, round(image.shape[-1] * f))]
                # v2 resizes the Mask with nearest neighbour, so label values survive
                image = v2.functional.resize(image, size, antialias=True)
                mask = v2.functional.resize(mask, size)
        return image, mask

    def _photometric(self, image, rng):
        a = self.augment
        if a.intensity > 0:
            gain = 1.0 + float(rng.uniform(-a.intensity, a.intensity))
            bias = float(rng.uniform(-a.intensity, a.intensity)) * 0.5
            image = image * gain + bias
        glo, ghi = a.gamma
        if ghi > glo:
            g = float(np.exp(rng.uniform(np.log(glo), np.log(ghi))))
            image = image.clamp(min=0) ** g
        slo, shi = a.blur_sigma
        if shi > 0 and rng.random() < a.blur_prob:
            sigma = float(rng.uniform(max(slo, 0.1), shi))
            image = v2.functional.gaussian_blur(image, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
        if a.noise_std > 0:
            image = image + torch.randn_like(image) * float(rng.uniform(0, a.noise_std))
        return tv_tensors.Image(image)

    def _target(self, labels: torch.Tensor, classes: dict) -> dict:
        """Targets from the class planes ``(K, H, W)``: every label lives in one plane."""
        ids, masks = [], []
        for plane in labels:
            pid, counts = torch.unique(plane, return_counts=True)
            pid = pid[(pid > 0) & (counts >= self.min_area)]
            ids.append(pid)
            masks.append(plane[None] == pid[:, None, None])
        ids = torch.cat(ids)
        order = torch.argsort(ids)  # label order, as from one label image
        ids = ids[order]
        masks = torch.cat(masks)[order].to(torch.uint8)
        boxes = masks_to_boxes(masks) if len(ids) else torch.zeros((0, 4))
        # masks_to_boxes gives pixel-centre extents; boxes cover whole pixels
        if len(ids):
            boxes[:, 2:] += 1
        cls = torch.tensor([classes.get(int(i), 1) for i in ids], dtype=torch.int64)
        return {"boxes": boxes.float(), "labels": cls, "masks": masks}


def collate(batch):
    return tuple(zip(*batch))
