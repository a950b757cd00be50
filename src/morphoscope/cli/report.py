"""``morphoscope report``: one self-contained HTML report of a prediction folder
(:func:`morphoscope.reports.build_report`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

SOURCE_HELP = ("Output folder of 'morphoscope predict' (NAME_labels.tif, NAME_overlay.png, "
               "predictions.json), or a training run folder that holds one.")
OUT_HELP = "HTML file to write (one file, images embedded; opens offline)."
GT_HELP = ("Annotated ground truth (images/ + labels/ folder, Kaggle folder or COCO .json): adds "
           "precision/recall/F1 against score and IoU thresholds.")
TABLE_HELP = "Measurement table from 'morphoscope measure' (.csv/.parquet) to use instead of "\
             "measuring the folder here."
IMAGE_HELP = "Source images (files, folders, patterns) for the intensity measurements."
PIXEL_HELP = "Pixel size in µm (default: TIFF metadata, else pixels)."
GROUPS_HELP = "CSV with columns image,group: compare groups of images in the figures."


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP, show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help=OUT_HELP)],
        gt: Annotated[Path | None, typer.Option("--gt", help=GT_HELP)] = None,
        table: Annotated[Path | None, typer.Option("--table", help=TABLE_HELP)] = None,
        image: Annotated[list[Path] | None, typer.Option("--image", help=IMAGE_HELP)] = None,
        pixel_size: Annotated[
            float | None, typer.Option("--pixel-size", help=PIXEL_HELP, metavar="UM")] = None,
        groups: Annotated[Path | None, typer.Option("--groups", help=GROUPS_HELP)] = None,
        gallery: Annotated[int, typer.Option(
            "--gallery", min=0, help="Overlays shown at most (evenly spaced).")] = 12,
        measurements: Annotated[str | None, typer.Option(
            "--measurements", help="Comma-separated measurements to plot distributions of "
                                   "(default: all shape measurements and the mean, median and "
                                   "integrated intensity).")] = None,
        title: Annotated[str | None, typer.Option("--title", help="Report title.")] = None,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace an existing report.")] = False,
    ) -> None:
        """Settings, summary tables, measurement distributions, score histograms, an overlay
        gallery and (with --gt) precision/recall/F1 curves, in one HTML file."""
        from morphoscope.errors import InputError
        from morphoscope.io.atomic import check_writable
        from morphoscope.morphology.measure import check_pixel_size
        from morphoscope.morphology.definitions import BY_NAME
        from morphoscope.reports.html import DEFAULT_DISTRIBUTIONS, build_report

        if out.suffix.lower() not in (".html", ".htm"):
            raise InputError("the report is an HTML file: give --out NAME.html", path=out)
        check_pixel_size(pixel_size)
        check_writable([out], overwrite=overwrite)
        chosen = DEFAULT_DISTRIBUTIONS
        if measurements is not None:
            chosen = tuple(m.strip() for m in measurements.split(",") if m.strip())
            unknown = [m for m in chosen if m not in BY_NAME]
            if unknown:
                raise InputError(f"unknown measurement(s) {unknown}; known: {sorted(BY_NAME)}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = build_report(source, out, gt=gt, table=table, images=image,
                                pixel_size=pixel_size, groups=groups, gallery=gallery,
                                measurements=chosen, title=title, overwrite=overwrite)
        for w in caught:
            if issubclass(w.category, UserWarning) and "morphoscope" in str(w.filename):
                typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
        size = path.stat().st_size / 1e6
        typer.echo(f"report -> {path} ({size:.1f} MB)")
