"""Whole-image classification (``task: classify``): multi-label or single-label ResNets.

Modules: :mod:`.config` (the config schema), :mod:`.data` (datasets, split, transforms),
:mod:`.model` (ResNet-18/34/50), :mod:`.train`, :mod:`.predict` (``classifications.csv``) and
:mod:`.metrics` (scikit-learn metrics, threshold tuning). See docs/classification.md.
"""
