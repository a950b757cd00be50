"""Benchmark: does ONNX Runtime beat PyTorch for CPU inference of a 520x696 BBBC039 image?

Three networks, each exported with ``morphoscope.export`` (the same files ``morphoscope export``
writes) and checked against PyTorch on the same input first:

* ``semantic FPN``: the FPN of configs/bbbc039_fpn_r18.yaml (ResNet-18 encoder, 64 decoder
  channels, boundary head; random weights: the speed does not depend on them), softmax/sigmoid
  included;
* ``Mask R-CNN backbone``: the shipped nuclei model's ResNet-18 + FPN on the normalised, padded
  image (544x704): the network part of the detector;
* ``Mask R-CNN whole``: the shipped detector end to end (RPN, NMS, heads), as exported.

Both runtimes get the same number of threads. Each network runs twice as warm-up in each
runtime, then ``--n`` times, alternating PyTorch and ONNX Runtime so that both see the same
machine load; the medians and their ratio (PyTorch / ONNX Runtime: above 1 means ONNX Runtime
is faster) come from this one run. Run from the project root:

    .venv/bin/python bench/bench_onnx_cpu.py --n 10 --threads 2 --json bench-onnx.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROJECT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="timed runs per network and runtime")
    ap.add_argument("--threads", type=int, default=2, help="threads of PyTorch and of ONNX Runtime")
    ap.add_argument("--skip-whole", action="store_true", help="leave out the whole Mask R-CNN (slowest)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    from morphoscope.engine.task import ExportSpec
    from morphoscope.export import onnx as onnx_export
    from morphoscope.export.common import card, default_image, example, run_torch
    from morphoscope.tasks import bundle_from_checkpoint, load_config, load_model

    load_before = os.getloadavg()
    image = default_image()
    nets = []  # (name, spec, input)

    cfg = load_config(PROJECT / "configs" / "bbbc039_fpn_r18.yaml")
    torch.manual_seed(0)
    task = __import__("morphoscope.tasks", fromlist=["get_task"]).get_task("semantic")
    ckpt = {"task": "semantic", "config": cfg.model_dump(mode="json"), "class_names": list(cfg.data.classes),
            "model": task.build_model(cfg, list(cfg.data.classes)).state_dict(),
            "normalize": cfg.data.normalize.model_dump()}
    sem = bundle_from_checkpoint(ckpt, name="bbbc039_fpn_r18 (random weights)")
    sem_spec = sem.task.export_module(sem)
    nets.append(("semantic FPN", sem, sem_spec, example(sem, sem_spec, image).input))

    det = load_model("nuclei", device="cpu")
    det_spec = det.task.export_module(det)
    det_input = example(det, det_spec, image).input

    class Backbone(nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(self.backbone(x).values())

    detector = det_spec.module.model
    with torch.inference_mode():
        padded = detector.transform([torch.from_numpy(det_input[0])])[0].tensors.numpy()
    bb_spec = ExportSpec(module=Backbone(detector.backbone).eval(), outputs=("p2", "p3", "p4", "p5", "pool"),
                         doc="ResNet-18 + FPN of the nuclei Mask R-CNN")
    nets.append(("Mask R-CNN backbone", det, bb_spec, padded))
    if not args.skip_whole:
        nets.append(("Mask R-CNN whole", det, det_spec, det_input))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, bundle, spec, x in nets:
            path = Path(tmp) / "model.onnx"
            onnx_export.write(spec, x, path, card(bundle, spec))
            sess = onnx_export.session(path, threads=args.threads)
            ref = run_torch(spec.module, x, spec.outputs)
            got = onnx_export.run(sess, x, spec.outputs)
            diff = max(float(np.abs(got[k].astype(np.float64) - ref[k]).max()) if ref[k].size and got[k].shape == ref[k].shape
                       else float("nan") for k in spec.outputs)
            xt = torch.from_numpy(x)

            def run_pt():
                with torch.inference_mode():
                    spec.module(xt)

            def run_ort():
                sess.run(None, {spec.input_name: x})

            for _ in range(2):
                run_pt()
                run_ort()
            t_pt, t_ort = [], []
            for _ in range(args.n):
                t0 = time.perf_counter()
                run_pt()
                t1 = time.perf_counter()
                run_ort()
                t2 = time.perf_counter()
                t_pt.append(t1 - t0)
                t_ort.append(t2 - t1)
            pt, ox = statistics.median(t_pt), statistics.median(t_ort)
            r = {"network": name, "input": list(x.shape), "pytorch_ms": round(pt * 1000, 1),
                 "onnxruntime_ms": round(ox * 1000, 1), "ratio_pytorch_over_ort": round(pt / ox, 2),
                 "max_abs_diff": diff}
            results.append(r)
            print(f"{name:22s} {str(tuple(x.shape)):18s} PyTorch {r['pytorch_ms']:8.1f} ms   ONNX Runtime "
                  f"{r['onnxruntime_ms']:8.1f} ms   PyTorch/ORT {r['ratio_pytorch_over_ort']:.2f}   "
                  f"max|diff| {diff:.2g}", flush=True)
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads, "n": args.n,
               "torch": torch.__version__, "onnxruntime": ort.__version__, "python": platform.python_version(),
               "image": image.name,
               # the machine's load (1-minute average of runnable processes) around the run: other
               # work on a shared machine slows both runtimes, memory-bound PyTorch ops more
               "load_average_before": round(load_before[0], 2), "load_average_after": round(os.getloadavg()[0], 2)}
    print("machine:", json.dumps(machine))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
