"""``task: detection`` — Faster R-CNN boxes (multi-class, boxes may overlap).

A config looks like ``configs/bccd_fasterrcnn_r18.yaml``. Relative paths resolve against the
config file's folder. ``data.train`` / ``data.val`` are any dataset
:func:`~morphoscope.formats.load_instance_dataset` reads: a VOC folder or one of its split lists
(``ImageSets/Main/train.txt``), COCO with boxes, or any mask layout (boxes = mask extents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from morphoscope.config import (
    AugmentConfig,
    InferenceConfig,
    NormalizeConfig,
    Strict,
    TrainConfig,
    TuneConfig,
)
from morphoscope.tasks.instance.config import RCNNModelConfig


class DetectionDataConfig(Strict):
    train: Path
    val: Path | None = None
    class_name: str = "object"  # for layouts without class names
    normalize: NormalizeConfig = NormalizeConfig()
    min_box_size: float = Field(2.0, ge=0, description="boxes narrower or lower than this (pixels) after cropping are dropped")
    min_visible: float = Field(0.5, ge=0, le=1, description="a box cut by a training crop is kept when at least this fraction of its area is inside")
    score_class: str | None = Field(None, description="validation picks the model (model_best.pt) and its score threshold by this class's box AP and F1; default: the mean over classes")


class FasterRCNNModelConfig(RCNNModelConfig):
    """Mask R-CNN's settings without the mask head; defaults for boxes of cells in blood smears."""

    architecture: Literal["fasterrcnn"] = "fasterrcnn"
    anchor_sizes: list[int] = [16, 32, 64, 128, 256]
    detections_per_image: int = Field(300, ge=1, description="per prediction window (block), not per image")
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    box_nms_thresh: float = Field(0.5, gt=0, le=1)


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
