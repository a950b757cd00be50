"""Reading images and writing results safely."""

from morphoscope.io.atomic import atomic_write, check_writable, prepare_output_dir
from morphoscope.io.images import (
    IMAGE_SUFFIXES,
    find_images,
    normalize_percentile,
    read_image,
    read_label_image,
    to_model_input,
    write_label_tiff,
    write_png,
)
from morphoscope.io.metadata import ImageMeta, read_metadata
from morphoscope.io.omezarr import create_labels_zarr, write_labels_zarr
from morphoscope.io.source import ImageSource, open_image

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageMeta",
    "ImageSource",
    "atomic_write",
    "check_writable",
    "create_labels_zarr",
    "find_images",
    "normalize_percentile",
    "open_image",
    "prepare_output_dir",
    "read_image",
    "read_label_image",
    "read_metadata",
    "to_model_input",
    "write_label_tiff",
    "write_labels_zarr",
    "write_png",
]
