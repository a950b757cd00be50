"""``morphoscope compare``: several trained models on the same annotated images, side by side
(:func:`morphoscope.compare.compare`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

GT_HELP = ("Annotated images: for segmentation models an instance dataset (images/ + labels/, Kaggle "
           "folder or COCO .json); for classifiers a labels CSV (Id,Target) or class folders "
           "(a run's val.csv works).")


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        models: Annotated[list[str], typer.Argument(help="run folders, checkpoint files or shipped model names")],
        gt: Annotated[Path, typer.Option("--gt", help=GT_HELP)],
        out: Annotated[Optional[Path], typer.Option("--out", help="write comparison.md/.csv/.json, plots and each model's predictions here")] = None,
        names: Annotated[Optional[str], typer.Option("--names", help="comma-separated display names, one per model")] = None,
        score_threshold: Annotated[float, typer.Option("--score-threshold", help="keep objects scoring at least this (instance models)")] = 0.5,
        bootstrap: Annotated[int, typer.Option("--bootstrap", min=100, help="bootstrap replicates")] = 2000,
        ci: Annotated[float, typer.Option("--ci", help="confidence level of the intervals")] = 0.95,
        seed: Annotated[int, typer.Option("--seed", help="seed of the bootstrap draws")] = 0,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
        no_plots: Annotated[bool, typer.Option("--no-plots", help="skip the PNG plots")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing comparison in --out")] = False,
    ) -> None:
        """Evaluate models on the same images and flag differences larger than image-to-image variation."""
        from morphoscope.compare.core import compare, format_markdown

        name_list = [n.strip() for n in names.split(",")] if names else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compare(models, gt, out=out, names=name_list, score_threshold=score_threshold,
                             n_boot=bootstrap, ci=ci, seed=seed, device=device, overwrite=overwrite,
                             plots=not no_plots, progress=True)
        for w in caught:
            typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
        typer.echo(format_markdown(result))
        if out is not None:
            typer.echo(f"comparison written to {out}")
