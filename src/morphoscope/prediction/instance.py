"""Mask R-CNN prediction on one image, kept raw (all detections above the model's minimum score)
so that a score threshold can be applied afterwards without running the network again.

Masks are kept as crops inside their boxes: a 2048×2048 image with thousands of nuclei then costs
memory and time in proportion to the objects, not to objects × image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

from morphoscope.io.images import to_model_input


@dataclass
class InstancePrediction:
    """Detections of one image, highest score first.

    ``crops[i]`` is detection ``i``'s binary mask inside the window ``origins[i]`` = (y0, x0) of
    the image; ``scores`` in [0, 1]; ``classes`` 1..K; ``boxes`` ``(N, 4)`` x0, y0, x1, y1 pixels.
    """

    crops: list[np.ndarray]
    origins: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)

    def mask(self, i: int) -> np.ndarray:
        """Detection ``i``'s mask as a full-size ``(H, W)`` bool array."""
        full = np.zeros(self.shape, bool)
        y0, x0 = self.origins[i]
        c = self.crops[i]
        full[y0:y0 + c.shape[0], x0:x0 + c.shape[1]] = c
        return full

    def to_labels(self, score_threshold: float = 0.5, *, min_area: int = 1):
        """Instance labels ``(H, W)`` of the detections with score >= ``score_threshold``.

        Where masks overlap the higher-scoring object keeps the pixel; objects left with fewer
        than ``min_area`` pixels are dropped. Returns ``(labels, index)``: label ``k`` is
        detection ``index[k-1]``.
        """
        labels = np.zeros(self.shape, np.uint16 if len(self) < 65535 else np.uint32)
        kept = []
        for i in np.flatnonzero(self.scores >= score_threshold):
            y0, x0 = self.origins[i]
            c = self.crops[i]
            window = labels[y0:y0 + c.shape[0], x0:x0 + c.shape[1]]
            m = c & (window == 0)
            if m.sum() < min_area:
                continue
            kept.append(i)
            window[m] = len(kept)
        return labels, np.asarray(kept, dtype=np.int64)


def paste_masks_in_boxes(masks: torch.Tensor, boxes: torch.Tensor, shape, threshold: float):
    """Mask-head outputs ``(N, 1, M, M)`` -> per-detection binary crops, with exactly the
    arithmetic of torchvision's ``paste_masks_in_image`` (1-pixel padding, box expansion, bilinear
    resize to the integer box), cut to the image instead of pasted onto a full canvas."""
    h_img, w_img = shape
    masks, scale = expand_masks(masks, padding=1)
    boxes = expand_boxes(boxes, scale).to(dtype=torch.int64).tolist()
    crops, origins = [], []
    for m, (bx0, by0, bx1, by1) in zip(masks, boxes):
        w, h = max(bx1 - bx0 + 1, 1), max(by1 - by0 + 1, 1)
        r = F.interpolate(m[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        x0, x1 = max(bx0, 0), min(bx1 + 1, w_img)
        y0, y1 = max(by0, 0), min(by1 + 1, h_img)
        if x1 <= x0 or y1 <= y0:
            crops.append(np.zeros((0, 0), bool))
            origins.append((0, 0))
            continue
        crops.append((r[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] > threshold).cpu().numpy())
        origins.append((y0, x0))
    return crops, np.asarray(origins, np.int64).reshape(-1, 2)


@torch.inference_mode()
def predict_instances(bundle, image: np.ndarray) -> InstancePrediction:
    """Run an instance model on one image (native dtype, grey or RGB)."""
    model = bundle.model
    model.eval()
    norm = bundle.normalize
    x = torch.from_numpy(to_model_input(image, low=norm["low"], high=norm["high"])).to(bundle.device)
    transform = model.transform
    transform.paste_masks = False
    try:
        out = model([x])[0]
    finally:
        transform.paste_masks = True
    thr = bundle.config.get("model", {}).get("mask_threshold", 0.5)
    shape = tuple(image.shape[:2])
    crops, origins = paste_masks_in_boxes(out["masks"], out["boxes"], shape, thr)
    return InstancePrediction(crops=crops, origins=origins,
                              scores=out["scores"].cpu().numpy().astype(np.float32),
                              classes=out["labels"].cpu().numpy().astype(np.int64),
                              boxes=out["boxes"].cpu().numpy().astype(np.float32), shape=shape)
