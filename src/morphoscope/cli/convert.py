from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert_cmd(
        src: Annotated[Path, typer.Argument(help="dataset: COCO .json, images/+labels/ folder, or Kaggle <id>/images+masks folder")],
        dst: Annotated[Path, typer.Argument(help="output folder")],
        to: Annotated[str, typer.Option("--to", help="coco | labels | kaggle")],
        overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    ) -> None:
        """Convert annotations between COCO JSON, instance-label folders and Kaggle mask folders."""
        from morphoscope.formats.convert import convert_dataset

        typer.echo(f"written: {convert_dataset(src, dst, to=to, overwrite=overwrite)}")
