from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("morphoscope-demo"),
        model: Annotated[Optional[str], typer.Option("--model")] = None,
        device: Annotated[str, typer.Option("--device")] = "auto",
        overwrite: Annotated[bool, typer.Option("--overwrite")] = True,
    ) -> None:
        """Predict the bundled sample images with the default model, evaluate against their ground
        truth, measure every object and write a report."""
        from morphoscope.demo import run_demo

        run_demo(out, model=model, device=device, overwrite=overwrite, echo=typer.echo)
