"""torchvision ResNet-18/34/50 for whole-image classification with 1 to 4 input channels.

ImageNet weights are for 3-channel RGB. For other channel counts the first convolution is adapted
the usual way: one channel gets the sum of the RGB filters (so a grey image gives the response an
RGB image of the same grey would), four channels get the RGB filters plus their mean for the fourth,
all scaled by 3 / channels to keep the activation scale.
"""

from __future__ import annotations


import torch
from torch import nn
from torchvision.models import resnet as resnet_models

from morphoscope.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_stats(channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std for ``channels`` inputs from ImageNet's RGB statistics."""
    if channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    m, s = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    if channels == 4:
        return [*IMAGENET_MEAN, m], [*IMAGENET_STD, s]
    return [m] * channels, [s] * channels


def _adapt_conv1(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """(64, 3, 7, 7) RGB filters -> (64, channels, 7, 7)."""
    if channels == 3:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if channels == 2:
        return torch.cat([weight[:, :2], mean], dim=1)[:, :2] * (3 / 2)
    return torch.cat([weight, mean], dim=1) * (3 / 4)


class ResNetClassifier(nn.Module):
    """A ResNet trunk (``backbone``: conv1 ... avgpool) and a linear ``head``. ``forward`` gives
    logits ``(N, num_classes)``."""

    def __init__(self, backbone_name: str, num_classes: int, in_channels: int, dropout: float = 0.0):
        super().__init__()
        net = resnet_models.__dict__[backbone_name](weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        features = net.fc.in_features
        net.fc = nn.Identity()
        self.backbone = net
        self.head = nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                  nn.Linear(features, num_classes))
        self.in_channels = in_channels
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze or unfreeze the trunk. A frozen trunk also keeps its BatchNorm statistics
        (see :meth:`train`)."""
        for p in self.backbone.parameters():
            p.requires_grad_(trainable)
        self._frozen = not trainable
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and getattr(self, "_frozen", False):
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


def build_from_config(cfg, num_classes: int) -> ResNetClassifier:
    """The architecture of ``cfg`` (a :class:`~morphoscope.tasks.classify.config.ClassifyConfig`) with
    random weights: used to load checkpoints, never downloads nor reads ``weights``."""
    in_channels = cfg.model.in_channels
    if in_channels is None:
        raise ConfigError("model.in_channels is not set (it is filled in from the data at training time)")
    return ResNetClassifier(cfg.model.backbone, num_classes, in_channels, cfg.model.dropout)


def build_model(cfg, num_classes: int) -> ResNetClassifier:
    """The network to train: :func:`build_from_config` plus the initial weights (ImageNet from
    torchvision, online, or the local ``model.weights`` file)."""
    model = build_from_config(cfg, num_classes)
    m = cfg.model
    state = None
    if m.weights is not None:
        from morphoscope.models.checkpoint import read_weights_file

        state = read_weights_file(m.weights)
    elif m.pretrained == "imagenet":
        from torchvision.models import get_model_weights

        try:
            state = get_model_weights(m.backbone).DEFAULT.get_state_dict(progress=False)
        except Exception as exc:  # offline
            raise ConfigError(
                f"cannot get the ImageNet weights of {m.backbone} ({type(exc).__name__}: {exc}); without "
                "internet download them once (torchvision's file, e.g. resnet18-f37072fd.pth) and set "
                "model.weights: /path/to/that/file") from None
    if state is not None:
        n = load_backbone_state(model, state)
        if n == 0:
            raise ConfigError("no tensor of the weights matches the model's backbone",
                              path=m.weights)
    return model


def load_backbone_state(model: ResNetClassifier, state: dict) -> int:
    """Load the tensors of a torchvision ResNet state dict (``conv1.weight``, ``layer1...``; ``fc`` is
    skipped) or a morphoscope classifier's (``backbone.*``; its head too when the class count
    matches) into ``model``; conv1 is adapted to the input channels. Returns the tensors loaded."""
    if any(k.startswith("backbone.") for k in state):
        remapped = dict(state)
    else:  # torchvision layout
        remapped = {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}
        remapped.pop("backbone.fc.weight", None)
    key = "backbone.conv1.weight"
    if key in remapped and remapped[key].shape[1] != model.in_channels and remapped[key].shape[1] == 3:
        remapped[key] = _adapt_conv1(remapped[key].float(), model.in_channels)
    own = model.state_dict()
    usable = {k: v for k, v in remapped.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sum(1 for k in usable if k.startswith("backbone."))
