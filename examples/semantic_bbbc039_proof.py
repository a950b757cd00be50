"""The numbers of docs/semantic.md for a trained semantic run on BBBC039, end to end:

1. post-processing search (seed threshold, minimum object size) on 20 *training* images — the
   validation images are kept for reporting;
2. ``RUN/model_tuned.pt``: the best checkpoint with those settings as its defaults;
3. ``morphoscope predict`` of the 50 validation images into ``RUN/pred_val`` (CPU);
4. ``morphoscope evaluate`` of that folder (instance F1 etc. at IoU 0.5) and the pixel IoU / Dice
   of the foreground against the validation labels;
5. the summary in ``RUN/proof.json``.

    .venv/bin/python examples/semantic_bbbc039_proof.py runs/bbbc039_fpn_r18
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bbbc039"


def main(run: str, threads: int = 1) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from morphoscope.formats import load_instance_dataset
    from morphoscope.io.images import read_label_image
    from morphoscope.metrics.evaluate import evaluate
    from morphoscope.metrics.semantic import semantic_scores
    from morphoscope.tasks import load_model
    from morphoscope.prediction.predict import predict
    from morphoscope.tasks.semantic.postprocess_search import search_postprocess, write_postprocess

    run = Path(run)
    t0 = time.time()
    search = search_postprocess(run, DATA / "training", max_images=20,
                                grid={"seed_threshold": [0.1, 0.2, 0.3, 0.5], "min_size": [10, 20, 30, 50]})
    print("post-processing search on training images:", search["best"], f"F1 {search['score']:.4f}", flush=True)
    tuned = write_postprocess(run, run / "model_tuned.pt", search["best"])
    bundle = load_model(tuned, device="cpu")
    pred_dir = run / "pred_val"
    t1 = time.time()
    predict(DATA / "validation" / "images", pred_dir, model=bundle, overwrite=True, progress=False)
    seconds = time.time() - t1
    info = json.loads((pred_dir / "predictions.json").read_text())["info"]
    res = evaluate(pred_dir, DATA / "validation")
    pairs = []
    for s in load_instance_dataset(DATA / "validation").samples:
        gt = read_label_image(s.label_path) > 0
        pred = read_label_image(pred_dir / f"{s.name}_labels.tif") > 0
        pairs.append((gt.astype(np.int64), pred.astype(np.int64)))
    sem = semantic_scores(pairs, 2, ["nucleus"])
    m = res["matching"]["0.5"]
    out = {"run": str(run), "postprocess": search["best"], "search_f1_train": search["score"],
           "val_images": res["images"], "gt_objects": res["objects"]["gt"], "pred_objects": res["objects"]["pred"],
           "f1@0.5": m["f1"], "precision@0.5": m["precision"], "recall@0.5": m["recall"], "ap@0.5": m["ap"],
           "f1@0.75": res["matching"]["0.75"]["f1"],
           "coco_mask_ap": res["coco"]["segm"].get("AP") if "segm" in res["coco"] else None,
           "pixel_iou": sem["iou"], "pixel_dice": sem["dice"], "pixel_accuracy": sem["pixel_accuracy"],
           "seconds_per_image_model_and_postprocess": info["seconds_per_plane"],
           "seconds_per_image_with_writing": seconds / res["images"], "threads": threads,
           "total_seconds": time.time() - t0}
    (run / "proof.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bbbc039_fpn_r18",
         int(sys.argv[2]) if len(sys.argv) > 2 else 1)
