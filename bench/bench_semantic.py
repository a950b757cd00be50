"""Benchmark: CPU prediction time per BBBC039 image (520x696) of trained models, semantic
(network + watershed) and instance (Mask R-CNN + mask pasting), measured the same way in one run.

Images are read and normalised before timing; each model predicts every image once as warm-up,
then the images again, timed one by one, alternating between the models so that both see the
same machine load. Writing files is not timed. Run from the project root:

    .venv/bin/python bench/bench_semantic.py runs/bbbc039_fpn_r18 runs/bbbc039_maskrcnn_r18 \
        --images ../shared/data/bbbc039/validation/images --n 10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="run folders or checkpoint files")
    ap.add_argument("--images", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"
                                            / "bbbc039" / "validation" / "images"))
    ap.add_argument("--n", type=int, default=10, help="images to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from morphoscope.io.images import find_images, read_image
    from morphoscope.tasks import load_model

    images = [read_image(p) for p in find_images(args.images)[: args.n]]
    runners = []
    for m in args.models:
        bundle = load_model(m, device="cpu")
        if bundle.task == "semantic":
            from morphoscope.tasks.semantic.predict import _model_cfg, segment_plane

            cfg = _model_cfg(bundle)
            thr = bundle.extra.get("threshold", 0.5)
            runners.append((bundle.name, lambda img, b=bundle, c=cfg, t=thr: segment_plane(b, c, img, threshold=t)[0]))
        else:
            from morphoscope.prediction.instance import predict_instances

            runners.append((bundle.name, lambda img, b=bundle: predict_instances(b, img).to_labels(0.5)[0]))
    for _, run in runners:  # warm-up
        for img in images[:2]:
            run(img)
    times = {name: [] for name, _ in runners}
    objects = {name: 0 for name, _ in runners}
    for img in images:
        for name, run in runners:
            t0 = time.perf_counter()
            labels = run(img)
            times[name].append(time.perf_counter() - t0)
            objects[name] += int(labels.max())
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "threads": args.threads, "torch": torch.__version__},
              "images": len(images), "shape": list(images[0].shape),
              "models": {name: {"mean_s": float(np.mean(t)), "median_s": float(np.median(t)),
                                "min_s": float(np.min(t)), "objects": objects[name]} for name, t in times.items()}}
    for name, r in result["models"].items():
        print(f"{name:30s} mean {r['mean_s']:.3f} s  median {r['median_s']:.3f} s  min {r['min_s']:.3f} s "
              f"per image ({result['shape'][0]}x{result['shape'][1]}, {args.threads} thread(s))")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
