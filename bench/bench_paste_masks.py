"""Mask pasting in instance prediction: morphoscope's per-box crops versus torchvision's
``paste_masks_in_image`` (one full-size float canvas per detection), in the same run.

    python bench/bench_paste_masks.py            # prints a table; results in docs/models.md

Both produce identical binary masks (tests/foundation/test_prediction.py checks this); the
difference is O(sum of box areas) versus O(detections x image size) time and memory.
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from morphoscope.tasks.instance.task import paste_masks_in_boxes


def make(n: int, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    masks = torch.rand(n, 1, 28, 28, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w - 40, h - 40])
    wh = torch.rand(n, 2, generator=g) * 25 + 10  # nuclei-sized boxes, 10-35 px
    return masks, torch.cat([xy, xy + wh], 1)


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    torch.set_num_threads(2)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"{'image':>11} {'detections':>10} {'torchvision s':>14} {'morphoscope s':>14} {'ratio':>7}")
    for shape in [(520, 696), (2048, 2048)]:
        for n in [100, 500, 1000]:
            masks, boxes = make(n, shape)
            ms = best_of(lambda: paste_masks_in_boxes(masks, boxes, shape, 0.5))
            canvas_gb = n * shape[0] * shape[1] * 4 / 1e9  # torchvision's float canvases
            if canvas_gb > 8:
                print(f"{shape[0]}x{shape[1]:>5} {n:>10} {'(' + f'{canvas_gb:.0f} GB: skipped' + ')':>14} {ms:>14.3f}")
                continue
            tv = best_of(lambda: (paste_masks_in_image(masks, boxes, shape)[:, 0] > 0.5).numpy())
            print(f"{shape[0]}x{shape[1]:>5} {n:>10} {tv:>14.3f} {ms:>14.3f} {tv / ms:>6.1f}x")


if __name__ == "__main__":
    main()
