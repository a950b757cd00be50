"""Measurements of drawn shapes against hand-computed values and against regionprops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from morphology_testdata import disc, ellipse

from morphoscope.morphology import CORE, measure_labels, shape_measurements
from morphoscope.morphology.definitions import SHAPE


def one(labels, **kw):
    t = measure_labels(labels, **kw)
    assert len(t) == 1
    return t.iloc[0]


def test_rectangle_exact():
    # h x w rectangle: every border pixel has two border 4-neighbours and no border diagonal
    # (for h, w >= 3), so P = number of border pixels = 2(h + w) - 4; moments are those of a
    # discrete uniform distribution: variance (L^2 - 1) / 12 along each side of length L.
    h, w = 7, 20
    lab = np.zeros((15, 30), np.uint8)
    lab[4:4 + h, 5:5 + w] = 1
    r = one(lab)
    assert r.area_px2 == h * w
    assert r.perimeter_px == pytest.approx(2 * (h + w) - 4, rel=1e-12)
    assert r.circularity == pytest.approx(4 * math.pi * h * w / (2 * (h + w) - 4) ** 2, rel=1e-12)
    assert r.axis_major_length_px == pytest.approx(4 * math.sqrt((w * w - 1) / 12), rel=1e-12)
    assert r.axis_minor_length_px == pytest.approx(4 * math.sqrt((h * h - 1) / 12), rel=1e-12)
    ratio = math.sqrt((h * h - 1) / (w * w - 1))
    assert r.aspect_ratio == pytest.approx(1 / ratio, rel=1e-12)
    assert r.anisotropy == pytest.approx(1 - ratio, rel=1e-12)
    assert r.eccentricity == pytest.approx(math.sqrt(1 - ratio**2), rel=1e-12)
    assert abs(r.orientation_deg) == pytest.approx(90)  # horizontal
    assert r.solidity == 1 and r.extent == 1 and r.area_convex_px2 == h * w
    assert r.equivalent_diameter_px == pytest.approx(math.sqrt(4 * h * w / math.pi))
    # outline of the hull image = pixel-edge midpoints; widest pair spans w and h - 1
    assert r.feret_diameter_max_px == pytest.approx(math.hypot(w, h - 1), rel=1e-12)
    assert r.feret_diameter_min_px == pytest.approx(h, rel=1e-12)
    assert (r.centroid_row, r.centroid_col) == (4 + (h - 1) / 2, 5 + (w - 1) / 2)
    assert (r.bbox_row_min, r.bbox_col_min, r.bbox_row_max, r.bbox_col_max) == (4, 5, 11, 25)
    assert not r.touches_border


@pytest.mark.parametrize("radius", [6, 15, 40])
def test_disc_against_geometry(radius):
    r = one(disc(radius))
    # Digital disc: area within the boundary-pixel band of pi r^2; the second moments of a
    # disc give axes of 2r (tolerance covers digitisation: 1.5 % at r = 6).
    assert abs(r.area_px2 - math.pi * radius**2) <= 2 * math.pi * radius * 0.5
    tol = 0.1 / radius
    assert r.axis_major_length_px == pytest.approx(2 * radius, rel=tol)
    assert r.axis_minor_length_px == pytest.approx(2 * radius, rel=tol)
    assert r.eccentricity < 0.2 and r.anisotropy < 0.01 and r.aspect_ratio < 1.01
    assert r.equivalent_diameter_px == pytest.approx(2 * radius, rel=tol)
    # the outline runs through pixel-edge midpoints: about half a pixel outside the centres
    assert r.feret_diameter_max_px == pytest.approx(2 * radius + 1, abs=0.6)
    assert r.feret_diameter_min_px == pytest.approx(2 * radius + 1, abs=1.5)
    assert r.perimeter_px == pytest.approx(2 * math.pi * radius, rel=0.05)
    # regionprops' hull (of pixel-edge midpoints) takes in part of the band of pixels around a
    # digital disc, so even a disc is not fully 'solid' (0.93 at r = 6, 0.96 at r = 15)
    assert 0.9 < r.solidity < 1
    assert 0.9 < r.circularity <= 1


@pytest.mark.parametrize("theta", [0, 30, 60, 90, -45, -80])
def test_ellipse_axes_and_orientation(theta):
    a, b = 30.0, 12.0
    r = one(ellipse(a, b, theta))
    assert r.axis_major_length_px == pytest.approx(2 * a, rel=0.01)
    assert r.axis_minor_length_px == pytest.approx(2 * b, rel=0.02)
    assert r.eccentricity == pytest.approx(math.sqrt(1 - (b / a) ** 2), abs=0.01)
    assert r.anisotropy == pytest.approx(1 - b / a, abs=0.01)
    assert r.aspect_ratio == pytest.approx(a / b, rel=0.02)
    diff = (r.orientation_deg - theta + 90) % 180 - 90  # orientation is defined modulo 180
    assert abs(diff) < 0.5
    assert r.area_px2 == pytest.approx(math.pi * a * b, rel=0.01)
    # outline through pixel-edge midpoints: +1 px along the image axes, less on diagonals
    assert r.feret_diameter_max_px == pytest.approx(2 * a, abs=1.5)
    assert r.feret_diameter_min_px == pytest.approx(2 * b, abs=1.5)


def test_single_and_two_pixel_objects():
    lab = np.zeros((9, 9), np.uint16)
    lab[2, 2] = 1
    lab[5, 4:6] = 2  # two pixels side by side
    t = measure_labels(lab).set_index("label")
    one_px, two_px = t.loc[1], t.loc[2]
    assert one_px.area_px2 == 1 and one_px.perimeter_px == 0
    assert np.isnan(one_px.circularity)  # P = 0: undefined, not infinite
    assert one_px.eccentricity == 0 and one_px.axis_major_length_px == 0
    assert np.isnan(one_px.aspect_ratio) and np.isnan(one_px.anisotropy)
    assert one_px.solidity == 1 and one_px.extent == 1
    assert one_px.feret_diameter_max_px == 1
    assert one_px.feret_diameter_min_px == pytest.approx(math.sqrt(2) / 2)
    assert two_px.area_px2 == 2 and two_px.perimeter_px == 0 and np.isnan(two_px.circularity)
    assert two_px.axis_major_length_px == pytest.approx(2.0)  # 4 * sqrt(variance 1/4)
    assert two_px.axis_minor_length_px == 0 and two_px.eccentricity == 1
    assert two_px.aspect_ratio == np.inf and two_px.anisotropy == 1
    assert abs(two_px.orientation_deg) == 90
    assert two_px.feret_diameter_max_px == 2 and two_px.feret_diameter_min_px == 1


def test_circularity_never_above_one_for_small_objects():
    # 4 pi A / P^2 exceeds 1 for small blobs (P runs through pixel centres): 3x3 square gives
    # 4 pi 9 / 8^2 = 1.77; the table clips at 1 (ImageJ's convention)
    lab = np.zeros((16, 60), np.uint8)
    lab[1:4, 1:4] = 1
    k = 2
    for r in (1, 2, 3, 4):
        sub = disc(r, pad=0)
        lab[5:5 + sub.shape[0], 10 * k:10 * k + sub.shape[1]][sub > 0] = k
        k += 1
    raw = shape_measurements(lab, properties=["area", "perimeter"])
    with np.errstate(divide="ignore"):
        assert (4 * np.pi * raw["area"] / raw["perimeter"] ** 2 > 1).sum() >= 3
    t = measure_labels(lab)
    assert (t.circularity.dropna() <= 1).all()
    assert t.set_index("label").loc[1, "circularity"] == 1.0


def test_holes():
    full = disc(12)
    inner = disc(5, pad=0)
    ring = full.copy()
    c0 = (full.shape[0] - inner.shape[0]) // 2
    ring[c0:c0 + inner.shape[0], c0:c0 + inner.shape[1]][inner > 0] = 0
    f, r = one(full), one(ring)
    assert r.area_px2 == f.area_px2 - inner.sum()  # hole pixels are not counted
    assert r.perimeter_px > f.perimeter_px  # the hole's outline is part of the perimeter
    assert r.area_convex_px2 == f.area_convex_px2  # the hull fills the hole
    assert r.solidity == pytest.approx(r.area_px2 / f.area_convex_px2)
    assert r.feret_diameter_max_px == f.feret_diameter_max_px
    ref = measure_labels(ring, method="regionprops").iloc[0]
    for c in ("area_px2", "perimeter_px", "solidity", "eccentricity", "feret_diameter_max_px"):
        assert r[c] == pytest.approx(ref[c], rel=1e-12)


def test_border_objects_flagged_and_excluded():
    lab = np.zeros((20, 20), np.uint16)
    lab[0:3, 5:8] = 1      # top edge
    lab[8:11, 17:20] = 2   # right edge
    lab[8:11, 8:11] = 3    # inside
    lab[19, 0] = 4         # corner pixel
    t = measure_labels(lab)
    assert dict(zip(t.label, t.touches_border)) == {1: True, 2: True, 3: False, 4: True}
    kept = measure_labels(lab, exclude_border=True)
    assert list(kept.label) == [3]


def test_non_sequential_labels_dtypes_and_split_objects():
    base = np.zeros((30, 30), np.int64)
    base[2:8, 2:9] = 70000
    base[12:20, 3:6] = 5
    base[22:28, 20:29] = 5  # label 5 in two pieces: one object, as in regionprops
    base[14:17, 15:25] = 2**40
    ref = measure_labels(base, method="regionprops")
    assert list(ref.label) == [5, 70000, 2**40]
    for dtype in (np.int64, np.uint64):
        t = measure_labels(base.astype(dtype))
        assert list(t.label) == [5, 70000, 2**40]
        for c in t.columns[t.dtypes == float]:
            np.testing.assert_allclose(t[c], ref[c], rtol=1e-12, atol=1e-12, err_msg=c)
    small = base.copy()
    small[small == 2**40] = 9
    small[small == 70000] = 300
    for dtype in (np.uint16, np.int32, np.uint32):
        t = measure_labels(small.astype(dtype))
        assert list(t.label) == [5, 9, 300]
        assert t.set_index("label").loc[5, "area_px2"] == 24 + 54


def test_pixel_size_scales_units_and_names():
    lab = ellipse(20, 8, 30)
    px = measure_labels(lab)
    um = measure_labels(lab, pixel_size=0.25)
    assert "area_px2" in px and "area_um2" in um and "area_px2" not in um
    assert "perimeter_um" in um and "feret_diameter_max_um" in um
    r_px, r_um = px.iloc[0], um.iloc[0]
    assert r_um.pixel_size_um == 0.25
    assert r_um.area_um2 == pytest.approx(r_px.area_px2 * 0.0625, rel=1e-14)
    for length in ("perimeter", "axis_major_length", "axis_minor_length",
                   "equivalent_diameter", "feret_diameter_max", "feret_diameter_min"):
        assert r_um[f"{length}_um"] == pytest.approx(r_px[f"{length}_px"] * 0.25, rel=1e-14)
    for ratio in ("circularity", "eccentricity", "aspect_ratio", "anisotropy", "solidity",
                  "extent", "orientation_deg"):
        assert r_um[ratio] == r_px[ratio]
    # positions stay in pixels
    assert r_um.centroid_row == r_px.centroid_row


def test_properties_subset_and_columns():
    lab = ellipse(10, 5, 0)
    t = measure_labels(lab, properties=CORE)
    assert list(t.columns[-7:]) == ["area_px2", "perimeter_px", "circularity", "eccentricity",
                                    "aspect_ratio", "anisotropy", "solidity"]
    full = measure_labels(lab)
    for c in t.columns[-7:]:
        assert t[c].iloc[0] == full[c].iloc[0]
    with pytest.raises(ValueError, match="unknown measurement"):
        measure_labels(lab, properties=["roundness"])
    assert set(SHAPE) <= set(shape_measurements(lab))


def test_scores_classes_group():
    lab = np.zeros((10, 10), np.uint16)
    lab[1:4, 1:4] = 3
    lab[6:9, 6:9] = 7
    t = measure_labels(lab, scores={3: 0.9, 7: 0.4}, classes={3: 1, 7: 2},
                       class_names=["nucleus", "granule"], image_name="img1", group="ctrl")
    assert list(t.columns[:5]) == ["image", "group", "label", "class", "score"]
    assert list(t["class"]) == ["nucleus", "granule"]
    assert list(t.score) == [0.9, 0.4] and set(t.group) == {"ctrl"} and set(t.image) == {"img1"}
    t2 = measure_labels(lab, classes={3: "a", 7: "b"})
    assert list(t2["class"]) == ["a", "b"] and "score" not in t2
    t3 = measure_labels(lab, classes={3: 1, 7: 2}, class_names={1: "x", 2: "y"})
    assert list(t3["class"]) == ["x", "y"]
    assert set(measure_labels(lab)["class"]) == {"object"}
