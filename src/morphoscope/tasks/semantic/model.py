"""FPN / U-Net networks from segmentation-models-pytorch, and their losses.

Output channels: ``K + 1`` class logits (background first, softmax), then one extra channel when
``model.output`` is ``boundary`` (logit of "object border pixel") or ``distance`` (regressed
distance to the object border, normalised to 0..1 per object). Weights are never downloaded:
``encoder_weights: imagenet`` loads the local file ``model.weights``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from morphoscope.errors import ConfigError


def aux_names(model_cfg) -> list[str]:
    """The extra output channels after the class logits, in order."""
    names = {"mask": [], "boundary": ["boundary"], "distance": ["distance"],
             "boundary+distance": ["boundary", "distance"]}[model_cfg.output]
    if getattr(model_cfg, "size_head", False):
        names.append("size")
    return names


def out_channels(model_cfg, num_classes: int) -> int:
    return num_classes + 1 + len(aux_names(model_cfg))


def build_model(model_cfg, num_classes: int, *, load_weights: bool = True) -> torch.nn.Module:
    """The network a ``model:`` section describes, for ``num_classes`` foreground classes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import segmentation_models_pytorch as smp

    kw = dict(encoder_name=model_cfg.encoder, encoder_weights=None, in_channels=model_cfg.in_channels,
              classes=out_channels(model_cfg, num_classes))
    if model_cfg.architecture == "fpn":
        net = smp.FPN(decoder_pyramid_channels=model_cfg.decoder_channels,
                      decoder_segmentation_channels=max(32, model_cfg.decoder_channels // 2 // 32 * 32),
                      decoder_dropout=model_cfg.dropout, **kw)
    else:
        c = model_cfg.decoder_channels
        net = smp.Unet(decoder_channels=(c * 2, c, c // 2, max(16, c // 4), max(16, c // 8)), **kw)
    if load_weights and model_cfg.weights is not None:
        _load_weights(net, model_cfg.weights)
    return net


def _load_weights(net, path) -> None:
    from morphoscope.models.checkpoint import read_weights_file

    state = read_weights_file(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    full = net.state_dict()
    if any(k.startswith("encoder.") for k in state):
        target, prefix = full, ""
    else:  # a torchvision ResNet state dict: the encoder alone
        target, prefix = full, "encoder."
    loaded = {}
    for k, v in state.items():
        key = prefix + k
        if key in target and target[key].shape == v.shape:
            loaded[key] = v
        elif key in target and key.endswith("conv1.weight") and v.ndim == 4 and v.shape[1] == 3:
            # RGB first convolution -> as many input channels as the model has
            cin = target[key].shape[1]
            loaded[key] = v.mean(1, keepdim=True).repeat(1, cin, 1, 1) * (3 / cin)
    if not loaded:
        raise ConfigError("model.weights matches none of the network's parameters", path=path)
    net.load_state_dict(loaded, strict=False)


def build_from_config(cfg, num_classes: int) -> torch.nn.Module:
    """The architecture of a config, without weights (checkpoints are loaded into it)."""
    return build_model(cfg.model, num_classes, load_weights=False)


def soft_dice(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """1 - mean soft Dice over foreground classes (channel 0 = background is left out)."""
    p, t = probs[:, 1:], onehot[:, 1:]
    if valid is not None:
        p, t = p * valid, t * valid
    dims = (0, 2, 3)
    inter = (p * t).sum(dims)
    denom = p.sum(dims) + t.sum(dims)
    return 1 - ((2 * inter + 1.0) / (denom + 1.0)).mean()


def semantic_loss(logits: torch.Tensor, target: dict, model_cfg, loss_cfg, num_classes: int) -> dict:
    """Loss terms for a batch: ``ce`` + ``dice`` on the classes, ``aux`` on the extra head.

    ``target``: ``classes`` (B, H, W) long (-1 = ignore), ``aux`` (B, H, W) float.
    """
    k = num_classes + 1
    cls_logits = logits[:, :k].float()
    y = target["classes"]
    valid = (y >= 0)
    weight = None
    if loss_cfg.class_weights is not None:
        weight = torch.tensor(loss_cfg.class_weights, dtype=torch.float32, device=logits.device)
    out = {}
    if loss_cfg.ce > 0:
        out["ce"] = loss_cfg.ce * F.cross_entropy(cls_logits, y, weight=weight, ignore_index=-1)
    if loss_cfg.dice > 0:
        probs = cls_logits.softmax(1)
        onehot = F.one_hot(y.clamp(min=0), k).permute(0, 3, 1, 2).float()
        out["dice"] = loss_cfg.dice * soft_dice(probs, onehot, valid[:, None].float())
    m = valid.float()
    names = aux_names(model_cfg)
    for i, name in enumerate(names):
        z = logits[:, k + i].float()
        if name == "size":
            if getattr(loss_cfg, "size", 0) > 0 and "size" in target:
                fg = (y > 0).float()
                l1 = F.smooth_l1_loss(z, target["size"], reduction="none", beta=0.1)
                out["size"] = loss_cfg.size * (l1 * fg).sum() / fg.sum().clamp(min=1)
            continue
        if loss_cfg.aux <= 0:
            continue
        t = target[name] if name in target else target["aux"]
        key = "aux" if len([n for n in names if n != "size"]) == 1 else name
        if name == "boundary":
            bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
            out[key] = loss_cfg.aux * (bce * m).sum() / m.sum().clamp(min=1)
        else:
            l1 = (torch.sigmoid(z) - t).abs()
            out[key] = loss_cfg.aux * (l1 * m).sum() / m.sum().clamp(min=1)
    return out


def split_outputs(logits: torch.Tensor, model_cfg, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits -> class probabilities (B, K+1, H, W) and the extra map(s) or None: (B, H, W) in
    0..1 for one extra head, (B, 2, H, W) (boundary, distance) for ``boundary+distance``. A size
    head's channel is left out (:func:`size_output`)."""
    k = num_classes + 1
    probs = logits[:, :k].float().softmax(1)
    if model_cfg.output == "mask":
        return probs, None
    if model_cfg.output == "boundary+distance":
        return probs, torch.sigmoid(logits[:, k:k + 2].float())
    return probs, torch.sigmoid(logits[:, k].float())


def size_output(logits: torch.Tensor, model_cfg, num_classes: int) -> torch.Tensor | None:
    """The size head's map (B, H, W): log2(object diameter / the model's diameter), or None."""
    names = aux_names(model_cfg)
    if "size" not in names:
        return None
    return logits[:, num_classes + 1 + names.index("size")].float()
