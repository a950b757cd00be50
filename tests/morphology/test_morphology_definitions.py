"""Every measurement is defined once: docs/morphology.md, the docstring of measure_labels and the
definitions module say the same thing, and the table has a column for each definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from morphoscope.morphology import MEASUREMENTS, measure_labels
from morphoscope.morphology.definitions import base_name, column_name, definitions_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_hold_the_definitions_table():
    text = (DOCS / "morphology.md").read_text()
    assert definitions_markdown() in text, "regenerate the table in docs/morphology.md"


def test_docstring_holds_every_definition():
    doc = measure_labels.__doc__
    for m in MEASUREMENTS:
        assert m.formula in " ".join(doc.split()) or m.formula in doc, m.name


def test_every_definition_has_a_column():
    lab = np.zeros((12, 12), np.uint8)
    lab[3:9, 2:10] = 1
    t = measure_labels(lab, image=np.ones((12, 12)))
    assert {base_name(c) for c in t.columns} - {None} == {m.name for m in MEASUREMENTS}
    for m in MEASUREMENTS:
        assert column_name(m.name) in t.columns


@pytest.mark.parametrize("pixels, expected", [
    ([(0, 0), (1, 1), (2, 2), (3, 3)], 45.0),   # top-left to bottom-right
    ([(3, 0), (2, 1), (1, 2), (0, 3)], -45.0),  # bottom-left to top-right
    ([(0, 1), (1, 1), (2, 1), (3, 1)], 0.0),    # vertical
])
def test_orientation_convention(pixels, expected):
    lab = np.zeros((6, 6), np.uint8)
    for r, c in pixels:
        lab[r + 1, c + 1] = 1
    assert measure_labels(lab).orientation_deg.iloc[0] == pytest.approx(expected)
