"""Package a trained model for shipping inside morphoscope.

    python scripts/ship_model.py RUN_DIR/model_best.pt EVALUATE.json src/morphoscope/models/weights/NAME.pt

Keeps what prediction needs (config, classes, normalisation, weights in float16: half the size,
used in float32) and stores the validation metrics that `morphoscope evaluate --json` computed,
so `morphoscope models` and the web app show them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from morphoscope.models.registry import build_from_checkpoint, read_checkpoint, save_checkpoint


def main(ckpt_path: str, evaluate_json: str, out: str) -> None:
    ckpt = read_checkpoint(Path(ckpt_path))
    ev = json.loads(Path(evaluate_json).read_text())
    m = ev["matching"]
    metrics = {
        "dataset": ev.get("gt"), "images": ev["images"],
        "f1@0.5": m["0.5"]["f1"], "precision@0.5": m["0.5"]["precision"], "recall@0.5": m["0.5"]["recall"],
        "fnr@0.5": m["0.5"]["fnr"], "ap@0.5": m["0.5"]["ap"],
        "mean_ap@0.5:0.95": sum(v["ap"] for v in m.values()) / len(m),
        "coco_segm_AP": ev["coco"]["segm"]["AP"], "coco_segm_AP50": ev["coco"]["segm"]["AP50"],
        "coco_bbox_AP": ev["coco"]["bbox"]["AP"], "epoch": ckpt.get("metrics", {}).get("epoch"),
    }
    bundle = build_from_checkpoint(ckpt)
    save_checkpoint(Path(out), task=ckpt["task"], model=bundle.model, config=ckpt["config"],
                    class_names=ckpt["class_names"], normalize=ckpt["normalize"], metrics=metrics,
                    half=True, extra={"source_versions": ckpt.get("versions", {})})
    size = Path(out).stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB): " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    main(*sys.argv[1:])
