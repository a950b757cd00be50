"""Annotation formats in: COCO JSON (Label Studio / CVAT exports), instance-label image folders
(the BBBC039 layout) and one-mask-per-object folders (the Kaggle DSB2018 layout); and out again."""

from morphoscope.formats.dataset import InstanceDataset, Sample, detect_layout, load_instance_dataset
from morphoscope.formats.coco import load_coco, masks_to_coco_annotations, rle_encode, rle_decode
from morphoscope.formats.convert import convert_dataset

__all__ = [
    "InstanceDataset",
    "Sample",
    "convert_dataset",
    "detect_layout",
    "load_coco",
    "load_instance_dataset",
    "masks_to_coco_annotations",
    "rle_decode",
    "rle_encode",
]
