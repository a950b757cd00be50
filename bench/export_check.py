"""Export the shipped nuclei Mask R-CNN and the FPN of configs/bbbc039_fpn_r18.yaml (random
weights, seed 0: no semantic model is shipped) in every format they support, and print how far
each exported file's outputs are from PyTorch's on the bundled BBBC039 image IXMtest_B12_s2.tif
(the numbers in docs/export.md). Run from the project root:

    .venv/bin/python bench/export_check.py --out /tmp/morphoscope-exports
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the exported files")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from morphoscope.export import export_model
    from morphoscope.models.checkpoint import save_checkpoint
    from morphoscope.tasks import get_task, load_config

    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(PROJECT / "configs" / "bbbc039_fpn_r18.yaml")
    torch.manual_seed(0)
    net = get_task("semantic").build_model(cfg, list(cfg.data.classes))
    fpn = args.out / "bbbc039_fpn_r18_random.pt"
    save_checkpoint(fpn, task="semantic", model=net, config=cfg.model_dump(mode="json"),
                    class_names=list(cfg.data.classes), normalize=cfg.data.normalize.model_dump(),
                    card={"trained_on": "untrained (random weights, seed 0); config: BBBC039v1"})
    jobs = [("nuclei", "torchscript", "nuclei.pt"), ("nuclei", "onnx", "nuclei.onnx"),
            (str(fpn), "torchscript", "fpn.pt"), (str(fpn), "onnx", "fpn.onnx"),
            (str(fpn), "bioimageio", "fpn_bioimageio.zip")]
    for model, fmt, name in jobs:
        res = export_model(model, fmt, args.out / name, overwrite=True)
        print(f"{Path(model).name} {fmt}: " + ", ".join(f"{k} {v:.2g}" for k, v in res.max_abs_diff.items())
              + (f" ({'; '.join(res.notes)})" if res.notes else ""), flush=True)


if __name__ == "__main__":
    main()
