"""Multi-label classification of Human Protein Atlas images, end to end, on the CPU.

Trains a ResNet-18 on ../shared/data/hpa_sample (50 green-channel images, 28 localisation
classes) with configs/hpa_resnet18.yaml, predicts the validation images and scores them:

    python examples/classify_hpa.py [--out runs/hpa_resnet18]

It takes a few minutes with one CPU thread. The sample is far too small to learn 28 classes: it
shows the file layout and the pipeline, not accuracy (docs/classification.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "hpa_resnet18")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()

    from morphoscope.tasks.classify.metrics import evaluate_classifications, format_metrics
    from morphoscope.tasks import load_model
    from morphoscope.prediction.predict import predict
    from morphoscope.training.run import train

    run = train(ROOT / "configs" / "hpa_resnet18.yaml", out=args.out, overwrite=args.overwrite)
    bundle = load_model(run)
    print("best epoch", bundle.metrics["epoch"], "| train/val images",
          bundle.metrics["train_images"], "/", bundle.metrics["val_images"])

    # the validation images, listed by the run in val.csv (Id,Target,Dir)
    import csv

    with open(run / "val.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    files = [Path(r["Dir"]) / f"{r['Id']}_green.png" for r in rows]
    pred = predict(files, run / "val_predictions", model=bundle, overwrite=True)
    print(f"probabilities and labels: {pred / 'classifications.csv'}")
    # NB: the thresholds were tuned on these same images, so these numbers are optimistic
    result = evaluate_classifications(pred, run / "val.csv")
    print(format_metrics(result, title="validation images, thresholds tuned on them"))


if __name__ == "__main__":
    main()
