"""The pretrained-versus-scratch recipe: two configs that differ in initialisation only."""

from __future__ import annotations

from pathlib import Path

from morphoscope.tasks import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_configs_differ_only_in_initialisation():
    scratch = load_config(CONFIGS / "bbbc039_maskrcnn_r18_scratch.yaml").model_dump()
    imagenet = load_config(CONFIGS / "bbbc039_maskrcnn_r18_imagenet.yaml").model_dump()
    assert scratch.pop("name").endswith("_scratch") and imagenet.pop("name").endswith("_imagenet")
    assert scratch["model"].pop("pretrained") == "none"
    assert imagenet["model"].pop("pretrained") == "imagenet"
    assert scratch == imagenet
    text = (CONFIGS / "bbbc039_maskrcnn_r18_imagenet.yaml").read_text()
    assert "weights: /path/to/resnet18-f37072fd.pth" in text  # the documented offline path
