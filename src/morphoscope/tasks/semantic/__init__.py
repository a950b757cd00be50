"""``task: semantic`` — FPN / U-Net pixel classification, objects by watershed (see :mod:`.task`)."""

from morphoscope.tasks.semantic.task import SemanticTask

TASK = SemanticTask()
