"""ONNX: torch.onnx's TorchScript-based exporter (``dynamo=False``: the path torchvision's
detection models are exported and tested with, opset >= 11), image height and width (and the
batch where the model takes one) left free, the model card in the file's metadata
(``metadata_props["morphoscope"]``). The check runs the file with ONNX Runtime on the CPU.

Run it without morphoscope or PyTorch::

    import onnxruntime as ort
    sess = ort.InferenceSession("nuclei.onnx", providers=["CPUExecutionProvider"])
    boxes, labels, scores, masks = sess.run(None, {"image": image})
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from morphoscope.export.common import card, compare

MIN_OPSET = 11


def dynamic_axes(spec) -> dict:
    inp = {} if spec.fixed_size else {2: "height", 3: "width"}
    if spec.batch:
        inp = {0: "batch", **inp}
    axes = {spec.input_name: inp}
    for i, name in enumerate(spec.outputs):
        if spec.dense and i == 0:
            axes[name] = dict(inp)
        elif spec.batch:
            axes[name] = {0: "batch"}
        else:  # one row per detected object
            axes[name] = {0: "objects"}
    return axes


def write(spec, example_input: np.ndarray, path: Path, meta: dict, *, opset: int = 17) -> None:
    """Export ``spec.module`` to ``path`` (written beside it, then renamed into place)."""
    import onnx

    from morphoscope.errors import ConfigError

    if opset < MIN_OPSET:
        raise ConfigError(f"ONNX opset must be at least {MIN_OPSET}, got {opset}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.export.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on torchvision's shape arithmetic
            torch.onnx.export(spec.module.eval(), (torch.from_numpy(example_input),), str(tmp), dynamo=False,
                              opset_version=opset, input_names=[spec.input_name], output_names=list(spec.outputs),
                              dynamic_axes=dynamic_axes(spec), do_constant_folding=True)
        model = onnx.load(str(tmp))
        model.doc_string = spec.doc
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = "morphoscope", json.dumps(meta)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_card(path: str | Path) -> dict:
    """The model card stored in an exported ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return json.loads({p.key: p.value for p in model.metadata_props}["morphoscope"])


def session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(path_or_session, x: np.ndarray, names) -> dict[str, np.ndarray]:
    sess = session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    outs = sess.run(list(names), {sess.get_inputs()[0].name: x})
    return dict(zip(names, outs))


def export_onnx(bundle, spec, ex, out: Path, *, check: bool = True, opset: int = 17):
    from morphoscope.export import ExportResult

    write(spec, ex.input, out, card(bundle, spec), opset=opset)
    result = ExportResult("onnx", out, ex.name, runtime="ONNX Runtime")
    if check:
        compare(result, ex.reference, run(out, ex.input, spec.outputs))
    return result
