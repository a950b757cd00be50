"""Outlines along pixel edges (formats/outlines.py): valid shapely geometries whose area is the
pixel count and whose fill at pixel centres is exactly the mask, on every ground-truth nucleus of
the bundled samples and on random masks with every awkward configuration (holes, pieces meeting at
a corner, holes meeting the outside at a corner)."""

from __future__ import annotations

import numpy as np
import pytest
from interop_testdata import fill, roi_geometry

from morphoscope.formats.outlines import geometry_mask, mask_outline


def check(mask: np.ndarray, origin=(0, 0)) -> None:
    from morphoscope.formats.roi import imagej_roi

    geometry = mask_outline(mask, origin)
    assert geometry.is_valid and geometry.geom_type in ("Polygon", "MultiPolygon")
    assert geometry.area == mask.sum()
    assert np.array_equal(geometry_mask(geometry, mask.shape, origin), mask)
    coords = np.concatenate([np.asarray(p.exterior.coords) for p in getattr(geometry, "geoms", [geometry])])
    assert np.array_equal(coords, np.round(coords))  # pixel corners
    full = np.zeros((mask.shape[0] + origin[0], mask.shape[1] + origin[1]), bool)
    full[origin[0]:, origin[1]:] = mask
    assert np.array_equal(fill(roi_geometry(imagej_roi(geometry, name="x")), full.shape), full)


def test_outlines_of_every_ground_truth_nucleus(samples_dir):
    from scipy import ndimage
    from skimage.io import imread

    count = 0
    for path in sorted((samples_dir / "labels").glob("*.png")):
        labels = imread(path)
        for k, window in enumerate(ndimage.find_objects(labels), start=1):
            if window is not None:
                check(labels[window] == k, (window[0].start, window[1].start))
                count += 1
    assert count > 400


def test_outlines_of_random_masks():
    rng = np.random.default_rng(12)
    for _ in range(300):
        h, w = rng.integers(1, 12, 2)
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        if mask.any():
            check(mask, tuple(rng.integers(0, 4, 2)))


def test_outline_through_one_corner_twice():
    """Pieces and holes meeting diagonally at one pixel corner: marching squares' ring passes
    that corner twice (invalid for GEOS); the outline is made valid with the same pixels."""
    mask = np.array([[1, 1, 0, 1], [1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 0, 1],
                     [1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 1]], bool)
    check(mask, (2, 3))


def test_outline_of_nothing_and_of_a_pixel():
    assert mask_outline(np.zeros((3, 3), bool)).is_empty
    assert list(mask_outline(np.ones((1, 1), bool), (2, 5)).exterior.coords)[:4] == [
        (6.0, 3.0), (5.0, 3.0), (5.0, 2.0), (6.0, 2.0)]
    with pytest.raises(ValueError, match="2D"):
        mask_outline(np.ones((2, 2, 2), bool))
