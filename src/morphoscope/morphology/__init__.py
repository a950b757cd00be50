"""Per-object morphology: shape and intensity measurements of instance-label images, with the
numbers of scikit-image ``regionprops`` computed for all objects at once, and their summaries.

Every measurement is defined once, in :mod:`morphoscope.morphology.definitions` (shown in
``docs/morphology.md`` and in the docstring of :func:`measure_labels`).
"""

from morphoscope.morphology.definitions import CORE, MEASUREMENTS, column_name
from morphoscope.morphology.measure import (
    check_label_image,
    check_pixel_size,
    concat_tables,
    intensity_measurements,
    measure_files,
    measure_labels,
    measure_prediction_dir,
    read_pixel_size,
    read_table,
    shape_measurements,
    write_table,
)
from morphoscope.morphology.summary import measurement_columns, summarize

__all__ = [
    "CORE", "MEASUREMENTS", "check_label_image", "check_pixel_size", "column_name",
    "concat_tables", "intensity_measurements", "measure_files", "measure_labels",
    "measure_prediction_dir", "measurement_columns", "read_pixel_size", "read_table",
    "shape_measurements", "summarize", "write_table",
]
