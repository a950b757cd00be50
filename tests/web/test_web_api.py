"""The HTTP API of ``morphoscope serve`` with the bundled sample images: every endpoint, every
output format, thresholds applied without the network, limits and error cases."""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from web_testdata import (BlockingInference, MapsInference, ScoresInference, decode_png, decode_tiff, made_up_bundle,
                          png_bytes, shipped_model_path, tiff_bytes, wait_done)

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# thresholds: the kept base labels give exactly what morphoscope predict writes at any score
# --------------------------------------------------------------------------------------------


def test_rethreshold_equals_to_labels():
    import pandas as pd

    from morphoscope.engine.objects import Objects
    from morphoscope.engine.result import ImageResult as EngineResult
    from morphoscope.engine.writer import label_arrays
    from morphoscope.web.jobs import measure_plane, result_of

    rng = np.random.default_rng(3)
    h, w, n = 60, 80, 40
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((n, h, w), bool)
    for i in range(n):  # overlapping discs
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 12)
        masks[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    masks[7] = masks[3]  # one detection fully covered by a higher-scoring one: in no label image
    scores = np.sort(rng.uniform(0.05, 1, n).astype(np.float32))[::-1].copy()
    scores[7] = scores[3]
    classes = rng.integers(1, 3, n)
    classes[7] = classes[3]  # covered by an object of its own class: hidden in every label image
    crops, origins = [], []
    for m in masks:  # each mask cut to its bounding box, as the engine keeps objects
        ys, xs = np.nonzero(m)
        crops.append(m[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        origins.append((ys.min(), xs.min()))
    found = EngineResult(name="t", shape=(h, w), class_names=["a", "b"],
                         objects=Objects((h, w), crops, np.asarray(origins), scores, classes),
                         threshold_kind="score", threshold=0.5)
    plane = rng.integers(0, 4000, (h, w)).astype(np.uint16)
    res = result_of(found, plane=plane)
    index_all = label_arrays(found.objects, by_class=True)[3]  # two classes: the writer's rule
    assert res.live_threshold and 3 in index_all and 7 not in index_all  # the covered one has no pixel left
    assert len(res.base().objects) == len(index_all) < n
    for t in (0.0, 0.05, float(scores[10]), 0.5, float(scores[30]) + 1e-7, 0.99, 1.0):
        # what morphoscope predict writes at t (engine/writer.py): objects_at(t), then label_arrays
        objs = found.objects_at(t)
        want, want_classes, want_scores, index = label_arrays(objs, by_class=True)
        got = res.labelled(t)
        assert np.array_equal(got.labels, want), t
        assert np.array_equal(got.classes, want_classes) and np.array_equal(got.scores, want_scores), t
        kept = objs.select(index)  # the objects predictions.json encodes, whole masks with overlaps
        assert [got.objects.rle(i) for i in range(len(kept))] == [kept.rle(i) for i in range(len(kept))], t
        # the base table filtered and renumbered = the table measured at t (to float rounding:
        # a perimeter's sum may run in another order)
        table = res.measurements_at(t)
        direct = measure_plane(got, plane, name="t", class_names=["a", "b"], pixel_size=None)
        pd.testing.assert_frame_equal(table, direct, check_exact=False, rtol=0, atol=1e-9)
        # two classes: each object measured whole on its class's plane, not as the flat image shows it
        from morphoscope.engine.writer import labels_by_class

        by_class = labels_by_class(kept, 2)
        areas = np.bincount(by_class.ravel(), minlength=len(kept) + 1)[1:]
        assert np.array_equal(table["area_px2"].to_numpy(), areas[areas > 0])


# --------------------------------------------------------------------------------------------
# server, models, examples
# --------------------------------------------------------------------------------------------


def test_server_info_and_committed_openapi(client):
    info = client.get("/api").json()
    assert info["name"] == "morphoscope" and info["limits"]["max_upload_mb"] == 4
    assert info["token_required"] is False
    spec = client.get("/openapi.json").json()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert spec == committed, "docs/openapi.json is stale: morphoscope serve --write-openapi docs/openapi.json"
    assert client.get("/api/openapi.json").json() == spec  # the old address still answers
    # Swagger UI ("try it out"), served from this server: no CDN
    docs = client.get("/docs")
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text and "/openapi.json" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text
    for asset in ("/docs-static/swagger-ui-bundle.js", "/docs-static/swagger-ui.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 10_000, asset
    moved = client.get("/api/docs", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == "/docs"
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for asset in ("app.js", "style.css"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text


def test_models(client, model_path):
    cards = client.get("/api/models").json()
    assert len(cards) >= 1 and cards[0]["default"]
    card = cards[0]
    assert card["task"] == "instance" and card["classes"] == ["nucleus"] and card["file"] == model_path.name
    assert "path" not in card and str(model_path.parent) not in json.dumps(cards)  # no server folder
    assert len(card["description"]) > 20  # says what the model is for, never empty
    assert client.get(f"/api/models/{card['id']}").json() == card
    r = client.get("/api/models/no-such-model")
    assert r.status_code == 404 and "unknown model" in r.json()["detail"]
    defs = {d["name"]: d for d in client.get("/api/measurements/definitions").json()}
    assert "4πA" in defs["circularity"]["formula"] and defs["area"]["kind"] == "area"


def test_examples(client, sample_paths):
    ex = client.get("/api/examples").json()
    assert {e["file"] for e in ex} >= {p.name for p in sample_paths}
    e = ex[0]
    assert (e["height"], e["width"], e["dtype"]) == (520, 696, "uint16")
    assert decode_png(client.get(e["preview_url"]).content).shape[2] == 3
    original = client.get(e["image_url"]).content
    assert decode_tiff(original).shape == (520, 696)
    up = client.post(f"/api/examples/{e['name']}")
    assert up.status_code == 201 and up.json()["example"] == e["name"] and up.json()["pages"] == 1
    assert client.post("/api/examples/nope").status_code == 404


# --------------------------------------------------------------------------------------------
# uploads: formats and refusals
# --------------------------------------------------------------------------------------------


def test_upload_formats(client, sample_paths):
    from morphoscope.io.images import read_image

    img16 = read_image(sample_paths[1])
    img8 = (img16 / max(1, img16.max()) * 255).astype(np.uint8)
    rgb = np.stack([img8, img8 // 2, img8], axis=-1)
    stack = np.stack([img16[:200, :300], img16[100:300, 100:400], img16[200:400, 200:500]])
    files = [("a16.tif", sample_paths[1].read_bytes()), ("b8.tif", tiff_bytes(img8)),
             ("c.png", png_bytes(img8)), ("d.jpg", png_bytes(rgb, "JPEG")), ("stack.tiff", tiff_bytes(stack, photometric="minisblack"))]
    r = client.post("/api/uploads", files=[("files", (n, d)) for n, d in files])
    assert r.status_code == 201, r.text
    info = {u["name"]: u for u in r.json()}
    assert info["a16.tif"]["dtype"] == "uint16" and info["b8.tif"]["dtype"] == "uint8"
    assert info["d.jpg"]["channels"] == 3 and info["c.png"]["channels"] == 1
    st = info["stack.tiff"]
    assert (st["pages"], st["height"], st["width"]) == (3, 200, 300)
    assert decode_png(client.get(f"{st['preview_url']}?slice=2").content).shape == (200, 300, 3)
    out_of_range = client.get(f"{st['preview_url']}?slice=3")
    assert out_of_range.status_code == 422 and out_of_range.json()["detail"][0]["loc"] == ["query", "slice"]
    assert client.get(f"/api/uploads/{st['upload_id']}").json() == st
    bad = client.post("/api/jobs", json={"inputs": [{"upload_id": st["upload_id"], "slice": 5}]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "inputs", 0, "slice"] and "slice 5" in bad.json()["detail"][0]["msg"]
    assert client.delete(f"/api/uploads/{st['upload_id']}").status_code == 204
    assert client.get(f"/api/uploads/{st['upload_id']}").status_code == 404


def test_upload_errors(client, manager):
    # 422 as FastAPI documents it: a list of errors, each with where and what
    for data in (b"II*\x00 not really a tiff", b"MM\x00*" + bytes(100), b"\x89PNG\r\n\x1a\n broken"):
        r = client.post("/api/uploads", files={"files": ("broken.tif", data)})
        assert r.status_code == 422, r.text
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "files", 0] and error["msg"].startswith("broken.tif: ") and error["type"]
    r = client.post("/api/uploads", files={"files": ("notes.txt", b"hello")})
    assert r.status_code == 422 and "not an image" in r.json()["detail"][0]["msg"]
    # all or nothing: a good file uploaded with a bad one is not kept
    n_before = len(manager.uploads)
    r = client.post("/api/uploads", files=[("files", ("ok.png", png_bytes(np.zeros((8, 8), np.uint8)))),
                                           ("files", ("bad.png", b"\x89PNG broken"))])
    assert r.status_code == 422 and len(manager.uploads) == n_before
    # larger than --max-upload-mb (4): refused from the declared length before reading the body,
    # or while storing it when the length is within the slack for the multipart envelope
    for size in (6 << 20, int(4.5 * (1 << 20))):
        r = client.post("/api/uploads", files={"files": ("big.tif", b"\0" * size)})
        assert r.status_code == 413 and "up to 4 MB" in r.json()["detail"], size
    # more pixels than --max-pixels (1.2 Mpx), though a small file
    r = client.post("/api/uploads", files={"files": ("wide.png", png_bytes(np.zeros((1000, 1300), np.uint8)))})
    assert r.status_code == 413 and "megapixels" in r.json()["detail"] and "wide.png" in r.json()["detail"]
    r = client.post("/api/jobs", json={"inputs": [{"upload_id": "0000"}]})
    assert r.status_code == 404 and "unknown upload" in r.json()["detail"]
    r = client.post("/api/jobs", json={"inputs": []})
    assert r.status_code == 422


# --------------------------------------------------------------------------------------------
# jobs and outputs
# --------------------------------------------------------------------------------------------


def test_predict_sync_and_every_output(client, predicted):
    st = predicted
    assert st["status"] == "done" and st["progress"] == 1.0 and st["error"] is None
    im = st["images"][0]
    assert (im["height"], im["width"]) == (520, 696) and im["task"] == "instance"
    assert (im["kind"], im["threshold_kind"]) == (st["kind"], st["threshold_kind"]) == ("objects", "score")
    out = im["outputs"]
    n_all = im["n_detections"]

    # the raw label image of every detection, and every detection's row
    r = client.get(out["labels_bin"])
    assert r.headers["content-encoding"] == "gzip" and r.headers["x-dtype"] in ("uint16", "uint32")
    base = np.frombuffer(r.content, dtype="<u2" if r.headers["x-dtype"] == "uint16" else "<u4").reshape(520, 696)
    objs = client.get(out["objects"]).json()
    assert len(objs["rows"]) == n_all and objs["kind"] == "objects" and objs["threshold_kind"] == "score"
    col = {c: i for i, c in enumerate(objs["columns"])}
    scores = np.zeros(n_all + 1, np.float32)
    for row in objs["rows"]:
        scores[row[col["label"]]] = row[col["score"]]
    assert set(np.unique(base)) <= set(range(n_all + 1))
    assert np.all(np.diff(scores[1:]) <= 0)

    for t in (0.0, 0.3, 0.5, 0.8):
        # label TIFF at t = the base labels with objects below t removed, renumbered in order
        labels = decode_tiff(client.get(f"{out['labels_tif']}?threshold={t}").content)
        keep = scores >= np.float32(t)
        keep[0] = False
        lut = np.zeros(n_all + 1, np.int64)
        lut[keep] = np.arange(1, keep.sum() + 1)
        assert np.array_equal(labels, lut[base]), t
        n = int(labels.max())
        mask = decode_png(client.get(f"{out['masks']['nucleus']}?threshold={t}").content)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask > 0, labels > 0)
        table = client.get(f"{out['measurements_csv']}?threshold={t}").text.splitlines()
        assert len(table) == n + 1 and table[0].startswith("image,label,class,score")
        counts = client.get(f"/api/jobs/{st['job_id']}/measurements?threshold={t}").json()
        assert len(counts["rows"]) == n

    assert client.get(out["masks"]["nucleus"].replace("/1.png", "/nucleus.png")).status_code == 200
    assert client.get(out["masks"]["nucleus"].replace("/1.png", "/7.png")).status_code == 404
    overlay = decode_png(client.get(f"{out['overlay_png']}?threshold=0&style=both").content)
    assert overlay.shape == (520, 696, 3)
    assert decode_png(client.get(out["image"]).content).shape == (520, 696, 3)
    assert client.get(f"{out['labels_tif']}?threshold=1.5").status_code == 422

    dl = st["downloads"]
    coco = client.get(f"{dl['predictions_json']}?threshold=0").json()
    assert len(coco["annotations"]) == int(decode_tiff(client.get(f"{out['labels_tif']}?threshold=0").content).max())
    assert coco["categories"] == [{"id": 1, "name": "nucleus"}]
    if coco["annotations"]:
        from pycocotools import mask as mask_utils

        a = coco["annotations"][0]
        assert mask_utils.decode(a["segmentation"]).shape == (520, 696) and "score" in a
    report = client.get(dl["report_html"])
    assert report.status_code == 200 and "<html" in report.text.lower() and "<img" in report.text.lower()
    z = zipfile.ZipFile(io.BytesIO(client.get(dl["outputs_zip"]).content))
    name = im["name"]
    names = {Path(n).name for n in z.namelist()}
    assert {f"{name}_labels.tif", f"{name}_overlay.png", f"{name}_nucleus.png", "predictions.json",
            "measurements.csv", "report.html"} <= names
    csv = client.get(dl["measurements_csv"])
    assert csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]


def test_cli_python_and_web_give_identical_outputs(client, predicted, sample_paths, model_path, tmp_path):
    """One bundled image through ``morphoscope predict``, ``morphoscope.prediction.predict.predict``
    and the web API (the ``predicted`` job: POST /api/predict at the model's default threshold):
    the same label image, measurement table and COCO annotations."""
    import pandas as pd
    import tifffile
    from typer.testing import CliRunner

    from morphoscope.cli import app
    from morphoscope.prediction.predict import predict

    path = sample_paths[0]
    spec = "nuclei-maskrcnn" if model_path == shipped_model_path() else str(model_path)
    res = CliRunner().invoke(app, ["predict", str(path), "--out", str(tmp_path / "cli"), "--model", spec,
                                   "--device", "cpu", "--measure"])
    assert res.exit_code == 0, res.output
    predict([path], tmp_path / "python", model=spec, device="cpu", measure=True, progress=False)

    im = predicted["images"][0]
    out = im["outputs"]
    assert im["name"] == path.stem
    web = {"labels": decode_tiff(client.get(out["labels_tif"]).content),
           "table": pd.read_csv(io.StringIO(client.get(out["measurements_csv"]).text), dtype={"image": str, "class": str}),
           "coco": client.get(predicted["downloads"]["predictions_json"]).json(),
           "overlay": decode_png(client.get(out["overlay_png"]).content),
           "mask": decode_png(client.get(out["masks"]["nucleus"]).content)}
    for way in ("cli", "python"):
        folder = tmp_path / way
        labels = tifffile.imread(folder / f"{path.stem}_labels.tif")
        assert labels.dtype == web["labels"].dtype and np.array_equal(labels, web["labels"]), way
        assert np.array_equal(decode_png((folder / f"{path.stem}_overlay.png").read_bytes()), web["overlay"]), way
        assert np.array_equal(decode_png((folder / f"{path.stem}_nucleus.png").read_bytes()), web["mask"]), way
        table = pd.read_csv(folder / "measurements.csv", dtype={"image": str, "class": str})
        assert list(table.columns) == list(web["table"].columns), way
        assert len(table) == len(web["table"]) == int(labels.max()), way
        for col in table.columns:
            mine, theirs = table[col].to_numpy(), web["table"][col].to_numpy()
            if np.issubdtype(mine.dtype, np.number):
                np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-9, err_msg=f"{way}: {col}")
            else:
                assert list(theirs) == list(mine), (way, col)
        coco = json.loads((folder / "predictions.json").read_text())
        assert coco["images"] == web["coco"]["images"], way
        assert [a["segmentation"]["counts"] for a in coco["annotations"]] == [
            a["segmentation"]["counts"] for a in web["coco"]["annotations"]], way
        assert coco["annotations"] == web["coco"]["annotations"], way
    if spec == "nuclei-maskrcnn":  # the shipped model finds the nuclei (a tiny stand-in model may find none)
        assert len(web["coco"]["annotations"]) == int(web["labels"].max()) > 50


def test_job_flow_polling_and_several_jobs(client, predicted, sample_paths):
    from morphoscope.io.images import read_image

    crop = read_image(sample_paths[2])[:160, :200]
    up = client.post("/api/uploads", files={"files": ("crop.tif", tiff_bytes(crop))}).json()[0]
    r = client.post("/api/jobs", json={"inputs": [{"upload_id": up["upload_id"]}], "score_threshold": 0.2,
                                       "pixel_size": 0.5})
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running", "done")
    st = wait_done(client, r.json()["job_id"])
    assert st["status"] == "done" and st["score_threshold"] == 0.2
    assert st["images"][0]["pixel_size_um"] == 0.5
    table = client.get(f"/api/jobs/{st['job_id']}/measurements").json()
    assert "area_um2" in table["columns"] and "area_px2" not in table["columns"]
    px = client.get(f"/api/jobs/{st['job_id']}/measurements?pixel_size=2").json()
    assert "area_um2" in px["columns"]
    assert any(j["job_id"] == st["job_id"] for j in client.get("/api/jobs").json())
    # two jobs' outputs together
    both = f"{predicted['job_id']},{st['job_id']}"
    csv = client.get(f"/api/results/measurements?format=csv&jobs={both}&threshold=0").text.splitlines()
    images = {line.split(",")[0] for line in csv[1:]}
    assert images <= {predicted["images"][0]["name"], "crop"}
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/results/outputs.zip?jobs={both}&threshold=0.5&report=false").content))
    assert any(n.endswith("crop_labels.tif") for n in z.namelist())
    assert not any(n.endswith("report.html") for n in z.namelist())
    assert client.get(f"/api/results/predictions.json?jobs={both}").status_code == 200
    report = client.get(f"/api/results/report.html?jobs={predicted['job_id']}")  # kept from the first
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert client.get("/api/results/measurements?jobs=nope").status_code == 404
    # unknown ids
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get(f"/api/jobs/{st['job_id']}/images/3/labels.tif").status_code == 404
    r = client.post("/api/jobs", json={"inputs": [{"upload_id": up["upload_id"]}], "model": "nope"})
    assert r.status_code == 404 and "unknown model" in r.json()["detail"]
    r = client.post("/api/predict", files={"files": ("x.tif", tiff_bytes(crop))}, data={"model": "nope"})
    assert r.status_code == 404
    assert client.delete(f"/api/jobs/{st['job_id']}").status_code == 204
    assert client.get(f"/api/jobs/{st['job_id']}").status_code == 404


# --------------------------------------------------------------------------------------------
# a failing model, a full queue, cleanup
# --------------------------------------------------------------------------------------------


class _FakeCatalog:
    """A catalog of one model, ``bundle``; with ``failing`` its loading waits for ``gate`` and then
    fails. The card says what the model's results hold, as ModelCatalog's cards do."""

    def __init__(self, bundle, failing: bool = False, gate=None):
        self.bundle, self.failing, self.gate = bundle, failing, gate
        self.entries = {}
        self.offer(bundle)

    def offer(self, bundle):
        inference = bundle.task.inference(bundle)
        self.bundle = bundle
        self.entries = {"fake": {"id": "fake", "name": "fake", "task": bundle.task.name,
                                 "kind": bundle.task.result_kind, "threshold_kind": inference.threshold_kind,
                                 "threshold": inference.threshold, "classes": list(bundle.class_names),
                                 "metrics": {}, "backbone": None, "architecture": None, "file": "fake.pt",
                                 "source": "file", "description": "a stand-in", "trained_on": None,
                                 "validated_on": None, "default": True}}

    default_id = "fake"

    def cards(self):
        return list(self.entries.values())

    def card(self, model_id):
        from morphoscope.web.jobs import ModelCatalog

        return ModelCatalog.card(self, model_id)

    def load(self, model_id):
        if self.failing:
            self.gate.wait(30)
            raise RuntimeError("boom")
        return self.bundle


def _fake_app(tmp_path, bundle, failing=False, gate=None, **kw):
    from fastapi.testclient import TestClient

    from morphoscope.web.app import create_app
    from morphoscope.web.jobs import JobManager, ServerConfig

    m = JobManager(ServerConfig(tmp_dir=tmp_path, **kw), catalog=_FakeCatalog(bundle, failing, gate))
    return m, TestClient(create_app(manager=m))


def test_model_failure_and_full_queue(tmp_path):
    gate = threading.Event()
    m, c = _fake_app(tmp_path, made_up_bundle(BlockingInference, ["nucleus"], gate=gate), failing=True, gate=gate,
                     max_queue=2, workers=1)
    try:
        up = c.post("/api/uploads", files={"files": ("a.png", png_bytes(np.full((32, 32), 9, np.uint8)))}).json()[0]
        body = {"inputs": [{"upload_id": up["upload_id"]}]}
        first = c.post("/api/jobs", json=body).json()
        second = c.post("/api/jobs", json=body).json()
        r = c.post("/api/jobs", json=body)  # a full queue: try again later (429, never a 5xx)
        assert r.status_code == 429 and "busy" in r.json()["detail"] and r.headers["retry-after"]
        assert c.get(f"/api/jobs/{second['job_id']}").json()["queue_position"] == 1
        n_uploads = len(m.uploads)
        r = c.post("/api/predict", files={"files": ("b.png", png_bytes(np.ones((8, 8), np.uint8)))})
        assert r.status_code == 429 and len(m.uploads) == n_uploads  # its upload is not kept
        gate.set()
        st = wait_done(c, first["job_id"], 30)
        assert st["status"] == "failed" and "model failed" in st["error"] and "boom" in st["error"]
        assert c.get(f"/api/jobs/{first['job_id']}/images/0/labels.tif").status_code == 409
        wait_done(c, second["job_id"], 30)
        # the server still answers; a synchronous predict answers the ended job, failure and why
        r = c.post("/api/predict", files={"files": ("c.png", png_bytes(np.ones((8, 8), np.uint8)))})
        assert r.status_code == 200 and r.json()["status"] == "failed" and "boom" in r.json()["error"]
        assert c.get("/api").status_code == 200
    finally:
        gate.set()
        m.close()


def test_cleanup_and_close(tmp_path):
    gate = threading.Event()
    gate.set()
    m, c = _fake_app(tmp_path, made_up_bundle(BlockingInference, ["nucleus"], gate=gate), keep_minutes=1)
    up = c.post("/api/uploads", files={"files": ("a.png", png_bytes(np.full((16, 16), 3, np.uint8)))}).json()[0]
    job = c.post("/api/jobs", json={"inputs": [{"upload_id": up["upload_id"]}]}).json()
    st = wait_done(c, job["job_id"], 30)
    assert st["status"] == "failed" and "boom" in st["error"]  # the model's own failure, through the engine
    folder = m.uploads[up["upload_id"]].path.parent
    assert folder.is_dir() and m.root.parent == tmp_path
    assert m.cleanup() == {"jobs": [], "uploads": []}  # just used: kept
    gone = m.cleanup(now=time.time() + 61)
    assert gone == {"jobs": [job["job_id"]], "uploads": [up["upload_id"]]}
    assert not folder.exists()
    assert c.get(f"/api/jobs/{job['job_id']}").status_code == 404
    assert c.get(f"/api/uploads/{up['upload_id']}").status_code == 404
    m.close()
    assert not m.root.exists()


# --------------------------------------------------------------------------------------------
# what a result holds decides which outputs exist: tasks the web app has never heard of
# --------------------------------------------------------------------------------------------


def test_probability_and_class_results_of_unknown_tasks(tmp_path):
    gate = threading.Event()
    gate.set()
    maps = made_up_bundle(MapsInference, ["cell", "debris"])
    scores = made_up_bundle(ScoresInference, ["mito", "nucleolus"])
    m, c = _fake_app(tmp_path, maps)
    try:
        up = c.post("/api/uploads", files={"files": ("s.png", png_bytes(np.full((32, 32), 5, np.uint8)))}).json()[0]
        for bundle in (maps, scores):
            m.catalog.offer(bundle)
            assert bundle.task.name not in ("instance", "semantic", "classify")
            card = c.get("/api/models/fake").json()
            job = c.post("/api/jobs", json={"inputs": [{"upload_id": up["upload_id"]}]}).json()
            st = wait_done(c, job["job_id"], 30)
            assert st["status"] == "done", st["error"]
            assert st["score_threshold"] == 0.5  # the model's own default
            im = st["images"][0]
            out = im["outputs"]
            assert im["task"] == st["task"] == card["task"] == bundle.task.name
            assert (im["kind"], im["threshold_kind"]) == (st["kind"], st["threshold_kind"]) == (
                card["kind"], card["threshold_kind"])
            if bundle is maps:
                assert (im["kind"], im["threshold_kind"]) == ("objects", "probability")
                assert im["warnings"] == ["made up: these probabilities are the same for every image"]
                assert set(out) >= {"labels_tif", "masks", "labels_bin", "overlay_png", "objects"}
                assert im["counts"] == {"cell": 1, "debris": 1} and im.get("n_detections") is None
                # the probability threshold re-makes the objects from the kept maps, without the model
                lab = decode_tiff(c.get(f"{out['labels_tif']}?threshold=0.7").content)
                assert set(np.unique(lab)) == {0, 1} and (lab == 1).sum() == 64
                assert decode_png(c.get(f"{out['masks']['debris']}?threshold=0.5").content).sum() == 64 * 255
                assert decode_png(c.get(f"{out['masks']['debris']}?threshold=0.7").content).sum() == 0
                r = c.get(f"{out['labels_bin']}?threshold=0.5")
                assert np.frombuffer(r.content, "<" + {"uint16": "u2", "uint32": "u4"}[r.headers["x-dtype"]]).max() == 2
                objs = c.get(f"{out['objects']}?threshold=0.7").json()
                assert len(objs["rows"]) == 1 and objs["rows"][0][objs["columns"].index("class")] == "cell"
                assert objs["threshold_kind"] == "probability"
                coco = c.get(f"{st['downloads']['predictions_json']}?threshold=0.5").json()
                assert [a["category_id"] for a in coco["annotations"]] == [1, 2]
                assert [a["area"] for a in coco["annotations"]] == [64.0, 64.0]
                assert coco["info"]["threshold_kind"] == "probability" and coco["info"]["score_threshold"] is None
            else:
                assert (im["kind"], im["threshold_kind"]) == ("classes", None)
                assert "labels_tif" not in out and "masks" not in out and "predictions_json" not in st["downloads"]
                assert im["predicted_class"] == "mito" and im["predicted"] == ["mito"]
                assert im["probabilities"] == {"mito": 0.8, "nucleolus": 0.3}
                assert c.get(f"/api/jobs/{job['job_id']}/images/0/labels.bin").status_code == 409
                assert c.get(f"/api/jobs/{job['job_id']}/images/0/labels.tif").status_code == 409
                assert c.get(f"/api/jobs/{job['job_id']}/images/0/masks/1.png").status_code == 409
                assert c.get(f"/api/jobs/{job['job_id']}/predictions.json").status_code == 409
                table = c.get(f"/api/jobs/{job['job_id']}/measurements").json()
                assert table["columns"][:3] == ["image", "class", "probability"] and table["kind"] == "classes"
            assert "<html" in c.get(st["downloads"]["report_html"]).text.lower()
            names = zipfile.ZipFile(io.BytesIO(c.get(st["downloads"]["outputs_zip"]).content)).namelist()
            assert any(n.endswith("report.html") for n in names) and any(n.endswith("measurements.csv") for n in names)
            assert any(n.endswith("s_labels.tif") for n in names) == (bundle is maps)
    finally:
        m.close()


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def test_serve_command_defaults_and_openapi(tmp_path):
    import inspect

    from typer.testing import CliRunner

    from morphoscope.cli import app
    from morphoscope.cli.serve import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    res = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0
    for opt in ("--host", "--port", "--model", "--max-upload-mb", "--max-pixels", "--max-queue", "--keep-minutes",
                "--max-image-mb", "--quota-mb", "--max-total-mb", "--token", "--no-token"):
        assert opt in res.output
    assert "127.0.0.1" in res.output
    out = tmp_path / "openapi.json"
    res = CliRunner().invoke(app, ["serve", "--write-openapi", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == json.loads((ROOT / "docs" / "openapi.json").read_text())


def test_serve_makes_a_token_when_shared_on_the_network(monkeypatch):
    from typer.testing import CliRunner

    import morphoscope.cli.serve as serve_mod
    from morphoscope.cli import app

    seen = []
    monkeypatch.setattr(serve_mod, "serve", lambda **kw: seen.append(kw["token"]))
    for args in (["--host", "0.0.0.0"], ["--host", "0.0.0.0", "--no-token"], [], ["--token", "mine"],
                 ["--host", "192.168.1.20", "--token", "lab"]):
        res = CliRunner().invoke(app, ["serve", *args])
        assert res.exit_code == 0, res.output
    assert seen == ["auto", None, None, "mine", "lab"]
    res = CliRunner().invoke(app, ["serve", "--token", "x", "--no-token"])
    assert res.exit_code != 0


def test_loopback_server_refuses_other_host_names(manager):
    from fastapi.testclient import TestClient

    from morphoscope.web.app import create_app

    c = TestClient(create_app(manager=manager, trusted_hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1")
    assert c.get("/api").status_code == 200
    assert c.get("/api", headers={"host": "evil.example"}).status_code == 400


def test_labels_bin_is_gzip_of_base_labels(client, predicted, manager):
    job = manager.get_job(predicted["job_id"])
    r = client.get(predicted["images"][0]["outputs"]["labels_bin"])  # httpx decodes the gzip
    raw = r.content
    base = job.results[0].base().labels
    data, dtype = job.results[0].labels_gz()
    assert np.array_equal(np.frombuffer(gzip.decompress(data), dtype).reshape(base.shape), base)
    assert len(raw) == base.size * np.dtype(dtype).itemsize


def test_object_diameter_rescales_models_that_record_one(client, sample_paths):
    """A job's `diameter` rescales each image to the model's object size; without it the model
    estimates the size (close to the annotated nuclei's); models that record no size refuse it."""
    from morphoscope.io.images import read_image, read_label_image
    from morphoscope.samples import BBBC039

    cards = {c["name"]: c for c in client.get("/api/models").json()}
    if "nuclei" not in cards or cards["nuclei"]["diameter"] is None:
        pytest.skip("the shipped generalist model is not installed")
    assert cards["nuclei"]["diameter"] == 28.0 and cards["nuclei-maskrcnn"]["diameter"] is None
    path = sample_paths[0]
    up = client.post("/api/uploads", files={"files": (path.name, tiff_bytes(read_image(path)))}).json()[0]
    inputs = [{"upload_id": up["upload_id"]}]

    given = wait_done(client, client.post("/api/jobs", json={"inputs": inputs, "model": "nuclei",
                                                             "diameter": 14}).json()["job_id"])
    assert given["status"] == "done", given
    assert given["images"][0]["scale"] == {"scale": 2.0, "scale_from": "diameter", "diameter": 14.0}

    auto = wait_done(client, client.post("/api/jobs", json={"inputs": inputs, "model": "nuclei"}).json()["job_id"])
    scale = auto["images"][0]["scale"]
    labels = read_label_image(BBBC039 / "labels" / f"{path.stem}.png")
    areas = np.bincount(labels.ravel())[1:]
    annotated = float(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)))
    assert scale["scale_from"] == "estimate"
    assert abs(scale["diameter"] / annotated - 1) < 0.2, (scale, annotated)

    refused = client.post("/api/jobs", json={"inputs": inputs, "model": "nuclei-maskrcnn", "diameter": 14})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "diameter"]
    assert "records no object diameter" in refused.json()["detail"][0]["msg"]
    tiny = client.post("/api/jobs", json={"inputs": inputs, "model": "nuclei", "diameter": 0.5})
    assert tiny.status_code == 422 and tiny.json()["detail"][0]["loc"] == ["body", "diameter"]
