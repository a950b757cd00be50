"""Packaging: one version source, py.typed shipped, the core free of the optional packages, and a
command whose extra is missing stops with one line naming the extra."""

from __future__ import annotations

import tomllib

import pytest

from export_testdata import PROJECT, run_cli_without


def _pyproject() -> dict:
    return tomllib.loads((PROJECT / "pyproject.toml").read_text())


def test_one_version_source():
    import importlib.metadata

    import morphoscope

    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    attr = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "morphoscope.__version__"
    assert importlib.metadata.version("morphoscope") == morphoscope.__version__


def test_py_typed_is_shipped():
    import morphoscope

    from pathlib import Path

    assert (Path(morphoscope.__file__).parent / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["morphoscope"]


def test_optional_packages_are_not_in_the_core():
    from morphoscope.extras import EXTRAS

    project = _pyproject()["project"]
    core = " ".join(project["dependencies"]).lower()
    extras = project["optional-dependencies"]
    for heavy in ("pyarrow", "optuna", "fastapi", "uvicorn", "onnx", "bioimageio", "napari"):
        assert heavy not in core, heavy
    for name in EXTRAS:  # every extra the code asks for exists, and [all] holds it
        assert name in extras, name
        assert name in extras["all"][0], name
    assert "pyarrow" in " ".join(extras["parquet"]) and "optuna" in " ".join(extras["tune"])


@pytest.mark.parametrize("blocked,args,line", [
    (["fastapi", "uvicorn"], ["serve"], "morphoscope serve needs the web extra: pip install 'morphoscope[web]'"),
    (["optuna"], ["tune", "configs/bbbc039_fpn_r18.yaml"],
     "morphoscope tune needs the tune extra: pip install 'morphoscope[tune]'"),
    (["onnx", "onnxruntime"], ["export", "nuclei-maskrcnn", "--format", "onnx", "--out", "{tmp}/n.onnx"],
     "morphoscope export --format onnx needs the export extra: pip install 'morphoscope[export]'"),
    (["pyarrow"], ["measure", "{labels}", "--out", "{tmp}/t.parquet"],
     "a .parquet table needs the parquet extra: pip install 'morphoscope[parquet]'"),
])
def test_missing_extra_stops_with_one_line(blocked, args, line, tmp_path, samples_dir):
    labels = sorted((samples_dir / "labels").glob("*.png"))[0]
    args = [a.format(tmp=tmp_path, labels=labels) for a in args]
    r = run_cli_without(blocked, *args, cwd=PROJECT)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines() == [f"error: {line}"], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_works_without_any_extra():
    """The core CLI starts and lists every command with all optional packages missing."""
    from morphoscope.extras import EXTRAS

    blocked = sorted({m.split(".")[0] for mods in EXTRAS.values() for m in mods} | {"pyarrow"})
    r = run_cli_without(blocked, "--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("predict", "measure", "evaluate", "train", "serve", "tune", "export"):
        assert cmd in r.stdout
