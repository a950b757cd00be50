"""``task: instance`` — Mask R-CNN instance segmentation (multi-class, overlapping objects).

A config looks like ``configs/bbbc039_maskrcnn_r18.yaml``. Relative paths resolve against the
config file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from morphoscope.config import AugmentConfig, InferenceConfig, NormalizeConfig, Strict, TrainConfig, TuneConfig


class InstanceDataConfig(Strict):
    train: Path
    val: Path | None = None
    class_name: str = "nucleus"  # for layouts without class names (label images, Kaggle masks)
    normalize: NormalizeConfig = NormalizeConfig()
    min_object_area: int = Field(4, ge=0, description="objects smaller than this (pixels) after cropping are dropped")


class RCNNModelConfig(Strict):
    """What Mask R-CNN (``instance``) and Faster R-CNN (``detection``) share: the ResNet FPN
    backbone, anchors, the region proposal network and the box head. The defaults are Mask
    R-CNN's for dense nuclei; the detection task overrides a few."""

    architecture: str
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet18"
    pretrained: Literal["none", "imagenet", "coco"] = "none"
    weights: Path | None = Field(None, description="local weights file (offline path); backbone-only or full model state dict")
    trainable_layers: int = Field(5, ge=0, le=5)
    norm: Literal["batch", "frozen_batch", "group"] = "batch"
    scale: float = Field(1.0, gt=0, description="images are resized by this factor before the network (e.g. 2 for very small objects)")
    anchor_sizes: list[int] = [8, 16, 32, 64, 128]
    aspect_ratios: list[float] = [0.5, 1.0, 2.0]
    detections_per_image: int = Field(1000, ge=1, description="per prediction window (block), not per image")
    rpn_pre_nms_top_n_test: int = 3000
    rpn_post_nms_top_n_test: int = 2000
    rpn_pre_nms_top_n_train: int = 3000
    rpn_post_nms_top_n_train: int = 2000
    box_batch_size_per_image: int = 256
    fpn_channels: int = Field(256, ge=16, description="FPN width; 64-128 make CPU training several times faster")
    box_head_size: int = Field(1024, ge=16, description="hidden size of the two-layer box head")
    box_score_thresh: float = Field(0.05, ge=0, le=1, description="lowest score the model outputs (kept for AP and for moving the threshold later)")
    box_nms_thresh: float = Field(0.4, gt=0, le=1)

    @field_validator("anchor_sizes")
    @classmethod
    def _five_levels(cls, v):
        if len(v) != 5:
            raise ValueError("anchor_sizes needs one size per FPN level: 5 values")
        return v


class MaskRCNNModelConfig(RCNNModelConfig):
    architecture: Literal["maskrcnn"] = "maskrcnn"
    mask_head_layers: list[int] = Field([256, 256, 256, 256], min_length=1)
    mask_threshold: float = Field(0.5, gt=0, lt=1)


class InstanceConfig(Strict):
    """``task: instance`` — Mask R-CNN instance segmentation."""

    task: Literal["instance"] = "instance"
    name: str = "instance"
    data: InstanceDataConfig
    model: MaskRCNNModelConfig = MaskRCNNModelConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()
    inference: InferenceConfig = InferenceConfig()
    tune: TuneConfig = TuneConfig()
