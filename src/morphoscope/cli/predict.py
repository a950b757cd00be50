"""``morphoscope predict``: images in, labels, masks, overlays, COCO JSON and tables out
(:func:`morphoscope.prediction.predict.predict`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_cmd(
        inputs: Annotated[list[str], typer.Argument(help="image files, folders or glob patterns (2D images, stacks, mosaics)")],
        out: Annotated[Path, typer.Option("--out", help="output folder")],
        model: Annotated[Optional[str], typer.Option("--model", help="shipped model name, checkpoint file or run folder (default: nuclei)")] = None,
        score_threshold: Annotated[Optional[float], typer.Option("--score-threshold", help="keep objects scoring at least this (instance models; default 0.5)")] = None,
        threshold: Annotated[Optional[float], typer.Option("--threshold", help="foreground probability threshold (semantic models; default from the model)")] = None,
        mask_threshold: Annotated[Optional[float], typer.Option("--mask-threshold", help="mask probability that makes a pixel part of an object (instance models; default from the model)")] = None,
        axes: Annotated[Optional[str], typer.Option("--axes", help="axes of stacks whose metadata does not say (e.g. ZYX, TYX, TZCYX)")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")] = "auto",
        measure: Annotated[bool, typer.Option("--measure", help="also write measurements.csv (one row per object)")] = False,
        pixel_size: Annotated[Optional[float], typer.Option("--pixel-size", help="pixel size in µm (default: from the file's metadata)")] = None,
        block_size: Annotated[Optional[int], typer.Option("--block-size", help="largest window the network sees at once, in pixels (default from the model)")] = None,
        block_margin: Annotated[Optional[int], typer.Option("--block-margin", help="context around each block in pixels; keep above the object size")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="windows per network call (raise on a GPU)")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="replace existing outputs")] = False,
        resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out (finished images are kept)")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="stop at the first image that cannot be predicted")] = False,
    ) -> None:
        """Predict images with a trained model: labels TIFF, per-class masks, overlays, COCO JSON.

        A bad image is reported and skipped; the others are written and the command ends with a
        non-zero exit status naming what failed. Runs under torchrun (each process takes a share
        of the images)."""
        from morphoscope.prediction.predict import predict

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out_dir = predict(inputs, out, model=model, device=device, overwrite=overwrite, resume=resume,
                                  strict=strict, measure=measure, pixel_size=pixel_size, axes=axes,
                                  score_threshold=score_threshold, threshold=threshold,
                                  mask_threshold=mask_threshold, block_size=block_size,
                                  block_margin=block_margin, batch_size=batch_size)
            finally:
                for w in caught:
                    typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
        typer.echo(f"predictions written to {out_dir}")
