"""Schemathesis against a live ``morphoscope serve`` app: generated requests (valid and invalid)
to every documented operation, each answer checked against the OpenAPI document. Two runs: one
fuzzing every parameter, one with the ids bound to a finished job and an upload of the same
session, so that the real outputs (TIFF, PNG, CSV, ZIP, report, tables) are checked too.

Asserts: no answer >= 500 and no answer that the schema does not allow (status code, content type,
body, headers). Bounded by --max-examples (well under two minutes on two CPU cores)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from web_testdata import instance_result, serve_in_thread, tiff_bytes

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")
SESSION = "schemathesis-session-0123456789"


def _schemathesis() -> str:
    exe = Path(sys.executable).with_name("schemathesis")
    found = str(exe) if exe.is_file() else shutil.which("schemathesis")
    if not found:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    """A server without models (nothing slow can start) holding one finished job and its upload
    for the session SESSION."""
    from morphoscope.web.app import create_app
    from morphoscope.web.jobs import JobManager, ModelCatalog, ServerConfig

    class NoModels(ModelCatalog):
        def __init__(self):
            self.entries, self._bundles, self.device, self.keep_loaded = {}, {}, "cpu", 0

    m = JobManager(ServerConfig(tmp_dir=tmp_path_factory.mktemp("fuzz"), max_upload_mb=2, keep_minutes=30),
                   catalog=NoModels())
    rng = np.random.default_rng(0)
    up = m.add_upload("細胞_DAPI.tif", tiff_bytes(rng.integers(0, 4000, (64, 64)).astype(np.uint16)), owner=SESSION)
    job = m.add_result_job([instance_result("細胞_DAPI", upload_id=up.id)], owner=SESSION)
    url, _, stop = serve_in_thread(create_app(manager=m, trusted_hosts=["127.0.0.1", "localhost"]))
    yield url, job.id, up.id
    stop()
    m.close()


def _run(url: str, out: Path, *extra: str, config: Path | None = None) -> dict:
    report = out / "report.json"
    cmd = [_schemathesis(), *(["--config-file", str(config)] if config else []), "run", f"{url}/openapi.json", "--checks", CHECKS, "--seed", "7", "--workers", "1",
           "--request-timeout", "60", "--no-color", "--report", "json", "--report-json-path", str(report),
           "-H", f"X-Morphoscope-Session: {SESSION}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=out)
    summary = proc.stdout[proc.stdout.rfind("SUMMARY"):]
    print(summary)
    assert report.is_file(), proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads(report.read_text())
    data["output"] = proc.stdout
    return data


def _assert_clean(data: dict) -> None:
    cases = data["test_cases"]
    assert data["operations"]["tested"] == data["operations"]["selected"] > 0
    assert cases["generated"] > 0
    # failures are check results: server errors and schema violations
    assert not data["failures"], data["output"][-6000:]
    assert cases["with_failures"] == 0
    assert data["exit_code"] == 0 or not data["errors"], data["output"][-6000:]


def test_fuzzing_finds_no_server_error_and_no_schema_violation(fuzzed_server, tmp_path):
    url, _, _ = fuzzed_server
    data = _run(url, tmp_path, "--max-examples", "25")
    _assert_clean(data)
    assert data["operations"]["selected"] >= 30  # every documented operation was exercised


def test_real_outputs_match_the_schema(fuzzed_server, tmp_path):
    url, job_id, upload_id = fuzzed_server
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.job_id" = "{job_id}"\n"path.index" = 0\n'
                      f'"path.upload_id" = "{upload_id}"\n"query.jobs" = "{job_id}"\n')
    data = _run(url, tmp_path, "--max-examples", "12", "--exclude-method", "DELETE", config=config)
    _assert_clean(data)
