"""Segmentation quality: object matching at IoU thresholds (:mod:`.matching`), per-image scores,
their mean over images and the DSB score (:mod:`.per_image`), COCO AP by pycocotools
(:mod:`.coco_eval`) and all of them for a prediction folder (:mod:`.evaluate`)."""

from morphoscope.metrics.coco_eval import coco_evaluate
from morphoscope.metrics.evaluate import (
    evaluate,
    evaluate_arrays,
    format_table,
    write_per_image_csv,
)
from morphoscope.metrics.matching import (
    THRESHOLDS,
    Matching,
    ThresholdMatch,
    iou_matrix,
    match,
    matching_stats,
    threshold_key,
)
from morphoscope.metrics.per_image import (
    DSB_THRESHOLDS,
    image_row,
    image_rows,
    per_image_summary,
    per_image_table,
)

__all__ = [
    "DSB_THRESHOLDS", "THRESHOLDS", "Matching", "ThresholdMatch", "coco_evaluate", "evaluate",
    "evaluate_arrays", "format_table", "image_row", "image_rows", "iou_matrix", "match",
    "matching_stats", "per_image_summary", "per_image_table", "threshold_key",
    "write_per_image_csv",
]
