from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Annotated[Path, typer.Argument(help="YAML config (task: instance | semantic | classify)")],
        out: Annotated[Optional[Path], typer.Option("--out", help="run folder (default runs/<name>)")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="continue from RUN_DIR/checkpoint_last.pt")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="start again in a run folder that has results")] = False,
    ) -> None:
        """Train a model. Works unchanged under `torchrun --nproc-per-node N -m morphoscope train ...`."""
        from morphoscope.training.run import train

        run_dir = train(config, out=out, resume=resume, overwrite=overwrite)
        typer.echo(f"run folder: {run_dir}")
