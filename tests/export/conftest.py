"""Export tests: real bundled BBBC039 images, the shipped Mask R-CNN and a small FPN."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def two_threads():
    """The test machine is shared; a fixed thread count keeps runs comparable."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_image():
    from morphoscope.export.common import default_image
    from morphoscope.io.images import read_image

    path = default_image()
    return path, read_image(path)


@pytest.fixture(scope="session")
def semantic_bundle():
    from export_testdata import tiny_semantic_bundle

    return tiny_semantic_bundle()


@pytest.fixture(scope="session")
def nuclei_bundle():
    from morphoscope.tasks import load_model

    return load_model("nuclei-maskrcnn", device="cpu")
