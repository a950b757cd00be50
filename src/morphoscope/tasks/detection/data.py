"""Training samples for Faster R-CNN: random crops (or whole images) of real images with their
boxes, augmented so that image and boxes stay consistent (flips, 90° turns and rescaling move the
boxes exactly; intensity changes are the instance task's).

Boxes are read as annotated (:func:`~morphoscope.formats.voc.boxes_of`: VOC and box-only COCO as
written, masks as their extents), never through a label image: boxes overlap, and a label image
would hide the ones underneath.

Determinism: each item's randomness comes from ``(seed, epoch, index)`` alone, so a resumed run
sees exactly the crops the uninterrupted run would have seen. Images are decoded when an item
needs them (only the boxes are kept in memory): an RGB dataset of a few hundred images does not
sit in RAM as float32 arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from morphoscope.config import AugmentConfig, NormalizeConfig
from morphoscope.formats.dataset import InstanceDataset
from morphoscope.formats.voc import boxes_of
from morphoscope.io.images import to_model_input
from morphoscope.tasks.instance.data import InstanceCropDataset


def rot90_boxes(boxes: torch.Tensor, k: int, shape: tuple[int, int]) -> torch.Tensor:
    """Boxes ``(N, 4)`` x0, y0, x1, y1 of an ``(H, W)`` image after ``torch.rot90(image, k,
    (-2, -1))``: one turn maps pixel ``(r, c)`` to ``(W - 1 - c, r)``."""
    h, w = shape
    for _ in range(k % 4):
        x0, y0, x1, y1 = boxes.unbind(-1)
        boxes = torch.stack([y0, w - x1, y1, w - x0], dim=-1)
        h, w = w, h
    return boxes


def crop_boxes(boxes: np.ndarray, classes: np.ndarray, window: tuple[int, int, int, int], *,
               min_visible: float, min_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes inside the crop ``window`` (x0, y0, x1, y1), in its coordinates: each box clipped to
    it, kept when at least ``min_visible`` of its area and ``min_size`` pixels of each side lie
    inside."""
    wx0, wy0, wx1, wy1 = window
    c = boxes.copy()
    c[:, [0, 2]] = np.clip(c[:, [0, 2]], wx0, wx1)
    c[:, [1, 3]] = np.clip(c[:, [1, 3]], wy0, wy1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cw, ch = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    keep = (cw >= max(min_size, 1e-6)) & (ch >= max(min_size, 1e-6)) & (cw * ch >= min_visible * area)
    c = c[keep] - np.array([wx0, wy0, wx0, wy0], np.float32)
    return c.astype(np.float32), classes[keep]


class BoxCropDataset(InstanceCropDataset):
    """``length`` random crops per epoch (``crop_size`` None: whole images) with their boxes:
    ``(image (3, h, w) float32, {"boxes": (N, 4), "labels": (N,)})``. Crops without boxes are
    valid (they teach the background)."""

    def __init__(self, dataset: InstanceDataset, *, crop_size: int | None, length: int,
                 augment: AugmentConfig | None, normalize: NormalizeConfig, seed: int = 0,
                 min_size: float = 2.0, min_visible: float = 0.5):
        super().__init__(dataset, crop_size=crop_size, length=length, augment=augment,
                         normalize=normalize, seed=seed)
        self.min_size = float(min_size)
        self.min_visible = float(min_visible)
        self._boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _load(self, i: int):
        s = self.dataset[i]
        img = s.load_image()
        if i not in self._boxes:
            self._boxes[i] = boxes_of(s, img.shape)
        boxes, classes = self._boxes[i]
        return to_model_input(img, low=self.normalize.low, high=self.normalize.high), boxes, classes

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        i = int(rng.integers(len(self.dataset))) if self.length != len(self.dataset) else index
        x, boxes, classes = self._load(i)
        x, boxes, classes = self._crop_boxes(x, boxes, classes, rng)
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(x)))
        bb = tv_tensors.BoundingBoxes(torch.from_numpy(boxes).reshape(-1, 4), format="XYXY",
                                      canvas_size=tuple(image.shape[-2:]))
        if self.augment is not None:
            with torch.random.fork_rng(devices=[]):  # v2 draws from torch's global generator
                torch.manual_seed(int(rng.integers(2**31)))
                image, bb = self._geometric_boxes(image, bb, rng)
                image = self._photometric(image, rng)
        boxes = bb.as_subclass(torch.Tensor).float().reshape(-1, 4)
        labels = torch.from_numpy(classes.astype(np.int64))
        ok = ((boxes[:, 2] - boxes[:, 0]) >= max(self.min_size, 1e-3)) & \
             ((boxes[:, 3] - boxes[:, 1]) >= max(self.min_size, 1e-3))
        return image.as_subclass(torch.Tensor), {"boxes": boxes[ok], "labels": labels[ok]}

    def _crop_boxes(self, x, boxes, classes, rng):
        if self.crop_size is None:
            return x, boxes, classes
        c = self.crop_size
        h, w = x.shape[-2:]
        if h < c or w < c:  # pad small images: zeros are "background" after normalisation
            x = np.pad(x, ((0, 0), (0, max(0, c - h)), (0, max(0, c - w))))
            h, w = x.shape[-2:]
        y0 = int(rng.integers(h - c + 1))
        x0 = int(rng.integers(w - c + 1))
        boxes, classes = crop_boxes(boxes, classes, (x0, y0, x0 + c, y0 + c), min_visible=self.min_visible,
                                    min_size=self.min_size)
        return x[:, y0:y0 + c, x0:x0 + c], boxes, classes

    def _geometric_boxes(self, image, bb, rng):
        a = self.augment
        if a.hflip and rng.random() < 0.5:
            image, bb = v2.functional.horizontal_flip(image), v2.functional.horizontal_flip(bb)
        if a.vflip and rng.random() < 0.5:
            image, bb = v2.functional.vertical_flip(image), v2.functional.vertical_flip(bb)
        if a.rot90:
            k = int(rng.integers(4))
            if k:
                shape = tuple(image.shape[-2:])
                image = tv_tensors.Image(torch.rot90(image, k, (-2, -1)))
                bb = tv_tensors.BoundingBoxes(rot90_boxes(bb.as_subclass(torch.Tensor), k, shape),
                                              format="XYXY", canvas_size=tuple(image.shape[-2:]))
        lo, hi = a.scale
        if hi > lo or lo != 1.0:
            f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if abs(f - 1.0) > 1e-3:
                size = [max(8, round(image.shape[-2] * f)), max(8, round(image.shape[-1] * f))]
                image = v2.functional.resize(image, size, antialias=True)
                bb = v2.functional.resize(bb, size)
        return image, bb


def collate(batch):
    return tuple(zip(*batch))
