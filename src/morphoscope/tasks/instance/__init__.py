"""``task: instance`` — Mask R-CNN instance segmentation (see :mod:`.task`)."""

from morphoscope.tasks.instance.task import InstanceTask

TASK = InstanceTask()
