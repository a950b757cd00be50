"""Make data/cellprofiler_IXMtest_G13_s9.csv: CellProfiler's MeasureObjectSizeShape features of
the ground-truth nuclei of the bundled sample IXMtest_G13_s9, computed by CellProfiler's own
measurement code as the CellProfiler team packages it (cp-measure), for
test_cellprofiler_matches_cellprofilers_own_measurements.

cp-measure pins other versions of numpy/pillow than morphoscope's environment, so run this in a
virtual environment of its own:

    python3 -m venv /tmp/cpvenv && /tmp/cpvenv/bin/pip install cp-measure==0.3.0 pandas imageio
    /tmp/cpvenv/bin/python tests/interop/make_cellprofiler_reference.py

(made with cp-measure 0.3.0, centrosome 1.3.4, scikit-image 0.26.0, numpy 2.4.6).
"""

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
from cp_measure.bulk import get_core_measurements

HERE = Path(__file__).parent
SAMPLE = "IXMtest_G13_s9"
FEATURES = ["Area", "Perimeter", "ConvexArea", "MajorAxisLength", "MinorAxisLength", "EquivalentDiameter",
            "Eccentricity", "Solidity", "Extent", "Orientation", "FormFactor", "Compactness", "BoundingBoxArea",
            "BoundingBoxMinimum_X", "BoundingBoxMaximum_X", "BoundingBoxMinimum_Y", "BoundingBoxMaximum_Y",
            "Center_X", "Center_Y"]
# what morphoscope does not map (other definitions), kept to document the differences
UNMAPPED = ["MinFeretDiameter", "MaxFeretDiameter"]


def main() -> None:
    labels = iio.imread(HERE.parents[1] / "src/morphoscope/samples/bbbc039/labels" / f"{SAMPLE}.png").astype(np.int32)
    assert np.array_equal(np.unique(labels)[1:], np.arange(1, labels.max() + 1))  # cp-measure wants 1..N
    image = iio.imread(HERE.parents[1] / "src/morphoscope/samples/bbbc039/images" / f"{SAMPLE}.tif").astype(float)
    measure = get_core_measurements()
    values = {**measure["sizeshape"](labels, image), **measure["feret"](labels, image)}
    table = pd.DataFrame({"ObjectNumber": np.arange(1, labels.max() + 1)})
    for f in FEATURES + UNMAPPED:
        table[f"AreaShape_{f}"] = values[f]
    table.to_csv(HERE / "data" / f"cellprofiler_{SAMPLE}.csv", index=False)


if __name__ == "__main__":
    main()
