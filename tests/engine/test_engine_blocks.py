"""Blocks with a margin and centre ownership: any image size, no object cut or doubled at a block
border, the same objects as one whole-image pass (real BBBC039 nuclei)."""

from __future__ import annotations

import numpy as np
import pytest

from morphoscope.engine.objects import Objects
from morphoscope.engine.tiling import MergeReport, block_grid, merge_blocks
from morphoscope.metrics.matching import match


@pytest.mark.parametrize("shape,size,margin,align", [((1040, 1392), 512, 64, 64), ((300, 410), 128, 32, 32),
                                                     ((100, 90), 512, 64, 32), ((513, 512), 512, 0, 1)])
def test_block_cores_partition_the_plane(shape, size, margin, align):
    blocks = block_grid(shape, size=size, margin=margin, align=align)
    cover = np.zeros(shape, np.int32)
    for b in blocks:
        cover[b.core] += 1
        for c, w, n in zip(b.core, b.window, shape):
            assert 0 <= w.start <= c.start and c.stop <= w.stop <= n  # the core lies in its window
            assert w.stop - w.start <= size and w.start % align == 0
            # a full margin of context wherever the image goes on
            assert c.start - w.start >= min(margin, c.start) and w.stop - c.stop >= min(margin, n - c.stop)
    assert cover.min() == cover.max() == 1


def _disc(shape, cy, cx, r):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_an_object_seen_by_two_blocks_is_kept_once():
    shape = (100, 200)
    blocks = block_grid(shape, size=120, margin=20)  # cores [0,80) [80,160) [160,200) in x
    obj = _disc(shape, 50, 81, 6)  # centre just inside the second core, seen whole by two windows
    parts = []
    for b in blocks:
        window = obj[b.window]
        o = Objects.from_labels(window.astype(np.int32)) if window.any() else Objects.empty(b.shape)
        parts.append((b, o))
    merged = merge_blocks(parts, shape)
    assert len(merged) == 1 and np.array_equal(merged.mask(0), obj)
    # a slightly different mask in the other block whose centre falls on the other side of the
    # border: the tolerance keeps both candidates and the merge removes the duplicate
    shifted = _disc(shape, 50, 79, 6)
    parts = [(b, Objects.from_labels((obj if b.index == 1 else shifted)[b.window].astype(np.int32)))
             for b in blocks if (obj | shifted)[b.window].any()]
    report = MergeReport()
    merged = merge_blocks(parts, shape, report=report)
    assert len(merged) == 1 and report.duplicates == 1


@pytest.fixture(scope="module")
def mosaic(samples_dir):
    """The three bundled BBBC039 images side by side (520 x 2088) with their GT labels."""
    from morphoscope.io.images import read_image, read_label_image

    names = sorted(p.stem for p in (samples_dir / "images").glob("*.tif"))
    imgs = [read_image(samples_dir / "images" / f"{n}.tif") for n in names]
    gts = [read_label_image(samples_dir / "labels" / f"{n}.png").astype(np.int32) for n in names]
    offset = 0
    for g in gts:
        g[g > 0] += offset
        offset = int(g.max())
    return np.concatenate(imgs, axis=1), np.concatenate(gts, axis=1)


@pytest.fixture(scope="module")
def nuclei():
    from morphoscope.tasks import load_model

    return load_model("nuclei-maskrcnn", device="cpu")  # detections with scores and a cap


def test_blocks_give_the_objects_of_one_whole_pass(mosaic, nuclei):
    from morphoscope.engine.predictor import Predictor

    image, gt = mosaic
    whole = Predictor(nuclei, block_size=2560).predict(image)
    blocked = Predictor(nuclei, block_size=512, block_margin=64).predict(image)
    grid = block_grid(image.shape[:2], size=512, margin=64, align=64)
    assert len(grid) >= 6
    w_lab, _ = whole.objects_at().to_labels()
    b_lab, _ = blocked.objects_at().to_labels()
    # the same objects: one-to-one at IoU 0.5, almost all near-identical. (A CNN's output also
    # depends on context beyond the margin: the same image predicted alone, without its mosaic
    # neighbours, differs from the mosaic pass by about 10 % of the objects.)
    m = match(w_lab, b_lab, thresholds=(0.5, 0.9))
    assert m["0.5"].fp + m["0.5"].fn <= 0.04 * m.n_gt, (m["0.5"].fp, m["0.5"].fn, m.n_gt)
    assert m["0.9"].tp >= 0.95 * m.n_gt
    # nothing doubled: no more pairs of strongly overlapping objects than the whole pass has
    # (Mask R-CNN's box NMS lets a few overlapping masks through anyway)
    objs = blocked.objects_at()
    doubles = (_pairwise_max_iou(objs) >= 0.5).sum()
    assert doubles <= (_pairwise_max_iou(whole.objects_at()) >= 0.5).sum()
    # nothing cut: objects crossing a core border are whole (as in the whole-image pass)
    cores_x = sorted({b.core[1].start for b in grid} - {0})
    crossing = [i for i in range(len(objs))
                if any(objs.origins[i, 1] < x <= objs.origins[i, 1] + objs.crops[i].shape[1] - 1 for x in cores_x)]
    assert len(crossing) > 10
    # and the accuracy against the ground truth is that of the whole-image pass
    f_whole = match(gt, w_lab, thresholds=(0.5,))["0.5"]
    f_block = match(gt, b_lab, thresholds=(0.5,))["0.5"]
    f1 = lambda t: 2 * t.tp / (2 * t.tp + t.fp + t.fn)  # noqa: E731
    assert abs(f1(f_whole) - f1(f_block)) <= 0.02
    assert not [w for w in blocked.warnings if "larger than the block margin" in w]


def _pairwise_max_iou(objs: Objects) -> np.ndarray:
    b = objs.bboxes
    best = np.zeros(len(objs))
    for i in range(len(objs)):
        near = np.flatnonzero((b[:, 0] < b[i, 2]) & (b[i, 0] < b[:, 2]) & (b[:, 1] < b[i, 3]) & (b[i, 1] < b[:, 3]))
        for j in near:
            if j == i:
                continue
            a, c = objs.mask(i), objs.mask(j)
            inter = (a & c).sum()
            if inter:
                best[i] = max(best[i], inter / (a | c).sum())
    return best


def test_no_cap_on_objects_per_image(mosaic, nuclei):
    """The model's per-window detection cap no longer caps an image: a mosaic with more nuclei
    than the cap gets them all (the cap is lowered here to make the point on a small image)."""
    from morphoscope.engine.predictor import Predictor

    image, gt = mosaic
    n_gt = len(np.unique(gt)) - 1
    nuclei.model.roi_heads.detections_per_img = 150
    try:
        one = Predictor(nuclei, block_size=2560).predict(image)
        many = Predictor(nuclei, block_size=320, block_margin=64).predict(image)
    finally:
        nuclei.model.roi_heads.detections_per_img = nuclei.cfg.model.detections_per_image
    assert len(one.objects) == 150  # one pass stops at the cap ...
    assert any("limit of detections" in w for w in one.warnings)  # ... and says so
    assert len(many.objects_at()) > 0.9 * n_gt > 150  # blocks find them all
