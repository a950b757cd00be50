"""torchvision Faster R-CNN set up as the instance task's Mask R-CNN is (its box-only sibling):
ResNet FPN backbone, anchors per FPN level, one fixed input scale instead of torchvision's
resize-to-800 px (:class:`~morphoscope.tasks.instance.model.FixedScaleTransform`), BatchNorm that
trains from scratch, narrow heads for CPUs."""

from __future__ import annotations

from torchvision.models import resnet as resnet_models
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops.feature_pyramid_network import (
    FeaturePyramidNetwork,
    LastLevelMaxPool,
)

from morphoscope.errors import ConfigError
from morphoscope.tasks.detection.config import FasterRCNNModelConfig
from morphoscope.tasks.instance.model import (
    FixedScaleTransform,
    _load_partial,
    _norm_layer,
    load_weights_file,
)


def build_fasterrcnn(cfg: FasterRCNNModelConfig, num_classes: int) -> FasterRCNN:
    """The network; ``num_classes`` counts the foreground classes (background is added).

    ``pretrained: imagenet`` downloads torchvision's ImageNet backbone (online only); ``coco``
    torchvision's ``fasterrcnn_resnet50_fpn`` (resnet50 only; heads of another class count are
    skipped); ``weights: FILE`` loads a local backbone or whole-model state dict instead."""
    backbone_weights = None
    if cfg.pretrained == "imagenet" and cfg.weights is None:
        from torchvision.models import get_model_weights

        backbone_weights = get_model_weights(cfg.backbone).DEFAULT
    if cfg.pretrained == "coco" and cfg.weights is None and cfg.backbone != "resnet50":
        raise ConfigError("pretrained: coco exists for backbone resnet50 only (torchvision's fasterrcnn_resnet50_fpn)")
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
    model = FasterRCNN(
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
    )
    pretrained = cfg.pretrained != "none"
    model.transform = FixedScaleTransform(cfg.scale, [0.485, 0.456, 0.406] if pretrained else [0.5] * 3,
                                          [0.229, 0.224, 0.225] if pretrained else [0.25] * 3)
    if cfg.pretrained == "coco" and cfg.weights is None:
        from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

        _load_partial(model, FasterRCNN_ResNet50_FPN_Weights.DEFAULT.get_state_dict(progress=True), source="COCO weights")
    if cfg.weights is not None:
        load_weights_file(model, cfg.weights)
    return model
