"""The classifier for export: prepared images -> class probabilities (sigmoid for multi-label,
softmax for single-label), as :class:`~.task.ClassifyInference` computes them."""

from __future__ import annotations

import torch
from torch import nn

from morphoscope.engine.task import ExportSpec


class ClassifyExport(nn.Module):
    def __init__(self, net: nn.Module, multi_label: bool):
        super().__init__()
        self.net = net
        self.multi_label = bool(multi_label)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.net(image).float()
        if self.multi_label:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)


def export_spec(bundle) -> ExportSpec:
    import copy

    cfg = bundle.cfg
    multi = cfg.model.head == "multi_label"
    s = int(cfg.data.image_size)
    module = ClassifyExport(copy.deepcopy(bundle.model).cpu().float(), multi).eval()
    doc = (f"input 'image': float32 (B, {cfg.model.in_channels}, {s}, {s}): the image resized to {s}x{s}, "
           f"intensities scaled ({bundle.normalize.get('intensity', cfg.data.intensity)}), then per channel "
           f"minus mean {bundle.normalize.get('mean')} over std {bundle.normalize.get('std')}. "
           f"output 'probabilities': float32 (B, {len(bundle.class_names)}) for {', '.join(bundle.class_names)} "
           f"({'sigmoid, multi-label' if multi else 'softmax, single-label'}).")
    return ExportSpec(module=module, outputs=("probabilities",), doc=doc, min_side=s, fixed_size=(s, s))
