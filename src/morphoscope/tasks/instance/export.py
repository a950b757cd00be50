"""Mask R-CNN for export: one prepared image -> boxes, labels, scores and the mask head's
28x28 masks. torchvision's own transform, RPN, NMS and box decoding are inside; pasting the
masks into the image (torchvision's arithmetic, :func:`~.task.paste_masks_in_boxes`) is not, so
that the output stays O(detections), not O(detections x image size)."""

from __future__ import annotations

import torch
from torch import nn

from morphoscope.engine.task import ExportSpec


class InstanceExport(nn.Module):
    """``(1, 3, H, W)`` normalised image -> ``boxes`` (N, 4) x0,y0,x1,y1 in pixels, ``labels``
    (N,) int64 (1 = first class), ``scores`` (N,), ``masks`` (N, 1, 28, 28) probabilities inside
    each box; the steps of torchvision's ``GeneralizedRCNN.forward`` in eval mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        model.transform.paste_masks = False
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        img = image[0]
        sizes: list[tuple[int, int]] = [(img.shape[-2], img.shape[-1])]
        images, _ = self.model.transform([img])
        features = self.model.backbone(images.tensors)
        proposals, _ = self.model.rpn(images, features)
        detections, _ = self.model.roi_heads(features, proposals, images.image_sizes)
        detections = self.model.transform.postprocess(detections, images.image_sizes, sizes)
        d = detections[0]
        return d["boxes"], d["labels"], d["scores"], d["masks"]


def export_spec(bundle) -> ExportSpec:
    import copy

    module = InstanceExport(copy.deepcopy(bundle.model).cpu().float()).eval()
    mask_thr = bundle.cfg.model.mask_threshold
    doc = ("input 'image': float32 (1, 3, H, W), one image per call: the grey image repeated to 3 "
           f"channels, scaled so that its {bundle.normalize.get('low', 1.0)}th..{bundle.normalize.get('high', 99.8)}th "
           "percentiles map to 0..1, then clipped to -1..3. outputs: 'boxes' float32 (N, 4) x0, y0, x1, y1 "
           f"in input pixels; 'labels' int64 (N,) (1 = {bundle.class_names[0]}"
           + (", ..." if len(bundle.class_names) > 1 else "") + "); 'scores' float32 (N,), sorted "
           "high to low per class, at least the model's box_score_thresh; 'masks' float32 (N, 1, 28, 28): the "
           f"mask head's probabilities inside each box (paste with 1-pixel padding and box expansion as "
           f"torchvision's paste_masks_in_image, then threshold at {mask_thr}).")
    return ExportSpec(module=module, outputs=("boxes", "labels", "scores", "masks"), doc=doc, batch=False,
                      min_side=16, step=1)
