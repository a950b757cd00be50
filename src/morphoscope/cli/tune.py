"""``morphoscope tune``: Optuna search over a config's ``tune.space``
(:func:`morphoscope.training.tune.tune`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("tune")
    def tune_command(
        config: Annotated[Path, typer.Argument(help="Config YAML with a tune.space section (any task).")],
        trials: Annotated[int, typer.Option("--trials", min=1, help="Trials to run now (added to the study).")] = 10,
        storage: Annotated[str | None, typer.Option(
            "--storage", help="Optuna storage URL, e.g. sqlite:///study.db (default: OUT/study.db).")] = None,
        study: Annotated[str | None, typer.Option("--study", help="Study name (default: the config's name).")] = None,
        fraction: Annotated[float | None, typer.Option(
            "--fraction", min=0.0, max=1.0, help="Fraction of the training images per trial (default tune.fraction).")] = None,
        epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs per trial (default tune.epochs).")] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Folder for trial runs, study and best_config.yaml.")] = None,
        progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show per-epoch progress bars.")] = False,
    ) -> None:
        """Search learning rate, batch size, encoder, loss weights and thresholds; write the best config."""
        from morphoscope.extras import require

        require("tune", "morphoscope tune")
        from morphoscope.training.tune import tune

        res = tune(config, trials=trials, storage=storage, study=study, fraction=fraction, out=out,
                   epochs=epochs, progress=progress)
        typer.echo(f"study '{res['study']}' in {res['storage']}: {res['trials']} trials "
                   f"({res['complete']} complete, {res['pruned']} pruned, {res['failed']} failed)")
        if res["best_config"]:
            typer.echo(f"best {res['metric']} {res['best_value']:.4f} (trial {res['best_trial']}): "
                       + ", ".join(f"{k}={v}" for k, v in res["best_params"].items()))
            typer.echo(f"best config: {res['best_config']}")
        else:
            typer.echo("no trial completed; no best config written")
