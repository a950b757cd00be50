"""bioimage.io model packages (format 0.5) for models with per-pixel outputs.

The package holds the weights three ways — ``pytorch_state_dict`` (the original; its
architecture is :func:`morphoscope.export.common.exported_network`, so it needs morphoscope),
``torchscript`` and ``onnx`` (converted from it; they need neither) — the preprocessing that
morphoscope applies (percentile range of each image, clip), a real test image with the output
PyTorch makes of it, a cover, a README with the model card and validation metrics, the licence
and the citations of the training data.

The package is validated with ``bioimageio.spec``; where ``bioimageio.core`` is installed it is
also run by it (``test_model``, every weight format) and its outputs are compared with PyTorch's.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from morphoscope.errors import ConfigError
from morphoscope.export.common import card, compare

#: training data whose credits an export adds when a model's card or config names it
DATA_CREDITS = {
    "bbbc039": {
        "name": "BBBC039v1 (Broad Bioimage Benchmark Collection), CC0",
        "url": "https://bbbc.broadinstitute.org/BBBC039",
        "cite": [
            ("Caicedo JC, Roth J, Goodman A, et al. Evaluation of deep learning strategies for nucleus "
             "segmentation in fluorescence images. Cytometry Part A 95(9):952-965, 2019.", "10.1002/cyto.a.23863"),
            ("Ljosa V, Sokolnicki KL, Carpenter AE. Annotated high-throughput microscopy image sets for "
             "validation. Nature Methods 9(7):637, 2012.", "10.1038/nmeth.2083"),
        ],
    },
}
INPUT_ID, WEIGHT_FORMATS = "raw", ("pytorch_state_dict", "torchscript", "onnx")


def _identifier(text: str) -> str:
    s = re.sub(r"\W+", "_", str(text)).strip("_")
    return s if s and not s[0].isdigit() else f"c_{s}"


def _portable(config: dict) -> dict:
    """The config without this computer's paths (training data as its last two path parts)."""
    config = json.loads(json.dumps(config))
    data = config.get("data", {})
    for key in ("train", "val"):
        if data.get(key):
            data[key] = "/".join(Path(str(data[key])).parts[-2:])
    if config.get("model", {}).get("weights"):
        config["model"]["weights"] = Path(str(config["model"]["weights"])).name
    return config


def model_name(bundle) -> str:
    return bundle.name if bundle.name != "model" else str(bundle.config.get("name") or "model")


def data_credits(bundle) -> list[dict]:
    """The entries of :data:`DATA_CREDITS` that the model's card or training config names."""
    data = bundle.config.get("data", {})
    text = " ".join([str(bundle.card.get("trained_on", "")), str(data.get("train", "")),
                     str(data.get("val", ""))]).lower()
    return [v for k, v in DATA_CREDITS.items() if k in text]


def raw_input(ex, channels: int) -> np.ndarray:
    """The example image as the package's raw input: float32 ``(1, C, H, W)`` (a grey image is
    repeated to the model's channels, as the prediction engine does)."""
    raw = ex.raw.astype(np.float32)
    if raw.ndim == 2:
        raw = np.repeat(raw[None], channels, axis=0)
    else:
        raw = np.moveaxis(raw, -1, 0)
        raw = np.repeat(raw, channels, axis=0) if raw.shape[0] == 1 else raw[:channels]
    return np.ascontiguousarray(raw[None])


def readme(bundle, spec, meta: dict, credits: list[dict], license: str) -> str:
    d = bundle.describe()
    lines = [f"# {model_name(bundle)} (morphoscope {d['task']} model)", "", d["description"] or "", "",
             "## Inputs and outputs", "", spec.doc, "",
             "Preprocessing (declared in the package, as morphoscope does it): each image is scaled so that "
             f"its {bundle.normalize.get('low', 1.0)}th..{bundle.normalize.get('high', 99.8)}th percentiles (over "
             "all channels and pixels) map to 0..1, then clipped to -1..3.", "",
             "## Training", "", f"Trained on: {d['trained_on'] or 'not recorded'}.", ""]
    metrics = {k: v for k, v in bundle.metrics.items() if isinstance(v, (int, float))}
    if metrics:
        lines += ["Validation metrics recorded in the checkpoint:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in metrics.items()] + [""]
    lines += ["## Weights", "",
              "`pytorch_state_dict` (original; its architecture is built by morphoscope: "
              "`pip install morphoscope`), `torchscript` and `onnx` (converted; need only PyTorch or ONNX "
              "Runtime). Exported by " + meta["exported_by"] + " with `morphoscope export MODEL --format "
              "bioimageio`.", "", "## Licence and credits", "", f"Model: {license}."]
    for c in credits:
        lines += [f"Training data: {c['name']} ({c['url']}). Please cite:", ""]
        lines += [f"- {text} doi:{doi}" for text, doi in c["cite"]] + [""]
    return "\n".join(lines) + "\n"


def describe(bundle, spec, ex, root: Path, files: dict, *, opset: int, authors, license: str):
    """The bioimage.io model description (format 0.5) of files written under ``root``."""
    from bioimageio.spec.model import v0_5 as bio

    channels = ex.input.shape[1]
    low, high = float(bundle.normalize.get("low", 1.0)), float(bundle.normalize.get("high", 99.8))
    in_names = ["grey"] if channels == 1 else [f"channel{i}" for i in range(channels)]
    space_in = [bio.SpaceInputAxis(id=bio.AxisId(a), size=bio.ParameterizedSize(min=spec.min_side, step=spec.step))
                for a in ("y", "x")]
    inp = bio.InputTensorDescr(
        id=bio.TensorId(INPUT_ID), description="the image (any intensity range; normalised by the preprocessing)",
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=in_names), *space_in],
        test_tensor=bio.FileDescr(source=files["test_input"]),
        data=bio.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(axes=[bio.AxisId("channel"), bio.AxisId("y"), bio.AxisId("x")],
                                                            min_percentile=low, max_percentile=high, eps=1e-6)),
            bio.ClipDescr(kwargs=bio.ClipKwargs(min=-1.0, max=3.0)),
        ])
    space_out = [bio.SpaceOutputAxis(id=bio.AxisId(a), size=bio.SizeReference(tensor_id=bio.TensorId(INPUT_ID),
                                                                              axis_id=bio.AxisId(a)))
                 for a in ("y", "x")]
    out = bio.OutputTensorDescr(
        id=bio.TensorId(spec.outputs[0]), description="per-pixel maps: " + ", ".join(spec.channels),
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[_identifier(c) for c in spec.channels]), *space_out],
        test_tensor=bio.FileDescr(source=files["test_output"]),
        # probabilities are 0..1; a size head's log2 diameter ratio is not
        data=bio.IntervalOrRatioDataDescr(type="float32", range=(None, None) if "size" in spec.channels else (0.0, 1.0)))
    torch_version = bio.Version(torch.__version__.split("+")[0])
    ckpt = {"task": bundle.task.name, "config": _portable(bundle.config), "class_names": list(bundle.class_names),
            "normalize": dict(bundle.normalize), "extra": dict(bundle.extra)}
    weights = bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=files["state_dict"], pytorch_version=torch_version,
            architecture=bio.ArchitectureFromLibraryDescr(import_from="morphoscope.export.common",
                                                          callable=bio.Identifier("exported_network"),
                                                          kwargs=json.loads(json.dumps(ckpt)))),
        torchscript=bio.TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=torch_version,
                                                parent="pytorch_state_dict"),
        onnx=bio.OnnxWeightsDescr(source=files["onnx"], opset_version=opset, parent="pytorch_state_dict"))
    credits = data_credits(bundle)
    cite = [bio.CiteEntry(text=text, doi=bio.Doi(doi)) for c in credits for text, doi in c["cite"]]
    d = bundle.describe()
    tags = ["morphoscope", bundle.task.name, "segmentation", "2d", "pytorch", "onnx", "torchscript",
            *[_identifier(c).lower() for c in bundle.class_names]]
    return bio.ModelDescr(
        name=model_name(bundle)[:128],
        description=(d["description"] or f"morphoscope {bundle.task.name} model")[:1024],
        authors=[bio.Author(name=a) for a in (authors or bundle.card.get("authors") or ["morphoscope developers"])],
        cite=cite,
        license=bio.LicenseId(license),
        documentation=bio.FileDescr(source=files["readme"]),
        covers=files["covers"],
        tags=tags,
        inputs=[inp], outputs=[out], weights=weights,
        config=bio.Config(bioimageio=bio.BioimageioConfig(
            architecture_type=_identifier(d["backbone"] or bundle.task.name)[:32],
            architecture_description=spec.doc[:1000],
            training=bio.TrainingDetails(training_epochs=bundle.config.get("train", {}).get("epochs")),
        )),
    )


def write_files(bundle, spec, ex, root: Path, *, opset: int, license: str) -> dict:
    """Weights (three formats), test tensors, cover and README under ``root``."""
    from morphoscope.export import onnx as onnx_export
    from morphoscope.export import torchscript

    meta = card(bundle, spec)
    files = {"state_dict": root / "weights_state_dict.pt", "torchscript": root / "weights_torchscript.pt",
             "onnx": root / "weights.onnx", "test_input": root / "test_input.npy",
             "test_output": root / "test_output.npy", "readme": root / "README.md"}
    torch.save(spec.module.state_dict(), files["state_dict"])
    torchscript.save(torchscript.script(spec), files["torchscript"], meta)
    onnx_export.write(spec, ex.input, files["onnx"], meta, opset=opset)
    np.save(files["test_input"], raw_input(ex, ex.input.shape[1]))
    np.save(files["test_output"], ex.reference[spec.outputs[0]].astype(np.float32))
    files["readme"].write_text(readme(bundle, spec, meta, data_credits(bundle), license))
    return files


def export_bioimageio(bundle, spec, ex, out: Path, *, check: bool = True, opset: int = 17, authors=None,
                      license: str = "CC-BY-4.0"):
    """Write the package ``out`` (a .zip) and check it (see the module's doc)."""
    from bioimageio.spec import ValidationContext, save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    from morphoscope.export import ExportResult
    from morphoscope.io.atomic import atomic_write

    if not spec.dense:
        raise ConfigError(f"bioimage.io packages describe per-pixel outputs; this {bundle.task.name} model's "
                          f"outputs ({', '.join(spec.outputs)}) are not: use --format onnx or torchscript")
    with tempfile.TemporaryDirectory(prefix="morphoscope-bioimageio-") as tmp:
        root = Path(tmp)
        files = write_files(bundle, spec, ex, root, opset=opset, license=license)
        with ValidationContext(root=root, perform_io_checks=True):
            rel = {k: v.name for k, v in files.items()}
            # covers are made by bioimageio.spec from the test tensors
            probe = describe(bundle, spec, ex, root, {**rel, "covers": []}, opset=opset, authors=authors,
                             license=license)
            covers = bio.generate_covers([(probe.inputs[0], np.load(files["test_input"]))],
                                         [(probe.outputs[0], np.load(files["test_output"]))])
            descr = describe(bundle, spec, ex, root, {**rel, "covers": covers}, opset=opset, authors=authors,
                             license=license)
        package = root / "package.zip"
        save_bioimageio_package(descr, output_path=package)
        with atomic_write(out) as fh, package.open("rb") as src:
            shutil.copyfileobj(src, fh)
    result = ExportResult("bioimageio", out, ex.name, runtime="bioimageio.core")
    if check:
        check_package(out, spec, ex, result)
    return result


def validate(path: Path):
    """The package's description, validated by bioimageio.spec (ConfigError when invalid)."""
    from bioimageio.spec import InvalidDescr, load_model_description

    descr = load_model_description(path, perform_io_checks=True)
    if isinstance(descr, InvalidDescr):
        errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in descr.validation_summary.details[-1].errors)
        raise ConfigError(f"bioimageio.spec finds the package invalid: {errors}", path=path)
    return descr


def check_package(path: Path, spec, ex, result) -> None:
    """Validate with bioimageio.spec; with bioimageio.core, run its test and every weight format on
    the test input and compare with PyTorch's output."""
    from morphoscope.extras import installed

    descr = validate(path)
    if not installed("bioimageio.core"):
        result.runtime = "bioimageio.spec"
        result.notes.append("bioimageio.core is not installed: the package was validated, not run")
        return
    from bioimageio.core import create_prediction_pipeline, predict, test_model

    summary = test_model(path)
    if summary.status != "passed":
        failed = [f"{d.name}: {'; '.join(str(e.msg) for e in d.errors)}" for d in summary.details if d.status == "failed"]
        raise ConfigError("bioimage.io's test of the package failed: " + " | ".join(failed), path=path)
    result.notes.append(f"bioimageio.core test_model: {summary.status}")
    name = spec.outputs[0]
    test_input = raw_input(ex, ex.input.shape[1])
    for wf in WEIGHT_FORMATS:
        pp = create_prediction_pipeline(descr, weight_format=wf)
        sample = predict(model=pp, inputs={INPUT_ID: test_input})
        got = sample.members[name].data.transpose("batch", "channel", "y", "x").values
        sub = type(result)(result.format, result.path, result.image)
        compare(sub, {name: ex.reference[name]}, {name: got})
        result.max_abs_diff[f"{name} ({wf})"] = sub.max_abs_diff[name]
        result.scaled_diff[f"{name} ({wf})"] = sub.scaled_diff[name]
