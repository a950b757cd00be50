"""``morphoscope measure``: one table row per object of label images or of a prediction folder
(:func:`morphoscope.morphology.measure_files`,
:func:`~morphoscope.morphology.measure_prediction_dir`),
with per-image and per-class summaries."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

LABELS_HELP = ("Label images (files, folders or glob patterns; 0 = background, 1..N = objects), "
               "or one output folder of 'morphoscope predict' (scores and classes are then read "
               "from its predictions.json).")
OUT_HELP = "Measurement table to write: .csv or .parquet."
IMAGE_HELP = ("Intensity images (files, folders or patterns) for the intensity columns, paired "
              "with the label images by file name. Repeat the option for several.")
PIXEL_HELP = ("Pixel size in µm: lengths in µm and areas in µm². Default: read from the TIFF "
              "metadata (OME or ImageJ), else pixels.")
CLASSES_HELP = ("classes.json mapping objects to classes ({\"names\": [...], \"objects\": "
                "{image: {label: class}}}); default: a classes.json beside the label images.")
GROUPS_HELP = "CSV with columns image,group: the condition of each image, for comparisons."
FOLDER_HELP = "Use the name of each label image's folder as its group."


def summary_paths(out: Path, *, group: bool) -> dict[str, Path]:
    """Summary files written beside the table ``out``."""
    levels = {"image": ("image", "class"), "class": ("class",)}
    if group:
        levels["group"] = ("group", "class")
    return {f"by_{k}": out.with_name(f"{out.stem}_summary_by_{k}{out.suffix}") for k in levels}


def register(app: typer.Typer) -> None:
    @app.command("measure")
    def measure_command(
        labels: Annotated[list[Path], typer.Argument(help=LABELS_HELP, show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help=OUT_HELP)],
        image: Annotated[list[Path] | None, typer.Option("--image", help=IMAGE_HELP)] = None,
        pixel_size: Annotated[
            float | None, typer.Option("--pixel-size", help=PIXEL_HELP, metavar="UM")] = None,
        classes: Annotated[Path | None, typer.Option("--classes", help=CLASSES_HELP)] = None,
        groups: Annotated[Path | None, typer.Option("--groups", help=GROUPS_HELP)] = None,
        group_by_folder: Annotated[
            bool, typer.Option("--group-by-folder", help=FOLDER_HELP)] = False,
        exclude_border: Annotated[bool, typer.Option(
            "--exclude-border", help="Drop objects touching the image border "
                                     "(otherwise kept, flagged in touches_border).")] = False,
        summary: Annotated[bool, typer.Option(
            "--summary/--no-summary",
            help="Also write OUT_summary_by_image and OUT_summary_by_class "
                 "(and _by_group) beside the table.")] = True,
        jobs: Annotated[int, typer.Option(
            "--jobs", "-j", help="Processes measuring images in parallel (-1: all cores).")] = 1,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
        strict: Annotated[bool, typer.Option(
            "--strict", help="Stop at the first image that cannot be measured (by default it is "
                             "reported and skipped, and the others are measured).")] = False,
    ) -> None:
        """Measure every object: area, perimeter, circularity, eccentricity, aspect ratio,
        solidity, anisotropy, axes, orientation, Feret diameters, intensities
        (definitions: docs/morphology.md).

        An image that cannot be read or measured is reported and skipped: the others are
        measured and written, and the command ends with a non-zero exit status naming what
        was skipped."""
        from morphoscope.errors import InputError, SkippedInputs
        from morphoscope.io.atomic import check_writable
        from morphoscope.morphology.measure import (
            check_pixel_size,
            check_table_path,
            measure_files,
            measure_prediction_dir,
            write_table,
        )
        from morphoscope.morphology.summary import summarize

        out = check_table_path(out)
        check_pixel_size(pixel_size)
        if groups is not None and group_by_folder:
            raise InputError("give --groups or --group-by-folder, not both")
        group_arg = "folder" if group_by_folder else groups
        has_group = group_arg is not None
        outputs = [out] + (list(summary_paths(out, group=has_group).values()) if summary else [])
        check_writable(outputs, overwrite=overwrite)
        pred_dir = None
        if len(labels) == 1 and (labels[0] / "predictions.json").is_file():
            pred_dir = labels[0]
        skipped = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if pred_dir is not None:
                    if classes is not None:
                        raise InputError("--classes does not apply to a prediction folder: "
                                         "classes come from its predictions.json", path=pred_dir)
                    table = measure_prediction_dir(pred_dir, images=image, pixel_size=pixel_size,
                                                   groups=group_arg, exclude_border=exclude_border,
                                                   n_jobs=jobs, strict=strict)
                else:
                    table = measure_files(labels, images=image, pixel_size=pixel_size,
                                          classes=classes, groups=group_arg,
                                          exclude_border=exclude_border, n_jobs=jobs, strict=strict)
            except SkippedInputs as exc:
                if exc.result is None:  # no image could be measured: nothing to write
                    raise
                skipped, table = exc, exc.result
            finally:
                for w in caught:
                    typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
        write_table(table, out, overwrite=overwrite)
        n_images = len(table.attrs.get("images", {}))
        typer.echo(f"{len(table)} objects in {n_images} image(s) -> {out}")
        if summary:
            paths = summary_paths(out, group=has_group)
            levels = {"by_image": ("image", "class"), "by_class": ("class",),
                      "by_group": ("group", "class")}
            for key, path in paths.items():
                write_table(summarize(table, by=levels[key]), path, overwrite=overwrite)
                typer.echo(f"summary {key.replace('_', ' ')} -> {path}")
        if skipped is not None:
            raise SkippedInputs(skipped.failed, done=skipped.done, action="measured",
                                outcome=f"the other {skipped.done} were measured into {out}")
