from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert_cmd(
        src: Annotated[Path, typer.Argument(help=(
            "dataset or annotation export: images/+labels/ folder, Kaggle <id>/images+masks folder, "
            "COCO .json, Label Studio JSON / JSON_MIN / COCO / BRUSH_TO_COCO / BRUSH_TO_PNG, CVAT for "
            "images 1.1 .xml or CVAT COCO 1.0, or the .zip the tool hands out (docs/annotations.md)"))],
        dst: Annotated[Path, typer.Argument(help="output folder")],
        to: Annotated[str, typer.Option("--to", help="coco | labels | kaggle")],
        images: Annotated[Path | None, typer.Option(
            "--images", help="folder of your images, for exports that hold only annotations; images "
                             "are matched by name (Label Studio's upload prefix stripped)")] = None,
        class_name: Annotated[str, typer.Option(
            "--class-name", help="class of objects without a label (label folders, Kaggle, unlabelled regions)")] = "nucleus",
        overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    ) -> None:
        """Convert annotations (label folders, Kaggle, COCO, Label Studio, CVAT) to COCO JSON,
        instance-label folders or Kaggle mask folders."""
        import warnings

        from morphoscope.formats.convert import convert_dataset

        # warnings name their file; print each as one line, not with Python's source excerpt
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                out = convert_dataset(src, dst, to=to, overwrite=overwrite, images=images,
                                      class_name=class_name)
            finally:  # also when an error follows: the warnings may explain it
                for w in caught:
                    if issubclass(w.category, UserWarning):
                        typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
                    else:
                        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        typer.echo(f"written: {out}")
