from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Annotated[Path, typer.Argument(help="YAML config (its task: key picks the model family)")],
        out: Annotated[Optional[Path], typer.Option("--out", help="run folder (default runs/<name>)")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="continue from RUN_DIR/checkpoint_last.pt")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="start again in a run folder that has results")] = False,
        weights: Annotated[Optional[Path], typer.Option("--weights", help="local initial weights file (offline alternative to pretrained downloads); overrides model.weights")] = None,
    ) -> None:
        """Train a model. Works unchanged under `torchrun --nproc-per-node N -m morphoscope train ...`."""
        from morphoscope.tasks import load_config
        from morphoscope.training.run import train

        cfg = load_config(config)
        if weights is not None:
            if not hasattr(cfg, "model") or not hasattr(cfg.model, "weights"):
                from morphoscope.errors import ConfigError

                raise ConfigError(f"task '{cfg.task}' takes no --weights")
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": weights.resolve()})})
        run_dir = train(cfg, out=out, resume=resume, overwrite=overwrite)
        import os

        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
            typer.echo(f"run folder: {run_dir}")
