"""Platelets (and red and white cells) in blood smears: train a box detector on BCCD's own split,
then report on its test split once — box AP, F1 at box IoU 0.5 and the count error per image.

    morphoscope train configs/bccd_fasterrcnn_r18.yaml --out runs/bccd_fasterrcnn_r18
    .venv/bin/python examples/detect_bccd_platelets.py runs/bccd_fasterrcnn_r18 [SPLIT]

SPLIT is ``val`` (default: the split the model and its score threshold were chosen on) or
``test`` (run once, at the end). Two prediction folders are written under runs/: one at score
0.05 (box AP over the whole precision-recall curve, the COCO convention) and one at the score
threshold chosen on the validation images (counts and F1: what a user gets by default). The same
with the command line::

    B=../shared/data/bccd-platelets/BCCD
    morphoscope predict $(sed "s|.*|$B/JPEGImages/&.jpg|" $B/ImageSets/Main/test.txt) \\
        --model runs/bccd_fasterrcnn_r18 --out runs/bccd_test_ap --score-threshold 0.05
    morphoscope evaluate --pred runs/bccd_test_ap --gt $B/ImageSets/Main/test.txt
    morphoscope evaluate --model runs/bccd_fasterrcnn_r18 --gt $B/ImageSets/Main/test.txt --pred runs/bccd_test

BCCD (MIT licence, Shenggan/BCCD_Dataset): 364 real 640x480 smears with hand-drawn VOC boxes.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from morphoscope.formats import load_instance_dataset
from morphoscope.metrics.evaluate import evaluate, format_table
from morphoscope.prediction.predict import predict_groups, resolve_bundle

PROJECT = Path(__file__).resolve().parents[1]
BCCD = PROJECT.parent / "shared" / "data" / "bccd-platelets" / "BCCD"


def main(model: str, split: str = "val") -> None:
    gt = BCCD / "ImageSets" / "Main" / f"{split}.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two zero-size boxes: reported when training
        dataset = load_instance_dataset(gt)
    bundle = resolve_bundle(model, device="cpu")
    groups = [(s.name, [s.image_path]) for s in dataset.samples]
    chosen = bundle.extra.get("score_threshold", 0.5)
    results = {}
    for tag, threshold in (("ap", 0.05), ("counts", chosen)):
        out = PROJECT / "runs" / f"bccd_{split}_{tag}"
        found = []  # boxes the model gave at this threshold, before writing
        t0 = time.process_time()
        predict_groups(bundle, groups, out, overwrite=True, progress=False, score_threshold=threshold,
                       on_result=lambda item, res, readers, found=found: found.append(sum(len(r.objects_at()) for r in res)))
        cpu = time.process_time() - t0
        written = len(json.loads((out / "predictions.json").read_text())["annotations"])
        if written != sum(found):  # the label images cannot show a box that a higher one covers
            print(f"note: {sum(found) - written} of {sum(found)} boxes lie entirely under a higher-scoring "
                  "box of their class and are not in the outputs")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results[tag] = evaluate(out, gt)
        print(f"\n=== {split}: predictions at score >= {threshold:g} -> {out} "
              f"({cpu:.0f} s CPU for {len(groups)} images in this process)\n")
        print(format_table(results[tag]))
    ap = results["ap"]["coco"]["bbox"]
    m = results["counts"]["matching"]["0.5"]["per_class"]
    c = results["counts"]["counts"]["per_class"]
    print(f"\n=== summary ({split}, {len(groups)} images; score threshold {chosen:g} chosen on val)")
    print(f"{'class':<10}{'box AP':>8}{'AP50':>8}{'F1@0.5':>8}{'prec':>7}{'recall':>7}"
          f"{'GT/img':>8}{'MAE/img':>9}{'bias':>7}")
    for name in dataset.class_names:
        print(f"{name:<10}{ap['per_class'][name]:>8.3f}{ap['per_class_ap50'][name]:>8.3f}{m[name]['f1']:>8.3f}"
              f"{m[name]['precision']:>7.3f}{m[name]['recall']:>7.3f}{c[name]['gt_mean']:>8.2f}"
              f"{c[name]['mae']:>9.2f}{c[name]['bias']:>+7.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "val")
