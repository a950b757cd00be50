from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_cmd(
        inputs: Annotated[list[str], typer.Argument(help="image files, folders or glob patterns")],
        out: Annotated[Path, typer.Option("--out", help="output folder")],
        model: Annotated[Optional[str], typer.Option("--model", help="shipped model name, checkpoint file or run folder (default: nuclei)")] = None,
        score_threshold: Annotated[float, typer.Option("--score-threshold", help="keep objects scoring at least this (instance models)")] = 0.5,
        threshold: Annotated[Optional[float], typer.Option("--threshold", help="probability threshold (semantic models; default from the checkpoint)")] = None,
        axes: Annotated[Optional[str], typer.Option("--axes", help="axes of stacks whose metadata does not say (e.g. ZYX, TYX, TZCYX; semantic models)")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
        measure: Annotated[bool, typer.Option("--measure", help="also write measurements.csv (one row per object)")] = False,
        pixel_size: Annotated[Optional[float], typer.Option("--pixel-size", help="pixel size in µm for --measure")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="replace existing outputs")] = False,
    ) -> None:
        """Predict images with a trained model: labels TIFF, per-class masks, overlays, COCO JSON."""
        from morphoscope.prediction.predict import predict

        kwargs = {k: v for k, v in (("threshold", threshold), ("axes", axes)) if v is not None}
        out_dir = predict(inputs, out, model=model, score_threshold=score_threshold, device=device,
                          overwrite=overwrite, measure=measure, pixel_size=pixel_size, **kwargs)
        typer.echo(f"predictions written to {out_dir}")
