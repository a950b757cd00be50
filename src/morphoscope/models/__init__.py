"""Trained models as files: checkpoints, shipped weights and local weights files
(:mod:`morphoscope.models.checkpoint`). Networks are built by their task
(:mod:`morphoscope.tasks`); ``morphoscope.tasks.load_model`` loads one ready to use."""
