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
        pixel_size: Annotated[Optional[float], typer.Option("--pixel-size", help="pixel size in µm (default: from the file's metadata); also rescales images for a model that records its training pixel size")] = None,
        z_spacing: Annotated[Optional[float], typer.Option("--z-spacing", help="distance between the Z planes of stacks in µm (default: from the file's metadata); with --pixel-size it gives 3D objects their voxel shape and measurements their µm³")] = None,
        volume: Annotated[Optional[bool], typer.Option("--volume/--planes", help="stacks with Z: one 3D object per nucleus through Z (semantic models: a 3D seeded watershed on the stacked maps), or 2D objects per plane (default from the model)")] = None,
        diameter: Annotated[Optional[str], typer.Option("--diameter", help="median object diameter in the images, in pixels: images are rescaled to the model's object size and the labels come back on the input grid; 'auto' (default for models that record their object size, e.g. nuclei) estimates it per image, 'off' keeps the input's scale")] = None,
        block_size: Annotated[Optional[int], typer.Option("--block-size", help="largest window the network sees at once, in pixels (default from the model)")] = None,
        block_margin: Annotated[Optional[int], typer.Option("--block-margin", help="context around each block in pixels; keep above the object size")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="windows per network call (raise on a GPU)")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="replace existing outputs")] = False,
        resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out (finished images are kept)")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="stop at the first image that cannot be predicted")] = False,
        export: Annotated[Optional[str], typer.Option("--export", help="also write files for other tools, comma-separated: roi (ImageJ/Fiji ROI zip), geojson (QuPath), ome-zarr (labels), cellprofiler (tables; turns on --measure), or all")] = None,
    ) -> None:
        """Predict images with a trained model: labels TIFF, per-class masks, overlays, COCO JSON.

        A bad image is reported and skipped; the others are written and the command ends with a
        non-zero exit status naming what failed. Runs under torchrun (each process takes a share
        of the images)."""
        from morphoscope.formats.exports import export_names, needs_measurements
        from morphoscope.prediction.predict import predict

        exports = export_names(export)  # unknown names fail here, before the model is loaded
        measure = measure or needs_measurements(exports)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out_dir = predict(inputs, out, model=model, device=device, overwrite=overwrite, resume=resume,
                                  strict=strict, measure=measure, pixel_size=pixel_size, diameter=diameter, axes=axes,
                                  z_spacing=z_spacing, volume=volume,
                                  score_threshold=score_threshold, threshold=threshold,
                                  mask_threshold=mask_threshold, block_size=block_size,
                                  block_margin=block_margin, batch_size=batch_size, exports=exports)
            finally:
                for w in caught:
                    typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
        import os

        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
            typer.echo(f"predictions written to {out_dir}")
