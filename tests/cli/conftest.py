"""Fixtures of the command-line tests: one torch thread, a real prediction folder of the shipped
model, and a folder that refuses new files."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    """The test machine is shared: one thread is faster there, and gives the numbers of the
    subprocesses (OMP_NUM_THREADS=1) exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_images(samples_dir) -> list[Path]:
    return sorted((samples_dir / "images").glob("*.tif"))


@pytest.fixture(scope="session")
def prediction_folder(tmp_path_factory, sample_images) -> Path:
    """The shipped model's predictions of two bundled images (read-only for the tests: copy it
    before changing anything)."""
    from cli_testdata import assert_success, run_cli

    out = tmp_path_factory.mktemp("predicted") / "pred"
    before = torch.get_num_threads()  # session fixtures come before the autouse one_thread
    torch.set_num_threads(1)
    try:
        assert_success(run_cli("predict", *sample_images[:2], "--out", out, "--device", "cpu"))
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture
def copy_of(tmp_path):
    """copy_of(folder): a copy of a folder in this test's temporary folder, to damage."""
    def copy(folder: Path) -> Path:
        return Path(shutil.copytree(folder, tmp_path / folder.name))

    return copy


def _refuses_files(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return True
    os.close(fd)
    os.unlink(name)
    return False


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder that refuses new files: one without write permission, or, for an administrator
    (who writes through permission bits), /sys, which refuses everyone."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if _refuses_files(folder):
            yield folder
        elif Path("/sys").is_dir() and _refuses_files(Path("/sys")):
            yield Path("/sys")
        else:
            pytest.skip("no folder refuses new files here (an administrator, and no /sys)")
    finally:
        folder.chmod(0o755)
