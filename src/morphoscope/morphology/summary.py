"""Summaries of a measurement table: per image and class (or any grouping), the object count,
the density and the mean, median and standard deviation of each measurement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from morphoscope.morphology.definitions import base_name


def measurement_columns(table: pd.DataFrame) -> list[str]:
    """The columns of ``table`` that hold measurements (not identity or position columns)."""
    return [c for c in table.columns if base_name(c) is not None]


def _image_areas(table: pd.DataFrame, images: Mapping | None) -> dict[str, tuple[float, bool]]:
    """{image: (area, physical)}: area in mm² when the pixel size is known, else in megapixels."""
    info = images if images is not None else table.attrs.get("images", {})
    out = {}
    for name, meta in info.items():
        px = float(meta["height"]) * float(meta["width"])
        size = meta.get("pixel_size_um")
        if size:
            out[str(name)] = (px * (float(size) * 1e-3) ** 2, True)
        else:
            out[str(name)] = (px / 1e6, False)
    return out


def summarize(
    table: pd.DataFrame,
    *,
    by: Sequence[str] = ("image", "class"),
    measurements: Sequence[str] | None = None,
    images: Mapping[str, Mapping] | None = None,
) -> pd.DataFrame:
    """One row per combination of the ``by`` columns: ``count``, ``density``, and
    ``<measurement>_mean``, ``_median`` and ``_sd`` (sample standard deviation, ddof = 1) of
    every measurement column.

    Statistics skip values that are not finite (NaN circularity of one- or two-pixel objects,
    infinite aspect ratio of straight lines); ``<measurement>_n`` counts the values used where
    it differs from ``count``. ``density`` is objects per mm² (``density_per_mm2``) when every
    image's pixel size is known, else per megapixel (``density_per_mpx``); it needs the image
    sizes, from ``images`` ({name: {"height", "width", "pixel_size_um"}}) or
    ``table.attrs["images"]`` (set by the measure functions), and it sums the areas of the images
    in each group. Images without any object still get a row (count 0) when ``"image"`` is in
    ``by`` and their sizes are known; every class present in the table is listed for them.
    """
    by = [b for b in by if b in table.columns or b == "image"]
    cols = list(measurements) if measurements is not None else measurement_columns(table)
    areas = _image_areas(table, images)
    physical = bool(areas) and all(p for _, p in areas.values())
    density_col = "density_per_mm2" if physical else "density_per_mpx"
    if not by:
        table = table.assign(_all="all")
        by = ["_all"]
    groups = table.groupby(by, sort=True, dropna=False)
    rows = []
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["count"] = len(sub)
        for c in cols:
            v = pd.to_numeric(sub[c], errors="coerce").to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            row[f"{c}_mean"] = float(v.mean()) if len(v) else np.nan
            row[f"{c}_median"] = float(np.median(v)) if len(v) else np.nan
            row[f"{c}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else np.nan
            row[f"{c}_n"] = len(v)
        row["_images"] = sorted(set(sub["image"].astype(str))) if "image" in sub else []
        rows.append(row)
    # images with no objects
    if "image" in by and areas:
        present = set(table["image"].astype(str)) if len(table) else set()
        classes = [None]
        if "class" in by and len(table):
            classes = sorted(set(table["class"].astype(str)))
        for name in sorted(set(areas) - present):
            for cls in classes:
                row = {b: None for b in by}
                row["image"] = name
                if "class" in by:
                    row["class"] = cls
                if "group" in by:
                    row["group"] = None
                row["count"] = 0
                for c in cols:
                    row.update({f"{c}_mean": np.nan, f"{c}_median": np.nan, f"{c}_sd": np.nan,
                                f"{c}_n": 0})
                row["_images"] = [name]
                rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        out = pd.DataFrame(columns=by + ["count", density_col]
                           + [f"{c}_{s}" for c in cols for s in ("mean", "median", "sd")])
        return out.drop(columns=["_all"], errors="ignore")
    if areas:
        info = images if images is not None else table.attrs.get("images", {})

        def density(r):
            if "image" in by:
                names = [r["image"]]
            elif "group" in by:
                names = [n for n, m in info.items() if m.get("group") == r["group"]]
                names = names or r["_images"]
            else:  # pooled over every image
                names = list(areas)
            total = sum(areas[n][0] for n in names if n in areas)
            return r["count"] / total if total > 0 else np.nan

        out[density_col] = out.apply(density, axis=1)
    else:
        out[density_col] = np.nan
    # drop the _n columns that only repeat count
    for c in cols:
        if (out[f"{c}_n"] == out["count"]).all():
            out = out.drop(columns=f"{c}_n")
    order = by + ["count", density_col] + [c for c in out.columns
                                           if c not in by and c not in ("count", density_col,
                                                                        "_images")]
    out = out[order].drop(columns=["_all"], errors="ignore")
    if "image" in by:
        out = out.sort_values(by, kind="stable", na_position="last").reset_index(drop=True)
    return out
