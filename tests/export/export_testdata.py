"""Helpers of the export tests (a module with a unique name: conftest modules of several test
folders would shadow each other when imported by name)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

#: run morphoscope's CLI with some packages made unimportable, as on an install without an extra
BLOCKED_CLI = """
import sys, importlib.abc
blocked = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked or name in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["morphoscope", *sys.argv[2:]]
from morphoscope.cli import main
main()
"""


def run_cli_without(blocked: list[str], *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED_CLI, ",".join(blocked) or "-", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def tiny_semantic_bundle(seed: int = 0, *, output: str = "boundary", size_head: bool = False, tta: int = 1):
    """A small FPN (ResNet-18 encoder, boundary head), random weights from ``seed``, as a loaded
    model; its config names the bundled BBBC039 samples as training data."""
    import torch

    from morphoscope.config import config_to_dict
    from morphoscope.samples import BBBC039
    from morphoscope.tasks import bundle_from_checkpoint, parse_config
    from morphoscope.tasks.semantic.model import build_model

    d = {"task": "semantic", "name": "tiny_fpn",
         "data": {"train": str(BBBC039), "classes": ["nucleus"], **({"diameter": 20.0} if size_head else {})},
         "model": {"architecture": "fpn", "encoder": "resnet18", "decoder_channels": 32, "output": output,
                   "size_head": size_head},
         "train": {"epochs": 1, "iters_per_epoch": 1, "batch_size": 2, "crop_size": 64, "workers": 0}}
    cfg = parse_config(d)
    torch.manual_seed(seed)
    net = build_model(cfg.model, 1)
    ckpt = {"task": "semantic", "config": config_to_dict(cfg), "class_names": ["nucleus"],
            "model": net.state_dict(), "normalize": {"low": 1.0, "high": 99.8},
            "metrics": {"f1@0.5": 0.0}, "extra": {"tta": tta}, "card": {"trained_on": "untrained (random weights); config names BBBC039"}}
    return bundle_from_checkpoint(ckpt, name="tiny_fpn")
