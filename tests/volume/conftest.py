"""Fixtures of the 3D tests: the two real confocal stacks of BBBC050 (QCANet's copy: mouse-embryo
nuclei, 51 x 120 x 122 voxels of 0.8 x 0.8 x 1.75 µm) from ../shared/data; tests that need them
skip when it is absent."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    """The test machine is shared with other work: one thread is several times faster there."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def qcanet(shared_data):
    root = shared_data / "bbbc050-qcanet"
    if not (root / "labels_instance").is_dir():
        pytest.skip(f"real data not present at {root}: BBBC050 (QCANet) stacks needed")
    return root


@pytest.fixture(scope="session")
def stacks(qcanet) -> dict:
    """{name: (image, instance labels, semantic mask, centre markers)}, each (Z, Y, X)."""
    import tifffile

    out = {}
    for name in ("8_cell_stage", "16_cell_stage"):
        out[name] = tuple(tifffile.imread(qcanet / sub / f"{name}.tif")
                          for sub in ("images", "labels_instance", "labels_semantic", "labels_detection"))
    return out


@pytest.fixture(scope="session")
def tiny_volume_model(tmp_path_factory):
    """An untrained tiny semantic checkpoint (FPN, boundary head, per-stack normalisation) with
    3D objects on (``postprocess.volume``); tests replace its network by an intensity rule."""
    import torch

    from morphoscope.config import config_to_dict
    from morphoscope.models.checkpoint import save_checkpoint
    from morphoscope.tasks import parse_config
    from morphoscope.tasks.semantic.model import build_model

    root = tmp_path_factory.mktemp("vol_model")
    cfg = parse_config({
        "task": "semantic", "name": "tiny3d",
        "data": {"train": str(root), "classes": ["nucleus"], "normalize": {"per": "stack"}},
        "model": {"architecture": "fpn", "encoder": "resnet18", "decoder_channels": 32, "output": "boundary"},
        "postprocess": {"volume": True, "min_volume": 20, "min_size": 5},
        "inference": {"block_size": 1024}})
    torch.manual_seed(0)
    model = build_model(cfg.model, 1, load_weights=False)
    path = root / "tiny3d.pt"
    save_checkpoint(path, task="semantic", model=model, config=config_to_dict(cfg), class_names=["nucleus"],
                    normalize=cfg.data.normalize.model_dump(), extra={"threshold": 0.5})
    return path

