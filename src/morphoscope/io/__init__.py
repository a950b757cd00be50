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

__all__ = [
    "IMAGE_SUFFIXES",
    "atomic_write",
    "check_writable",
    "find_images",
    "normalize_percentile",
    "prepare_output_dir",
    "read_image",
    "read_label_image",
    "to_model_input",
    "write_label_tiff",
    "write_png",
]
