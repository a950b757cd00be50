"""Checkpoints are read with weights_only=True: a file carrying a pickled callable is refused
with a clear message, and the callable never runs."""

from __future__ import annotations

import pytest
import torch

from export_testdata import run_cli_without


class Trap:
    """Unpickling this calls Path.touch(marker): a stand-in for any code an attacker would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _evil_checkpoint(tmp_path, name="evil.pt"):
    marker = tmp_path / "code_ran"
    sd = torch.nn.Linear(2, 2).state_dict()
    path = tmp_path / name
    torch.save({"format": 2, "task": "instance", "config": {}, "class_names": ["nucleus"], "model": sd,
                "hook": Trap(marker)}, path)
    return path, marker


def test_pickle_trap_is_real(tmp_path):
    """The trap does run code when the file is unpickled without weights_only (the test below
    would otherwise prove nothing)."""
    path, marker = _evil_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_checkpoint_with_pickled_callable_is_refused(tmp_path):
    from morphoscope.errors import ConfigError
    from morphoscope.models.checkpoint import read_checkpoint, read_weights_file
    from morphoscope.tasks import load_model

    path, marker = _evil_checkpoint(tmp_path)
    for read in (read_checkpoint, read_weights_file, load_model):
        with pytest.raises(ConfigError) as err:
            read(path)
        msg = str(err.value)
        assert "refusing to load" in msg and "pickled Python objects" in msg, msg
        assert "evil.pt" in msg and "\n" not in msg
    assert not marker.exists(), "the pickled callable ran"


def test_cli_refuses_it_in_one_line(tmp_path):
    path, marker = _evil_checkpoint(tmp_path)
    r = run_cli_without([], "export", path, "--format", "torchscript", "--out", tmp_path / "x.pt")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refusing to load" in lines[0], r.stderr
    assert not marker.exists() and not (tmp_path / "x.pt").exists()


def test_plain_checkpoint_still_loads(tmp_path, semantic_bundle):
    """Control: a checkpoint of tensors and plain data loads (the refusal is not blanket)."""
    from morphoscope.models.checkpoint import read_checkpoint, save_checkpoint

    path = tmp_path / "ok.pt"
    b = semantic_bundle
    save_checkpoint(path, task="semantic", model=b.model, config=b.config, class_names=b.class_names,
                    normalize=b.normalize)
    ckpt = read_checkpoint(path)
    assert ckpt["task"] == "semantic" and set(ckpt["model"]) == set(b.model.state_dict())


def test_checkpoint_of_an_older_version_loads_without_its_removed_settings():
    """A setting a later version removed does not make an older checkpoint unloadable: it is
    dropped with a warning naming it."""
    import warnings

    from morphoscope.models.checkpoint import SHIPPED, WEIGHTS_DIR, read_checkpoint
    from morphoscope.tasks import bundle_from_checkpoint

    ckpt = read_checkpoint(WEIGHTS_DIR / f"{SHIPPED['nuclei-maskrcnn']}.safetensors")
    ckpt["config"]["model"]["seed_distance"] = 3  # a renamed setting
    ckpt["config"]["removed_section"] = {"a": 1}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = bundle_from_checkpoint(ckpt, name="old")
    assert bundle.task.name == "instance"
    message = " ".join(str(w.message) for w in caught)
    assert "model.seed_distance" in message and "removed_section" in message
