"""Fixtures of the web tests: one server state (a JobManager serving the shipped model, or a
tiny one-step model when the shipped one is absent) shared by the API and browser tests."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from web_testdata import TINY_CONFIG, samples, serve_in_thread, shipped_model_path, tiny_model


@pytest.fixture(scope="session")
def model_path(request, tmp_path_factory):
    """The shipped model when installed, else a tiny checkpoint (trained once, cached)."""
    shipped = shipped_model_path()
    if shipped is not None:
        return shipped
    key = hashlib.sha1(json.dumps(TINY_CONFIG, sort_keys=True).encode()).hexdigest()[:10]
    cache_plugin = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    name = f"morphoscope-web-tiny-model-{key}"
    cache = cache_plugin.mkdir(name) if cache_plugin is not None else tmp_path_factory.mktemp(name)
    ckpt = cache / "model_best.pt"
    if ckpt.is_file():
        try:
            from morphoscope.models.checkpoint import read_checkpoint

            read_checkpoint(ckpt)
            return ckpt
        except Exception:
            pass
    run = tiny_model(tmp_path_factory.mktemp("tiny_model") / "run")
    shutil.copyfile(run, ckpt)
    return ckpt


@pytest.fixture(scope="session")
def sample_paths():
    paths = samples()
    if not paths:
        pytest.skip("the bundled sample images (src/morphoscope/samples) are missing")
    return paths


@pytest.fixture(scope="session")
def manager(model_path, tmp_path_factory):
    from morphoscope.web.jobs import JobManager, ServerConfig

    spec = "nuclei-maskrcnn" if model_path == shipped_model_path() else str(model_path)
    config = ServerConfig(models=[spec], device="cpu", max_upload_mb=4, max_pixels=1_200_000,
                          max_queue=4, keep_minutes=30, tmp_dir=tmp_path_factory.mktemp("serve"),
                          sync_wait_s=240)
    m = JobManager(config)
    yield m
    m.close()


@pytest.fixture(scope="session")
def client(manager):
    from fastapi.testclient import TestClient

    from morphoscope.web.app import create_app

    with TestClient(create_app(manager=manager)) as c:
        yield c


@pytest.fixture(scope="session")
def predicted(client, sample_paths):
    """One sample predicted synchronously through POST /api/predict: its job status."""
    path = sample_paths[0]
    r = client.post("/api/predict", files={"files": (path.name, path.read_bytes(), "image/tiff")},
                    data={"score_threshold": "0.5"})
    assert r.status_code == 200, r.text
    return r.json()



@pytest.fixture(scope="session")
def live_url(manager):
    """The app served by uvicorn on 127.0.0.1 (a free port), sharing the tests' JobManager."""
    from morphoscope.web.app import create_app

    url, _, stop = serve_in_thread(create_app(manager=manager, trusted_hosts=["127.0.0.1", "localhost"]))
    yield url
    stop()
