"""TorchScript: ``torch.jit.script`` of the task's export module (control flow and any input
size kept), with the model card stored in the archive as ``extra/morphoscope.json``.

Load it without morphoscope::

    net = torch.jit.load("nuclei.pt")
    outputs = net(image)           # image: (1 or B, C, H, W) float32, see the card
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from morphoscope.export.common import card, compare, run_torch
from morphoscope.io.atomic import atomic_write

CARD_FILE = "morphoscope.json"


def script(spec) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        return torch.jit.script(spec.module)


def save(scripted, path: Path, meta: dict) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(scripted, buf, _extra_files={CARD_FILE: json.dumps(meta, indent=1)})
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def read_card(path: str | Path) -> dict:
    """The model card stored in an exported TorchScript file."""
    extra = {CARD_FILE: ""}
    load(path, extra)
    return json.loads(extra[CARD_FILE])


def load(path: str | Path, extra_files: dict | None = None):
    """``torch.jit.load`` on the CPU (its deprecation notice silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)


def export_torchscript(bundle, spec, ex, out: Path, *, check: bool = True):
    from morphoscope.export import ExportResult

    save(script(spec), out, card(bundle, spec))
    result = ExportResult("torchscript", out, ex.name, runtime="TorchScript")
    if check:
        loaded = load(out)
        compare(result, ex.reference, run_torch(loaded, ex.input, spec.outputs))
    return result
