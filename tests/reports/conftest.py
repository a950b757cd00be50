"""Fixtures of the report tests (helpers are in reports_testdata.py)."""

from __future__ import annotations

import pytest
from reports_testdata import make_data


@pytest.fixture(scope="session")
def pred_gt(tmp_path_factory):
    """(prediction folder, GT folder) of two images (real BBBC039 when ../shared/data exists)."""
    return make_data(tmp_path_factory.mktemp("report_data"), n_images=2)
