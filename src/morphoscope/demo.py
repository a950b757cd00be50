"""The main job on the bundled samples: predict, evaluate, measure, report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from morphoscope.io.atomic import atomic_write
from morphoscope.samples import BBBC039, sample_images


def run_demo(out: str | Path = "morphoscope-demo", *, model=None, device: str = "auto",
             overwrite: bool = True, echo=print) -> dict:
    """Predict the bundled BBBC039 samples into ``out/predictions``, evaluate them against their
    ground truth (``out/metrics.json``), measure every object (``out/measurements.csv``) and write
    ``out/report.html``. Returns the metrics dict."""
    from morphoscope.metrics.evaluate import evaluate, format_table
    from morphoscope.prediction.predict import predict

    out = Path(out)
    t0 = time.time()
    pred_dir = predict(sample_images(), out / "predictions", model=model, device=device,
                       overwrite=overwrite, measure=True, progress=False)
    result = evaluate(pred_dir, BBBC039)
    with atomic_write(out / "metrics.json", mode="w", overwrite=overwrite) as fh:
        json.dump(result, fh, indent=2)
    echo(format_table(result))
    try:
        from morphoscope.reports import build_report

        build_report(pred_dir, out / "report.html", gt=BBBC039, overwrite=overwrite)
        echo(f"report:       {out / 'report.html'}")
    except ImportError:
        pass
    echo(f"predictions:  {pred_dir}")
    echo(f"metrics:      {out / 'metrics.json'}")
    echo(f"done in {time.time() - t0:.0f} s; outputs in {out.resolve()}")
    return result
