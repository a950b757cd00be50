"""Segmentation quality: object matching at IoU thresholds (:mod:`.matching`), COCO AP by
pycocotools (:mod:`.coco_eval`) and both for a prediction folder (:mod:`.evaluate`)."""

from morphoscope.metrics.coco_eval import coco_evaluate
from morphoscope.metrics.evaluate import evaluate, evaluate_arrays, format_table
from morphoscope.metrics.matching import (
    THRESHOLDS,
    Matching,
    ThresholdMatch,
    iou_matrix,
    match,
    matching_stats,
    threshold_key,
)

__all__ = [
    "THRESHOLDS", "Matching", "ThresholdMatch", "coco_evaluate", "evaluate", "evaluate_arrays",
    "format_table", "iou_matrix", "match", "matching_stats", "threshold_key",
]
