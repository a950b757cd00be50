"""Fixtures of the semantic-segmentation tests: tiny configs and an untrained tiny model, on
real BBBC039 images from ../shared/data (tests that need them skip when it is absent)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from semantic_testdata import tiny_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BBBC = SHARED / "bbbc039"


@pytest.fixture(autouse=True)
def one_thread():
    """The test machine is shared with other work: one thread is several times faster there."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bbbc() -> Path:
    if not BBBC.is_dir():
        pytest.skip(f"real data not present at {SHARED} (a fresh clone has no ../shared): BBBC039 needed")
    return BBBC


@pytest.fixture(scope="session")
def small_set(bbbc, tmp_path_factory) -> Path:
    """3 BBBC039 training images (images/ + labels/), cropped to 160x224 to keep tests fast."""
    from morphoscope.io.images import read_image, read_label_image, write_png
    import tifffile

    root = tmp_path_factory.mktemp("bbbc_small")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for p in sorted((bbbc / "training" / "images").glob("*.tif"))[:3]:
        img = read_image(p)[:160, :224]
        lab = read_label_image(bbbc / "training" / "labels" / f"{p.stem}.png")[:160, :224]
        tifffile.imwrite(root / "images" / p.name, img)
        write_png(root / "labels" / f"{p.stem}.png", lab.astype(np.uint16))
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(small_set, tmp_path_factory) -> Path:
    """An untrained tiny model saved as a morphoscope checkpoint (task semantic)."""
    from morphoscope.config import config_to_dict
    from morphoscope.tasks import parse_config
    from morphoscope.models.checkpoint import save_checkpoint
    from morphoscope.tasks.semantic.model import build_model

    cfg = parse_config(tiny_config(small_set))
    import torch

    torch.manual_seed(0)
    model = build_model(cfg.model, 1)
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.pt"
    save_checkpoint(path, task="semantic", model=model, config=config_to_dict(cfg), class_names=["nucleus"],
                    normalize=cfg.data.normalize.model_dump(), extra={"threshold": 0.5})
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
