"""Annotation formats in: instance-label image folders (the BBBC039 layout), one-mask-per-object
folders (the Kaggle DSB2018 layout), COCO JSON, and the exports of Label Studio (JSON, JSON_MIN,
COCO, COCO_WITH_IMAGES, BRUSH_TO_COCO, BRUSH_TO_PNG) and CVAT (CVAT for images 1.1, COCO 1.0),
zipped or not; and out again. docs/annotations.md lists them with their commands and tests."""

from morphoscope.formats.coco import (
    load_coco,
    masks_to_coco_annotations,
    rle_decode,
    rle_encode,
    segmentation_to_mask,
)
from morphoscope.formats.common import AnnotatedObject, strip_upload_prefix
from morphoscope.formats.convert import convert_dataset
from morphoscope.formats.dataset import InstanceDataset, Sample, detect_layout, load_instance_dataset

__all__ = [
    "AnnotatedObject",
    "InstanceDataset",
    "Sample",
    "convert_dataset",
    "detect_layout",
    "load_coco",
    "load_instance_dataset",
    "masks_to_coco_annotations",
    "rle_decode",
    "rle_encode",
    "segmentation_to_mask",
    "strip_upload_prefix",
]
