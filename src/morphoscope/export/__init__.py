"""Model exchange: a morphoscope model as TorchScript, ONNX or a bioimage.io package.

Every task hands over its network with fixed pre/post-processing
(:meth:`~morphoscope.engine.task.Task.export_module`), so nothing here asks which task a model
is. Each export is checked before it is reported: the exported file is run (TorchScript by
``torch.jit.load``, ONNX by ONNX Runtime, bioimage.io by ``bioimageio.core`` when installed) on a
real image, and its outputs are compared with PyTorch's (docs/export.md)::

    from morphoscope.export import export_model
    result = export_model("nuclei", "onnx", "nuclei.onnx")
    result.max_abs_diff   # {"boxes": 6.1e-05, "labels": 0.0, "scores": 0.0, "masks": 4.2e-05}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from morphoscope.errors import ConfigError, OutputExistsError

#: format -> file suffix of its output
FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "bioimageio": ".zip"}
#: largest accepted difference from PyTorch, relative to max(1, |PyTorch's value|): 1e-4 of a
#: probability, 1e-4 px of a box coordinate below 1 px, 0.07 px at x = 700 (one float32 step
#: there is 6e-5)
TOLERANCE = 1e-4


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how the exported model compared with PyTorch."""

    format: str
    path: Path
    image: str  # the image the check ran on
    #: output name -> largest |exported - PyTorch| (over the first ``compared`` detections for
    #: outputs with one row per detection)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    #: output name -> (rows from PyTorch, rows from the export) where outputs have one row per object
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: output name -> largest |exported - PyTorch| / max(1, |PyTorch|)
    scaled_diff: dict[str, float] = field(default_factory=dict)
    runtime: str = ""  # what ran the exported model
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        diffs = ", ".join(f"{k} {v:.2g}" for k, v in self.max_abs_diff.items())
        text = f"wrote {self.path} ({self.format})"
        if self.max_abs_diff:
            text += f"; max |{self.runtime} - PyTorch| on {self.image}: {diffs}"
        return text


def export_model(model, fmt: str, out: str | Path, *, image: str | Path | None = None, check: bool = True,
                 overwrite: bool = False, tolerance: float = TOLERANCE, opset: int = 17,
                 authors: list[str] | None = None, license: str = "CC-BY-4.0") -> ExportResult:
    """Export ``model`` (a shipped name, a checkpoint file, a run folder or a loaded
    :class:`~morphoscope.engine.bundle.ModelBundle`) as ``fmt`` to ``out``.

    ``image`` (default: a bundled BBBC039 sample) is the check's input and, for bioimage.io,
    the package's test input. With ``check`` the exported file is run and compared with PyTorch;
    a difference above ``tolerance`` (relative to max(1, |value|)) raises :class:`ConfigError`.
    """
    from morphoscope.extras import require

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}' (one of: {', '.join(FORMATS)})")
    if fmt == "onnx":
        require("export", "morphoscope export --format onnx", ("onnx", "onnxruntime"))
    elif fmt == "bioimageio":
        require("export", "morphoscope export --format bioimageio", ("onnx", "bioimageio.spec"))
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError("exists (use --overwrite to replace it)", path=out)
    from morphoscope.export.common import example, load_bundle

    bundle = load_bundle(model)
    spec = bundle.task.export_module(bundle)
    if fmt == "bioimageio" and not spec.dense:
        raise ConfigError(f"bioimage.io packages describe per-pixel outputs; this {bundle.task.name} model's "
                          f"outputs ({', '.join(spec.outputs)}) are not: use --format onnx or torchscript")
    ex = example(bundle, spec, image)
    if fmt == "torchscript":
        from morphoscope.export.torchscript import export_torchscript as run
    elif fmt == "onnx":
        from morphoscope.export.onnx import export_onnx as run
    else:
        from morphoscope.export.bioimageio import export_bioimageio as run
    kwargs = {"opset": opset} if fmt != "torchscript" else {}
    if fmt == "bioimageio":
        kwargs.update(authors=authors, license=license)
    result = run(bundle, spec, ex, out, check=check, **kwargs)
    if check:
        from morphoscope.export.common import worst

        name, value = worst(result, ex.reference)
        if value > tolerance:
            raise ConfigError(f"the exported model differs from PyTorch by {value:.3g} in '{name}' on {ex.name} "
                              f"(more than {tolerance:g} of max(1, |value|)); the file is kept for inspection",
                              path=out)
    return result
