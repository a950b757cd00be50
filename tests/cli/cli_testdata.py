"""Helpers of the command-line tests (a uniquely named module: conftest modules of several test
folders would shadow each other): running ``morphoscope`` in-process and as the real console
entry point, checking that an error is one line naming its file, tiny training configs and
output locations that refuse to be written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parents[1]
# the tiny configs live with the tests of each task
for _folder in ("foundation", "semantic", "classify"):
    if str(TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(TESTS / _folder))

from classify_testdata import folder_dataset  # noqa: E402
from foundation_testdata import tiny_instance_config  # noqa: E402
from semantic_testdata import tiny_config as tiny_semantic_config  # noqa: E402

#: one torch thread everywhere: the same numbers in-process and in subprocesses, and faster on
#: the shared test machine
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_cli(*args, env: dict | None = None):
    """``morphoscope ARGS`` in-process (typer's CliRunner): exit code, stdout and stderr as the
    console script gives them, since errors are turned into lines by the command group itself."""
    from typer.testing import CliRunner

    from morphoscope.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def run_entry_point(*args, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m morphoscope ARGS`` in a fresh process: the real entry point (main())."""
    return subprocess.run([sys.executable, "-m", "morphoscope", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **ONE_THREAD, **(env or {})})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(result, *names: str, status: int = 2) -> str:
    """The command failed with ``status``, printed no traceback and exactly one error line,
    which names every one of ``names`` (the file, the problem); returns that line."""
    stdout = result.stdout or ""
    stderr = result.stderr or ""
    assert "Traceback" not in stdout + stderr, stdout + stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert code == status, (code, stdout + stderr)
    return lines[0]


def assert_success(result) -> None:
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert code == 0, (result.stdout or "") + (result.stderr or "")
    assert "Traceback" not in (result.stdout or "") + (result.stderr or "")


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def tiny_config(task: str, root: Path, samples: Path, *, validate: bool, epochs: int = 1, **train) -> dict:
    """A config of ``task`` small enough to train in seconds on real images: the bundled BBBC039
    samples (instance, semantic; validated on the same images when ``validate``) or crops of them
    in class folders (classify, which always holds out part of its images for validation)."""
    if task == "instance":
        cfg = tiny_instance_config(samples, val=samples if validate else None, epochs=epochs, iters=2)
    elif task == "semantic":
        cfg = tiny_semantic_config(samples, samples if validate else None)
        cfg["train"].update(epochs=epochs)
    else:
        data = root / "classes"
        if not data.is_dir():
            folder_dataset(data, per_class=4, size=48)
        cfg = {"task": "classify", "name": "tiny",
               "data": {"train": str(data), "image_size": 32, "val_fraction": 0.25},
               "model": {"backbone": "resnet18", "head": "single_label", "pretrained": "none"},
               "train": {"epochs": epochs, "iters_per_epoch": 2, "batch_size": 2, "device": "cpu",
                         "threads": 1, "workers": 0}}
    cfg["train"].update(train)
    return cfg
