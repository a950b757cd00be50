"""Measure the nuclei of the bundled BBBC039 sample images and summarise them per image.

    .venv/bin/python examples/measure_bbbc039.py [OUT.csv]

Uses the three images shipped in morphoscope/samples/bbbc039 (U2OS nuclei, Hoechst; CC0, see the
samples README). BBBC039 was imaged at 20x; the pixel size below is illustrative -- use your own
microscope's calibration.
"""

from __future__ import annotations

import sys
from pathlib import Path

from morphoscope.io.images import read_image, read_label_image
from morphoscope.morphology import CORE, concat_tables, measure_labels, summarize, write_table

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "morphoscope" / "samples" / "bbbc039"
PIXEL_SIZE_UM = 0.65  # illustrative


def main(out: str | None = None) -> None:
    tables = []
    for label_path in sorted((SAMPLES / "labels").glob("*.png")):
        labels = read_label_image(label_path)
        image = read_image(SAMPLES / "images" / f"{label_path.stem}.tif")
        tables.append(measure_labels(labels, image=image, pixel_size=PIXEL_SIZE_UM,
                                     image_name=label_path.stem))
    table = concat_tables(tables)  # keeps the image sizes for the densities
    print(f"{len(table)} nuclei in {table['image'].nunique()} images")
    cols = ["image", "label", "touches_border", "area_um2", "circularity", "solidity",
            "eccentricity", "intensity_mean"]
    print(table[cols].head().to_string(index=False))

    inside = table[~table["touches_border"]]  # border nuclei are cut by the image edge
    core_cols = [c for c in inside.columns if any(c.startswith(m) for m in CORE)]
    summary = summarize(inside, by=("image",), measurements=core_cols,
                        images=table.attrs["images"])
    print("\nper image (nuclei not touching the border):")
    show = ["image", "count", "density_per_mm2", "area_um2_mean", "circularity_median",
            "solidity_median"]
    print(summary[show].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if out:
        write_table(table, out, overwrite=True)
        print(f"\ntable -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
