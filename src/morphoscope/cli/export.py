"""``morphoscope export``: a model as TorchScript, ONNX or a bioimage.io package, checked against
PyTorch on a real image (:func:`morphoscope.export.export_model`, docs/export.md)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Format(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"
    bioimageio = "bioimageio"


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        model: Annotated[str, typer.Argument(help="shipped model name, checkpoint file or run folder (as --model takes it)")],
        fmt: Annotated[Format, typer.Option("--format", help="torchscript (.pt), onnx (.onnx) or bioimageio (.zip; "
                                            "models with per-pixel outputs)", case_sensitive=False)],
        out: Annotated[Path, typer.Option("--out", help="file to write")],
        image: Annotated[Optional[Path], typer.Option("--image", help="image to check the export on (and the "
                                                      "bioimage.io test input); default: a bundled BBBC039 sample")] = None,
        check: Annotated[bool, typer.Option("--check/--no-check", help="run the exported file and compare its "
                                            "outputs with PyTorch's")] = True,
        opset: Annotated[int, typer.Option("--opset", min=11, help="ONNX opset (onnx, bioimageio)")] = 17,
        author: Annotated[Optional[list[str]], typer.Option("--author", help="author of the model (bioimageio; "
                                                            "repeat for several)")] = None,
        license: Annotated[str, typer.Option("--license", help="SPDX licence of the model (bioimageio)")] = "CC-BY-4.0",
        overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing file")] = False,
    ) -> None:
        """Export a model for other tools: TorchScript, ONNX (ONNX Runtime) or bioimage.io."""
        from morphoscope.export import export_model

        result = export_model(model, fmt.value, out, image=image, check=check, overwrite=overwrite, opset=opset,
                              authors=author, license=license)
        typer.echo(result.summary())
        for note in result.notes:
            typer.echo(f"note: {note}")
