"""Reports of measurements and predictions: figures (:mod:`.plots`), precision/recall/F1
curves against ground truth (:mod:`.scores`) and a self-contained HTML report (:mod:`.html`)."""

from morphoscope.reports.html import build_report, report_html
from morphoscope.reports.plots import (
    distribution_figure,
    figure_png,
    per_image_figure,
    pr_vs_iou_figure,
    pr_vs_score_figure,
    scatter_matrix_figure,
    score_histogram_figure,
)
from morphoscope.reports.scores import (
    gt_curves,
    iou_threshold_curve,
    pairs_for_scores,
    score_threshold_curve,
)

__all__ = [
    "build_report", "distribution_figure", "figure_png", "gt_curves", "iou_threshold_curve",
    "pairs_for_scores", "per_image_figure", "pr_vs_iou_figure", "pr_vs_score_figure",
    "report_html", "scatter_matrix_figure", "score_histogram_figure", "score_threshold_curve",
]
