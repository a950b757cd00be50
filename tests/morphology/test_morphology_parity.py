"""The fast path against scikit-image regionprops run directly, on real BBBC039 nuclei and on a
synthetic image with holes, non-convex unions, touching objects and one- and two-pixel objects.

Tolerance: 1e-9 relative (observed: 0 for areas, bounding boxes, convex areas, solidity and
Feret diameters; < 1e-13 for the moment- and perimeter-based values), plus 1e-7 absolute for
the values that sit at a singular point of their formula: for a straight line of pixels the minor
axis is exactly 0 here, but 1e-8..1e-7 px in regionprops (rounding in its eigenvalue solver), so
the aspect ratio is inf here and ~1e8 there (compared as its reciprocal); eccentricity and
anisotropy of (nearly) isotropic or linear objects likewise. Orientation is compared modulo 180
degrees, and only where it is defined (not for objects whose inertia is isotropic).
"""

from __future__ import annotations

import numpy as np
import pytest
from morphology_testdata import bbbc_or_skip

from morphoscope.io.images import read_image, read_label_image
from morphoscope.morphology import measure_labels
from morphoscope.morphology.synthetic import random_shapes_labels

RTOL = 1e-9
ATOL = {"axis_minor_length_px": 1e-6, "eccentricity": 1e-7, "anisotropy": 1e-7}


def assert_tables_match(fast, ref, rtol=RTOL):
    assert list(fast.columns) == list(ref.columns)
    assert list(fast.label) == list(ref.label)
    for c in fast.columns:
        a, b = fast[c].to_numpy(), ref[c].to_numpy()
        if fast[c].dtype.kind != "f":
            assert (a == b).all(), c
        elif c == "aspect_ratio":  # compare minor/major: inf here may be 1e8 in regionprops
            np.testing.assert_allclose(1 / a, 1 / b, rtol=rtol, atol=1e-7, err_msg=c)
        elif c == "orientation_deg":
            defined = fast.anisotropy.to_numpy() > 1e-6
            d = np.abs((a - b + 90) % 180 - 90)
            assert (d[defined] < 1e-6).all(), (c, d[defined].max())
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=ATOL.get(c, 1e-12),
                                       equal_nan=True, err_msg=c)


def test_bbbc039_matches_regionprops():
    root = bbbc_or_skip()
    paths = sorted((root / "labels").glob("*.png"))[::25]  # 4 images, ~500 nuclei
    n = 0
    for p in paths:
        labels = read_label_image(p)
        image = read_image(root / "images" / f"{p.stem}.tif")
        fast = measure_labels(labels, image=image, image_name=p.stem)
        ref = measure_labels(labels, image=image, image_name=p.stem, method="regionprops")
        assert_tables_match(fast, ref)
        n += len(fast)
    assert n > 300


def test_bbbc039_whole_training_set_sanity():
    """All 12,001 nuclei: counts, areas and bounding boxes against plain numpy."""
    root = bbbc_or_skip()
    from scipy import ndimage as ndi

    total = 0
    for p in sorted((root / "labels").glob("*.png")):
        labels = read_label_image(p)
        t = measure_labels(labels, properties=["area", "circularity", "solidity"])
        ids = np.unique(labels)[1:]
        assert list(t.label) == list(ids)
        counts = np.bincount(labels.ravel())[ids]
        assert (t.area_px2.to_numpy() == counts).all()
        boxes = [b for b in ndi.find_objects(labels) if b is not None]
        assert [b[0].start for b in boxes] == list(t.bbox_row_min)
        assert [b[1].stop for b in boxes] == list(t.bbox_col_max)
        assert ((t.circularity.dropna() > 0) & (t.circularity.dropna() <= 1)).all()
        assert ((t.solidity > 0) & (t.solidity <= 1)).all()
        total += len(t)
    assert total == 12001


def test_synthetic_shapes_match_regionprops():
    labels = random_shapes_labels((192, 192), cell=16, seed=7)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4096, (*labels.shape, 2)).astype(np.uint16)  # two channels
    fast = measure_labels(labels, image=image)
    ref = measure_labels(labels, image=image, method="regionprops")
    assert "intensity_mean_ch1" in fast
    assert_tables_match(fast, ref)
    areas = fast.area_px2.to_numpy()
    assert (areas == 1).any() and (areas == 2).any()  # the traps are in the data
    assert fast.touches_border.any() and (fast.solidity < 0.9).any()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_intensity_dtypes_match_regionprops(dtype):
    labels = random_shapes_labels((64, 64), cell=16, seed=3)
    rng = np.random.default_rng(2)
    image = (rng.normal(50, 30, labels.shape)).astype(dtype)
    fast = measure_labels(labels, image=image, properties=["intensity_mean", "intensity_median",
                                                          "intensity_min", "intensity_max",
                                                          "intensity_std",
                                                          "intensity_integrated"])
    ref = measure_labels(labels, image=image, method="regionprops",
                         properties=list(fast.columns[-6:]))
    # float32 images: regionprops averages in float32, the fast path in float64
    assert_tables_match(fast, ref, rtol=1e-6 if dtype == np.float32 else RTOL)
