from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models_cmd(as_json: bool = typer.Option(False, "--json", help="print the model cards as JSON")) -> None:
        """List the models shipped with morphoscope and their validation metrics."""
        from morphoscope.tasks import list_models

        cards = list_models()
        if as_json:
            typer.echo(json.dumps(cards, indent=2))
            return
        for c in cards:
            m = c.get("metrics", {})
            f1 = m.get("f1@0.5")
            typer.echo(f"{c['name']:<10} {c['task']:<9} {c['backbone'] or '':<9} classes={','.join(c['classes'])}"
                       + (f"  val F1@0.5={f1:.3f}" if isinstance(f1, float) else ""))
