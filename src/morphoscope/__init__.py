"""morphoscope: microscopy images and annotations to trained models, predictions, per-object
measurements and reports."""

__version__ = "0.1.0"
