"""``morphoscope train``: a config -> a run folder with checkpoints, validation metrics and logs,
for every task, through the one training loop (:func:`morphoscope.engine.training.train_run`).
The same command runs under ``torchrun --nproc-per-node N`` (and on several nodes)."""

from __future__ import annotations

from pathlib import Path

from morphoscope.tasks import get_task, load_config, parse_config


def train(config, *, out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True, on_validation=None, max_steps: int | None = None) -> Path:
    """Train the model a config describes; returns the run folder (default ``runs/<name>``).

    ``config`` is a YAML path, a dict or a validated config. With ``resume`` training continues
    from ``checkpoint_last.pt`` exactly where it stopped (same crops, same numbers); ``overwrite``
    clears a folder that holds an earlier run's results.
    """
    from morphoscope.engine.training import train_run

    if isinstance(config, (str, Path)):
        cfg = load_config(config)
    elif isinstance(config, dict):
        cfg = parse_config(config, base=Path.cwd())
    else:
        cfg = config
    return train_run(get_task(cfg.task), cfg, out=out, resume=resume, overwrite=overwrite, progress=progress,
                     on_validation=on_validation, max_steps=max_steps)
