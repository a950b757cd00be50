"""torchvision Mask R-CNN set up for microscopy: small anchors, many detections per image, a fixed
input scale instead of torchvision's resize-to-800px, and BatchNorm that trains from scratch."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import torch

from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models import resnet as resnet_models
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import misc as misc_ops

from morphoscope.tasks.instance.config import MaskRCNNModelConfig, RCNNModelConfig
from morphoscope.errors import ConfigError


class FixedScaleTransform(GeneralizedRCNNTransform):
    """Resize every image by one fixed factor (1 = native pixels).

    torchvision's default scales each image to ~800 px, which changes the apparent size of nuclei
    from image to image; microscopy objects have a physical size, so one factor is right.
    Normalisation (mean/std) and batching are torchvision's.
    """

    def __init__(self, scale: float, image_mean, image_std, size_divisible: int = 32):
        super().__init__(min_size=800, max_size=1333, image_mean=image_mean, image_std=image_std,
                         size_divisible=size_divisible)
        self.scale = float(scale)
        # False: postprocess leaves masks as the head's (N, 1, 28, 28) probabilities in box
        # coordinates, so prediction can paste each into its box instead of a full-size canvas
        # per detection (O(sum of box areas) instead of O(N * H * W)).
        self.paste_masks = True

    def postprocess(self, result: list[dict[str, torch.Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        # torchvision's postprocess without keypoints, plus the paste_masks switch; written out
        # (no super(), no local import) so that torch.jit.script compiles it
        if self.training:
            return result
        for i, (pred, im_s, o_im_s) in enumerate(zip(result, image_shapes, original_image_sizes)):
            boxes = resize_boxes(pred["boxes"], im_s, o_im_s)
            result[i]["boxes"] = boxes
            if "masks" in pred and self.paste_masks:
                result[i]["masks"] = paste_masks_in_image(pred["masks"], boxes, o_im_s)
        return result

    def resize(self, image: torch.Tensor, target: Optional[dict[str, torch.Tensor]] = None
               ) -> tuple[torch.Tensor, Optional[dict[str, torch.Tensor]]]:
        if self.scale == 1.0:
            return image, target
        image = nn.functional.interpolate(image[None], scale_factor=self.scale, mode="bilinear",
                                          recompute_scale_factor=True, align_corners=False)[0]
        if target is None:
            return image, target
        target["boxes"] = target["boxes"] * self.scale
        if "masks" in target:
            target["masks"] = nn.functional.interpolate(
                target["masks"][:, None].float(), size=image.shape[-2:], mode="nearest")[:, 0].byte()
        return image, target


def _norm_layer(kind: str):
    if kind == "frozen_batch":
        return misc_ops.FrozenBatchNorm2d
    if kind == "group":
        return partial(nn.GroupNorm, 32)
    return nn.BatchNorm2d


def build_rcnn(cfg: RCNNModelConfig, num_classes: int, model_class, *, coco_weights: str, image_mean=None,
               image_std=None, **heads):
    """A torchvision R-CNN (``model_class``: MaskRCNN or FasterRCNN) set up for microscopy: ResNet
    FPN backbone of ``cfg.fpn_channels``, one anchor size per FPN level, BatchNorm that trains
    from scratch (frozen when a pretrained backbone is partly frozen), narrow box head, one fixed
    input scale. ``heads`` are the extra heads of ``model_class`` (Mask R-CNN's mask head).

    ``pretrained: imagenet`` downloads torchvision's ImageNet backbone weights (online only);
    ``coco`` torchvision's ``coco_weights`` (a weights enum of ``torchvision.models.detection``,
    resnet50 only); ``weights: FILE`` loads a local file instead (offline), either a backbone
    ``state_dict`` or a whole-model ``state_dict`` (heads of another class count are skipped).
    """
    backbone_weights = None
    if cfg.pretrained == "imagenet" and cfg.weights is None:
        from torchvision.models import get_model_weights

        backbone_weights = get_model_weights(cfg.backbone).DEFAULT
    if cfg.pretrained == "coco" and cfg.weights is None and cfg.backbone != "resnet50":
        raise ConfigError(f"pretrained: coco exists for backbone resnet50 only (torchvision's {coco_weights})")
    frozen = cfg.pretrained != "none" and cfg.norm == "batch" and cfg.trainable_layers < 5
    resnet = resnet_models.__dict__[cfg.backbone](weights=backbone_weights,
                                                  norm_layer=_norm_layer("frozen_batch" if frozen else cfg.norm))
    backbone = _resnet_fpn_extractor(resnet, cfg.trainable_layers, norm_layer=None)
    if cfg.fpn_channels != backbone.out_channels:
        backbone.fpn = FeaturePyramidNetwork(
            [c[0].in_channels for c in backbone.fpn.inner_blocks], cfg.fpn_channels, extra_blocks=LastLevelMaxPool())
        backbone.out_channels = cfg.fpn_channels
    anchors = AnchorGenerator(sizes=tuple((s,) for s in cfg.anchor_sizes),
                              aspect_ratios=(tuple(cfg.aspect_ratios),) * len(cfg.anchor_sizes))
    model = model_class(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_detections_per_img=cfg.detections_per_image,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.box_head_size),
        box_predictor=FastRCNNPredictor(cfg.box_head_size, num_classes + 1),
        **heads,
    )
    pretrained = cfg.pretrained != "none"
    mean = image_mean if image_mean is not None else ([0.485, 0.456, 0.406] if pretrained else [0.5] * 3)
    std = image_std if image_std is not None else ([0.229, 0.224, 0.225] if pretrained else [0.25] * 3)
    model.transform = FixedScaleTransform(cfg.scale, mean, std)
    if cfg.pretrained == "coco" and cfg.weights is None:
        from torchvision.models import detection

        weights = getattr(detection, coco_weights).DEFAULT
        _load_partial(model, weights.get_state_dict(progress=True), source="COCO weights")
    if cfg.weights is not None:
        load_weights_file(model, cfg.weights)
    return model


def build_maskrcnn(cfg: MaskRCNNModelConfig, num_classes: int, *, image_mean=None, image_std=None) -> MaskRCNN:
    """Mask R-CNN; ``num_classes`` counts the foreground classes (background is added)."""
    return build_rcnn(cfg, num_classes, MaskRCNN, coco_weights="MaskRCNN_ResNet50_FPN_Weights",
                      image_mean=image_mean, image_std=image_std,
                      mask_head=MaskRCNNHeads(cfg.fpn_channels, cfg.mask_head_layers, 1),
                      mask_predictor=MaskRCNNPredictor(cfg.mask_head_layers[-1], cfg.mask_head_layers[-1],
                                                       num_classes + 1))


def load_weights_file(model: MaskRCNN, path: Path) -> None:
    """Load a local weights file into ``model``: a whole-model state dict (a morphoscope checkpoint
    or torchvision's file) or a plain ResNet backbone state dict (ImageNet weights)."""
    from morphoscope.models.checkpoint import read_weights_file

    path = Path(path)
    state = read_weights_file(path)
    if any(k.startswith("backbone.") for k in state):
        _load_partial(model, state, source=str(path))
    else:  # a classification ResNet: its layers live under backbone.body in Mask R-CNN
        body_state = {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
        loaded = _load_partial(model, body_state, source=str(path))
        if loaded == 0:
            raise ConfigError("no tensor in the weights file matches the model's backbone", path=path)


def _load_partial(model: nn.Module, state: dict, *, source: str) -> int:
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return len(usable)
