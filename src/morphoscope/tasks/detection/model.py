"""torchvision Faster R-CNN, the instance task's Mask R-CNN without its mask head: the same
builder (:func:`~morphoscope.tasks.instance.model.build_rcnn`: ResNet FPN backbone, anchors per
FPN level, one fixed input scale instead of torchvision's resize-to-800 px, BatchNorm that trains
from scratch, narrow heads for CPUs)."""

from __future__ import annotations

from torchvision.models.detection import FasterRCNN

from morphoscope.tasks.detection.config import FasterRCNNModelConfig
from morphoscope.tasks.instance.model import build_rcnn


def build_fasterrcnn(cfg: FasterRCNNModelConfig, num_classes: int) -> FasterRCNN:
    """The network; ``num_classes`` counts the foreground classes (background is added).
    ``pretrained: coco`` loads torchvision's ``fasterrcnn_resnet50_fpn`` (resnet50 only)."""
    return build_rcnn(cfg, num_classes, FasterRCNN, coco_weights="FasterRCNN_ResNet50_FPN_Weights")
