"""``morphoscope evaluate``: score a prediction folder against annotated ground truth
(:func:`morphoscope.metrics.evaluate`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from morphoscope.io.atomic import atomic_write, check_writable

PRED_HELP = "Output folder of 'morphoscope predict' (NAME_labels.tif + predictions.json)."
GT_HELP = "Annotated dataset: images/ + labels/ folder, Kaggle folder or COCO .json file."
MAXDET_HELP = "Highest-scoring detections per image that COCO AP considers."


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_command(
        pred: Annotated[Path, typer.Option("--pred", help=PRED_HELP)],
        gt: Annotated[Path, typer.Option("--gt", help=GT_HELP)],
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the full result here.")] = None,
        max_detections: Annotated[
            int, typer.Option("--max-detections", min=1, help=MAXDET_HELP)] = 1000,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace an existing --json file.")] = False,
    ) -> None:
        """Object matching (precision, recall, F1 at IoU 0.5..0.95) and COCO mask/box AP."""
        from morphoscope.metrics.evaluate import evaluate, format_table

        if json_out is not None:
            check_writable([json_out], overwrite=overwrite)  # fail before the work, not after
        if (pred / "classifications.csv").is_file():  # a classification model's predictions
            from morphoscope.classify.metrics import evaluate_classifications, format_metrics

            result = evaluate_classifications(pred, gt)
            typer.echo(format_metrics(result))
            if json_out is not None:
                with atomic_write(json_out, overwrite=overwrite, mode="w") as fh:
                    json.dump(result, fh, indent=2)
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = evaluate(pred, gt, max_detections=max_detections)
        for w in caught:
            typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
        typer.echo(format_table(result))
        if json_out is not None:
            with atomic_write(json_out, overwrite=overwrite, mode="w") as fh:
                json.dump(result, fh, indent=2)
                fh.write("\n")
