"""``task: classify`` — whole-image classification, multi- or single-label (see :mod:`.task`).

Modules: :mod:`.config` (the config schema), :mod:`.data` (datasets, split, transforms),
:mod:`.model` (ResNet-18/34/50), :mod:`.metrics` (scikit-learn metrics, threshold tuning) and
:mod:`.task` (training plan and prediction). See docs/classification.md.
"""

from morphoscope.tasks.classify.task import ClassifyTask

TASK = ClassifyTask()
