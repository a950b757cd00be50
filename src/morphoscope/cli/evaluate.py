"""``morphoscope evaluate``: score a prediction folder against annotated ground truth
(:func:`morphoscope.metrics.evaluate`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from morphoscope.io.atomic import atomic_write, check_writable

PRED_HELP = ("Output folder of 'morphoscope predict' (NAME_labels.tif + predictions.json); with "
             "--model, where the model's predictions are written (default: a temporary folder).")
MODEL_HELP = ("Predict the GT images with this model first (a shipped name, checkpoint file or run "
              "folder), through the same engine as 'morphoscope predict'.")
GT_HELP = "Annotated dataset: images/ + labels/ folder, Kaggle folder or COCO .json file."
MAXDET_HELP = "Highest-scoring detections per image that COCO AP considers."
PER_IMAGE_HELP = ("Also write one row per image here (CSV: image, n_gt, n_pred, then TP, FP, FN, "
                  "precision, recall, F1 and AP=TP/(TP+FP+FN) at each IoU threshold, and the "
                  "image's DSB score).")


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_command(
        gt: Annotated[Path, typer.Option("--gt", help=GT_HELP)],
        pred: Annotated[Path | None, typer.Option("--pred", help=PRED_HELP)] = None,
        model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto (with --model)")] = "auto",
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the full result here.")] = None,
        max_detections: Annotated[
            int, typer.Option("--max-detections", min=1, help=MAXDET_HELP)] = 1000,
        per_image_out: Annotated[
            Path | None, typer.Option("--per-image", help=PER_IMAGE_HELP)] = None,
        overwrite: Annotated[
            bool, typer.Option("--overwrite",
                               help="Replace existing --json and --per-image files.")] = False,
        strict: Annotated[bool, typer.Option(
            "--strict", help="Stop at the first image that cannot be scored (by default it is "
                             "reported and skipped, and the others are scored).")] = False,
    ) -> None:
        """Object matching (precision, recall, F1 at IoU 0.5..0.95, pooled and mean per image;
        DSB score) and COCO mask/box AP.

        An image that cannot be scored (no prediction, unreadable or mismatched labels) is
        reported and skipped: the others are scored and written (the --json file lists the
        skipped ones), and the command ends with a non-zero exit status naming them."""
        from morphoscope.errors import SkippedInputs
        from morphoscope.metrics.evaluate import evaluate

        outputs = [p for p in (json_out, per_image_out) if p is not None]
        if json_out is not None and per_image_out is not None and (
                json_out.resolve() == per_image_out.resolve()):
            raise typer.BadParameter("--json and --per-image name the same file",
                                     param_hint="--per-image")
        check_writable(outputs, overwrite=overwrite)  # fail before the work, not after
        if pred is None and model is None:
            from morphoscope.errors import ConfigError

            raise ConfigError("give --pred (a prediction folder) or --model (a model to run on the GT images)")
        if model is not None:
            from morphoscope.prediction.evaluate import evaluate_model

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = evaluate_model(model, gt, out=pred, device=device, overwrite=overwrite,
                                        max_detections=max_detections)
            for w in caught:
                typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
            _report(result, json_out, per_image_out, overwrite)
            return
        if (pred / "classifications.csv").is_file():  # a classification model's predictions
            if per_image_out is not None:
                raise typer.BadParameter("per-image rows are for segmentation predictions; this "
                                         "folder holds classifications", param_hint="--per-image")
            from morphoscope.tasks.classify.metrics import evaluate_classifications, format_metrics

            result = evaluate_classifications(pred, gt)
            typer.echo(format_metrics(result))
            if json_out is not None:
                with atomic_write(json_out, overwrite=overwrite, mode="w") as fh:
                    json.dump(result, fh, indent=2)
            return
        skipped = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = evaluate(pred, gt, max_detections=max_detections, strict=strict)
            except SkippedInputs as exc:
                if exc.result is None:  # no image could be scored: nothing to write
                    raise
                skipped, result = exc, exc.result
            finally:
                for w in caught:
                    typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
        _report(result, json_out, per_image_out, overwrite)
        if skipped is not None:
            written = [str(p) for p in (json_out, per_image_out) if p is not None]
            raise SkippedInputs(skipped.failed, done=skipped.done, action="scored",
                                outcome=f"the other {skipped.done} were scored"
                                        + (f" into {' and '.join(written)}" if written else ""))


def _report(result: dict, json_out, per_image_out, overwrite: bool) -> None:
    """Print the table of a result and write the files asked for."""
    from morphoscope.metrics.evaluate import format_table, write_per_image_csv

    if result.get("kind") == "classes":
        from morphoscope.tasks.classify.metrics import format_metrics

        typer.echo(format_metrics(result))
    else:
        typer.echo(format_table(result))
        if per_image_out is not None:
            write_per_image_csv(result, per_image_out, overwrite=overwrite)
    if json_out is not None:
        with atomic_write(json_out, overwrite=overwrite, mode="w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
