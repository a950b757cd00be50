"""``task: detection`` — Faster R-CNN boxes (multi-class, boxes may overlap).

A config looks like ``configs/bccd_fasterrcnn_r18.yaml``. Relative paths resolve against the
config file's folder. ``data.train`` / ``data.val`` are any dataset
:func:`~morphoscope.formats.load_instance_dataset` reads: a VOC folder or one of its split lists
(``ImageSets/Main/train.txt``), COCO with boxes, or any mask layout (boxes = mask extents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from morphoscope.config import (
    AugmentConfig,
    InferenceConfig,
    NormalizeConfig,
    Strict,
    TrainConfig,
    TuneConfig,
)


class DetectionDataConfig(Strict):
    train: Path
    val: Path | None = None
    class_name: str = "object"  # for layouts without class names
    normalize: NormalizeConfig = NormalizeConfig()
    min_box_size: float = Field(2.0, ge=0, description="boxes narrower or lower than this (pixels) after cropping are dropped")
    min_visible: float = Field(0.5, ge=0, le=1, description="a box cut by a training crop is kept when at least this fraction of its area is inside")
    score_class: str | None = Field(None, description="validation picks the model (model_best.pt) and its score threshold by this class's box AP and F1; default: the mean over classes")


class FasterRCNNModelConfig(Strict):
    architecture: Literal["fasterrcnn"] = "fasterrcnn"
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet18"
    pretrained: Literal["none", "imagenet", "coco"] = "none"
    weights: Path | None = Field(None, description="local weights file (offline path); backbone-only or full model state dict")
    trainable_layers: int = Field(5, ge=0, le=5)
    norm: Literal["batch", "frozen_batch", "group"] = "batch"
    scale: float = Field(1.0, gt=0, description="images are resized by this factor before the network")
    anchor_sizes: list[int] = [16, 32, 64, 128, 256]
    aspect_ratios: list[float] = [0.5, 1.0, 2.0]
    detections_per_image: int = Field(300, ge=1, description="per prediction window (block), not per image")
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    box_batch_size_per_image: int = 256
    fpn_channels: int = Field(256, ge=16, description="FPN width; 64-128 make CPU training several times faster")
    box_head_size: int = Field(1024, ge=16, description="hidden size of the two-layer box head")
    box_score_thresh: float = Field(0.05, ge=0, le=1, description="lowest score the model outputs (kept for AP and for moving the threshold later)")
    box_nms_thresh: float = Field(0.5, gt=0, le=1)

    @field_validator("anchor_sizes")
    @classmethod
    def _five_levels(cls, v):
        if len(v) != 5:
            raise ValueError("anchor_sizes needs one size per FPN level: 5 values")
        return v


class DetectionConfig(Strict):
    """``task: detection`` — Faster R-CNN object detection (boxes)."""

    task: Literal["detection"] = "detection"
    name: str = "detection"
    data: DetectionDataConfig
    model: FasterRCNNModelConfig = FasterRCNNModelConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()
    inference: InferenceConfig = InferenceConfig()
    tune: TuneConfig = TuneConfig()
