"""Single-label classification from one folder of images per class, e.g.

    my_cells/
        mitotic/     img001.tif img002.tif ...
        interphase/  img101.tif ...

    python examples/classify_folders.py my_cells --out runs/my_cells [--size 128 --epochs 20]

The class names are the folder names. 20% of the images (stratified by class, fixed seed) are held
out for validation; the run folder then holds model_best.pt, the split and val.csv. Predictions
for new images: ``morphoscope predict NEW_IMAGES/ --model runs/my_cells --out predictions/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with one sub-folder of images per class")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=128, help="network input size (pixels)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--weights", type=Path, default=None,
                    help="local ImageNet weights file (e.g. resnet18-f37072fd.pth) to fine-tune from")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()

    from morphoscope.tasks.classify.metrics import format_metrics
    from morphoscope.tasks import load_model
    from morphoscope.training.run import train

    config = {
        "task": "classify",
        "name": args.out.name,
        "data": {"train": str(args.data.resolve()), "image_size": args.size, "intensity": "percentile"},
        "model": {"backbone": args.backbone, "head": "single_label"},
        "train": {"epochs": args.epochs, "batch_size": 16, "optimizer": "adamw", "lr": 1e-3,
                  "schedule": "onecycle", "monitor": "macro_f1"},
        "augment": {"rotation": 15},
    }
    if args.weights is not None:  # transfer learning: the head alone first, then everything
        config["model"].update({"pretrained": "imagenet", "weights": str(args.weights.resolve())})
        config["train"].update({"freeze_backbone_epochs": min(3, args.epochs - 1), "unfreeze_lr_factor": 0.1})
    run = train(config, out=args.out, overwrite=args.overwrite)
    bundle = load_model(run)
    print(format_metrics(bundle.extra["val_metrics"], title=f"{run}: validation, best epoch {bundle.metrics['epoch']}"))


if __name__ == "__main__":
    main()
