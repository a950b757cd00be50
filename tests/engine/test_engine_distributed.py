"""``morphoscope predict`` under torchrun: each process takes its share of the images and
process 0 writes the run-wide files; the outputs equal a single-process run's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import tifffile


def test_predict_under_torchrun_equals_one_process(tmp_path, samples_dir):
    from morphoscope.prediction.predict import predict

    import torch

    images = samples_dir / "images"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes run: the same float sums, the same numbers
    try:
        single = predict([images], tmp_path / "one", model="nuclei-maskrcnn", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "morphoscope",
                        "predict", str(images), "--out", str(tmp_path / "two"), "--device", "cpu",
                        "--model", "nuclei-maskrcnn"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("predictions written") == 1  # one line, from process 0
    a = json.loads((single / "predictions.json").read_text())
    b = json.loads((tmp_path / "two" / "predictions.json").read_text())
    assert [im["file_name"] for im in b["images"]] == [im["file_name"] for im in a["images"]]  # input order
    assert len(b["images"]) == 3
    assert b["annotations"] == a["annotations"]
    for im in a["images"]:
        stem = im["file_name"].rsplit(".", 1)[0]
        assert np.array_equal(tifffile.imread(single / f"{stem}_labels.tif"),
                              tifffile.imread(tmp_path / "two" / f"{stem}_labels.tif"))
