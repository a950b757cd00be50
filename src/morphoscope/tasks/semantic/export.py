"""The semantic network for export: prepared windows -> class probabilities and the extra maps,
with the prediction engine's padding to the FPN's stride, its test-time augmentation and its
softmax/sigmoid built in."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from morphoscope.engine.task import ExportSpec


def rot90(x: torch.Tensor, turns: int) -> torch.Tensor:
    """``torch.rot90(x, turns, [-2, -1])`` from flips and a transpose (ONNX has no rot90)."""
    turns = turns % 4
    if turns == 1:
        return x.transpose(-2, -1).flip([-2])
    if turns == 2:
        return x.flip([-2, -1])
    if turns == 3:
        return x.transpose(-2, -1).flip([-1])
    return x


class SemanticExport(nn.Module):
    """``(B, C, H, W)`` normalised image (H, W >= 64) -> ``(B, K+1+A, H, W)`` maps: the class
    probabilities (softmax, background first), then the boundary and/or distance maps (sigmoid)
    and the size head's log2 diameter ratio, where the model has those heads; averaged over the
    model's test-time transforms. Same arithmetic as
    :meth:`~morphoscope.tasks.semantic.task.SemanticInference.network`."""

    def __init__(self, net: nn.Module, num_classes: int, n_sigmoid: int, size_head: bool,
                 transforms: list[tuple[bool, int]]):
        super().__init__()
        self.net = net
        self.k = int(num_classes) + 1
        self.n_sigmoid = int(n_sigmoid)
        self.size_head = bool(size_head)
        # (flip left-right, quarter turns) as the engine's TTA; never empty, so TorchScript infers
        # List[Tuple[bool, int]] from the value
        self.transforms = [(bool(f), int(r)) for f, r in transforms]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = (32 - h % 32) % 32, (32 - w % 32) % 32
        x = F.pad(x, [0, pw, 0, ph], mode="reflect")  # sides >= 64 > any pad: reflect, as the engine
        return self.net(x)[:, :, :h, :w].float()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(0)
        for flip, turns in self.transforms:
            t = torch.flip(image, [-1]) if flip else image
            t = rot90(t, turns)
            y = self._logits(t)
            y = rot90(y, -turns)
            y = torch.flip(y, [-1]) if flip else y
            parts = [y[:, : self.k].softmax(1)]
            if self.n_sigmoid:
                parts.append(torch.sigmoid(y[:, self.k: self.k + self.n_sigmoid]))
            if self.size_head:
                parts.append(y[:, self.k + self.n_sigmoid: self.k + self.n_sigmoid + 1])
            maps = torch.cat(parts, 1)
            total = maps if total.numel() == 0 else total + maps
        return total / len(self.transforms)


def export_spec(bundle) -> ExportSpec:
    import copy

    from morphoscope.tasks.semantic.model import aux_names
    from morphoscope.tasks.semantic.task import TTA_TRANSFORMS

    cfg = bundle.cfg
    names = aux_names(cfg.model)
    sig = [n for n in names if n != "size"]
    tta = int(bundle.extra.get("tta", 1))
    module = SemanticExport(copy.deepcopy(bundle.model).cpu().float(), cfg.num_classes, len(sig), "size" in names,
                            TTA_TRANSFORMS[tta]).eval()
    classes = ["background", *bundle.class_names]
    channels = classes + names
    doc = (f"input 'image': float32 (B, {cfg.model.in_channels}, H, W), H and W >= 64: the image "
           f"scaled so that its {bundle.normalize.get('low', 1.0)}th..{bundle.normalize.get('high', 99.8)}th "
           "percentiles (over all its pixels and channels) map to 0..1, then clipped to -1..3. "
           f"output 'maps': float32 (B, {len(channels)}, H, W): {', '.join(classes)} probabilities (softmax)"
           + (f"; {', '.join(sig)} (sigmoid, 0..1)" if sig else "")
           + ("; size: log2(object diameter / the model's diameter)" if "size" in names else "")
           + (f"; averaged over {tta} flips/rotations (test-time augmentation)" if tta > 1 else "")
           + ". Objects follow from a threshold on 1 - background and a seeded watershed "
           "(morphoscope.tasks.semantic.postprocess).")
    return ExportSpec(module=module, outputs=("maps",), doc=doc, dense=True, channels=channels,
                      min_side=64, step=1)
