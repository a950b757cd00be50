"""``task: detection`` — Faster R-CNN boxes (see :mod:`.task`)."""

from morphoscope.tasks.detection.task import DetectionTask

TASK = DetectionTask()
