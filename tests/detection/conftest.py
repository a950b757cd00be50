"""Fixtures of the detection tests: the real BCCD blood-smear set (VOC boxes) from ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bccd(shared_data) -> Path:
    root = shared_data / "bccd-platelets" / "BCCD"
    if not (root / "Annotations").is_dir():
        pytest.skip(f"bccd-platelets not present at {root}")
    return root


def small_voc(bccd: Path, folder: Path, ids: list[str], *, labelmap: bool = True) -> Path:
    """A VOC folder in ``folder`` with the real annotation files of ``ids`` (copied, so a test
    may edit them) and their JPEGs (linked)."""
    (folder / "Annotations").mkdir(parents=True)
    (folder / "JPEGImages").mkdir()
    for i in ids:
        (folder / "Annotations" / f"{i}.xml").write_bytes((bccd / "Annotations" / f"{i}.xml").read_bytes())
        (folder / "JPEGImages" / f"{i}.jpg").symlink_to(bccd / "JPEGImages" / f"{i}.jpg")
    if labelmap:
        (folder / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                             "Platelets:::\nRBC:::\nWBC:::\n")
    return folder
