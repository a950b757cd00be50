"""What a hostile but realistic client tries against ``morphoscope serve`` (issue 13), each
stopped by the limit or check named in docs/security.md: TIFF bombs, bodies without
Content-Length, other sessions' jobs, cross-site writes, tokens, 500s, Unicode names, decimal
commas, server paths in answers. No model runs here: jobs are made from ready results."""

from __future__ import annotations

import io
import json
import select
import socket
import tempfile
import tracemalloc
import zipfile
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from web_testdata import BlockingInference, instance_result, made_up_bundle, png_bytes, serve_in_thread, tiff_bytes

from test_web_api import _FakeCatalog  # noqa: E402  (a model that never runs)


def make_app(tmp_path, *, catalog=None, trusted_hosts=None, client=("testclient", 50000), **config):
    """A JobManager (no model runs) and a TestClient of its app."""
    import threading

    from fastapi.testclient import TestClient

    from morphoscope.web.app import create_app
    from morphoscope.web.jobs import JobManager, ServerConfig

    gate = threading.Event()
    gate.set()
    m = JobManager(ServerConfig(tmp_dir=tmp_path, **config),
                   catalog=catalog or _FakeCatalog(made_up_bundle(BlockingInference, ["nucleus"], gate=gate),
                                                   failing=True, gate=gate))
    app = create_app(manager=m, trusted_hosts=trusted_hosts)
    return m, app, TestClient(app, client=client)


def second_client(app, address="testclient"):
    from fastapi.testclient import TestClient

    return TestClient(app, client=(address, 50001))


def session_of(client) -> str:
    return client.get("/api").headers["x-morphoscope-session"]


def stack_bytes(planes: int, h: int, w: int, dtype=np.uint16) -> bytes:
    """One TIFF series of blank zlib planes: tiny on disk, large decoded."""
    import tifffile

    buf = io.BytesIO()
    page = np.zeros((h, w), dtype)
    tifffile.imwrite(buf, (page for _ in range(planes)), shape=(planes, h, w), dtype=dtype,
                     compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"})
    return buf.getvalue()


def small_png(value: int = 7, size: int = 32) -> bytes:
    return png_bytes(np.full((size, size), value, np.uint8))


# --------------------------------------------------------------------------------------------
# limits on memory and disk
# --------------------------------------------------------------------------------------------


def test_tiff_bomb_is_refused_from_its_header_without_decoding(tmp_path):
    from morphoscope.web.jobs import ServerConfig

    # the file (64 planes of 4096² 16-bit) decodes to 2 GiB: over the default limit
    assert 64 * 4096 * 4096 * 2 > ServerConfig().max_image_bytes
    m, _, c = make_app(tmp_path, max_image_mb=64, max_upload_mb=8)
    bomb = stack_bytes(64, 1024, 1024)  # 128 MiB decoded, a few hundred kB on disk
    assert len(bomb) < 2 << 20
    tracemalloc.start()
    try:
        r = c.post("/api/uploads", files={"files": ("bomb.tif", bomb)})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 413, r.text
    assert "decodes to 128 MB" in r.json()["detail"] and "--max-image-mb" in r.json()["detail"]
    assert peak < 24 << 20, f"{peak / 2**20:.0f} MB allocated while refusing"  # one plane is 2 MiB
    assert m.uploads == {} and not any((m.root / "uploads").iterdir())
    m.close()


def test_stacks_are_decoded_one_plane_at_a_time(tmp_path):
    plane = 256 * 256 * 2
    m, _, c = make_app(tmp_path, plane_cache_mb=2.5 * plane / 2**20)
    r = c.post("/api/uploads", files={"files": ("z.tif", stack_bytes(12, 256, 256))})
    assert r.status_code == 201, r.text
    up = r.json()[0]
    assert up["pages"] == 12
    assert m.cached_plane_bytes() == plane  # the one shown first, checked at upload
    assert c.get(f"{up['preview_url']}?slice=11").status_code == 200
    assert m.cached_plane_bytes() == 2 * plane  # never the whole stack
    for k in (0, 3, 7):
        assert c.get(f"{up['preview_url']}?slice={k}").status_code == 200
    assert m.cached_plane_bytes() == 2 * plane  # the cache's budget holds
    m.close()


def test_body_without_content_length_is_cut_at_the_limit_and_nothing_uses_the_system_temp(tmp_path, monkeypatch):
    # any temporary file outside --tmp-dir would now fail the request
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-system-temp"))
    m, _, c = make_app(tmp_path / "serve", max_upload_mb=1)
    sent = []

    def body(n_mb, data=b"\0" * (1 << 20), name="big.tif"):
        yield b'--XX\r\nContent-Disposition: form-data; name="files"; filename="' + name.encode() + b'"\r\n\r\n'
        for _ in range(n_mb):
            sent.append(1)
            yield data
        yield b"\r\n--XX--\r\n"

    r = c.post("/api/uploads", content=body(16), headers={"content-type": "multipart/form-data; boundary=XX"})
    assert r.status_code == 413 and "up to 1 MB" in r.json()["detail"], r.text
    assert m.uploads == {} and not any((m.root / "uploads").iterdir())
    # a real image streamed the same way (chunked, no Content-Length) is stored under --tmp-dir
    png = small_png()
    r = c.post("/api/uploads", content=body(1, png, "ok.png"), headers={"content-type": "multipart/form-data; boundary=XX"})
    assert r.status_code == 201, r.text
    assert m.uploads[r.json()[0]["upload_id"]].path.is_relative_to(tmp_path / "serve")
    m.close()


def test_live_server_answers_413_before_reading_a_huge_chunked_body(tmp_path):
    from morphoscope.web.app import create_app

    m, _, _ = make_app(tmp_path, max_upload_mb=1)
    url, port, stop = serve_in_thread(create_app(manager=m))
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: multipart/form-data; boundary=XX\r\n\r\n")
        head = b'--XX\r\nContent-Disposition: form-data; name="files"; filename="big.tif"\r\n\r\n'
        s.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        chunk = b"\0" * (256 << 10)
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        total, sent = 1 << 30, 0  # a client that would send 1 GB
        try:
            while sent < total and not select.select([s], [], [], 0)[0]:
                s.sendall(framed)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(30)
        answer = s.recv(65536)
        s.close()
    finally:
        stop()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 64 << 20, f"the server let {sent >> 20} MB in before answering"
    assert m.uploads == {} and not any((m.root / "uploads").iterdir())
    m.close()


def test_quota_per_client_and_for_the_whole_server(tmp_path):
    image = tiff_bytes(np.zeros((512, 512), np.uint16))  # 0.5 MiB decoded
    m, app, a = make_app(tmp_path, quota_mb=1.2, max_total_mb=1.7)
    first = a.post("/api/uploads", files={"files": ("1.tif", image)})
    assert a.post("/api/uploads", files={"files": ("2.tif", image)}).status_code == 201
    r = a.post("/api/uploads", files={"files": ("3.tif", image)})
    assert r.status_code == 429 and "--quota-mb" in r.json()["detail"] and r.headers["retry-after"]
    assert len(m.uploads) == 2
    # another computer has its own quota, until the server's total is reached
    b = second_client(app, "10.0.0.7")
    assert b.post("/api/uploads", files={"files": ("4.tif", image)}).status_code == 201
    r = b.post("/api/uploads", files={"files": ("5.tif", image)})
    assert r.status_code == 429 and "--max-total-mb" in r.json()["detail"]
    # removing an image frees its share
    assert a.delete(f"/api/uploads/{first.json()[0]['upload_id']}").status_code == 204
    assert a.post("/api/uploads", files={"files": ("3.tif", image)}).status_code == 201
    m.close()


def test_exports_are_made_under_tmp_dir_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-system-temp"))
    m, _, c = make_app(tmp_path / "serve")
    job = m.add_result_job([instance_result("a"), instance_result("b", seed=1)], owner=session_of(c))
    z = c.get(f"/api/jobs/{job.id}/outputs.zip")
    assert z.status_code == 200, z.text
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert "morphoscope-results/a_labels.tif" in names and "morphoscope-results/report.html" in names
    assert c.get(f"/api/jobs/{job.id}/report.html?threshold=0.4").status_code == 200
    assert list((m.root / "exports").iterdir()) == []  # the ZIP went once sent
    m.close()


# --------------------------------------------------------------------------------------------
# who owns what
# --------------------------------------------------------------------------------------------


def test_uploads_and_jobs_belong_to_their_session(tmp_path):
    m, app, a = make_app(tmp_path)
    b = second_client(app)
    up = a.post("/api/uploads", files={"files": ("mine.png", small_png())}).json()[0]
    job = a.post("/api/jobs", json={"inputs": [{"upload_id": up["upload_id"]}]}).json()
    done = m.add_result_job([instance_result("x")], owner=session_of(a))
    for path in (f"/api/uploads/{up['upload_id']}", f"{up['preview_url']}", f"/api/jobs/{job['job_id']}",
                 f"/api/jobs/{done.id}/images/0/labels.tif", f"/api/results/measurements?jobs={done.id}"):
        assert b.get(path).status_code == 404, path
        assert a.get(path).status_code == 200, path
    assert {j["job_id"] for j in b.get("/api/jobs").json()} == set()
    assert {j["job_id"] for j in a.get("/api/jobs").json()} == {job["job_id"], done.id}
    # another session can neither use nor delete them
    r = b.post("/api/jobs", json={"inputs": [{"upload_id": up["upload_id"]}]})
    assert r.status_code == 404 and "unknown upload" in r.json()["detail"]
    assert b.delete(f"/api/jobs/{done.id}").status_code == 404
    assert b.delete(f"/api/uploads/{up['upload_id']}").status_code == 404
    assert done.id in m.jobs and up["upload_id"] in m.uploads
    # a script keeps its session with the header the server sent
    script = second_client(app)
    script.headers["X-Morphoscope-Session"] = session_of(a)
    assert script.get(f"/api/jobs/{done.id}").status_code == 200
    # results the operator added from Python are for everyone, and deleted by no one
    shared = m.add_result_job([instance_result("shared")])
    assert b.get(f"/api/jobs/{shared.id}").status_code == 200
    assert b.delete(f"/api/jobs/{shared.id}").status_code == 403
    assert a.delete(f"/api/jobs/{done.id}").status_code == 204
    m.close()


def test_session_cookie_is_httponly_and_strict(tmp_path):
    m, _, c = make_app(tmp_path, port=8123)
    r = c.get("/api")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"morphoscope_session_8123={r.headers['x-morphoscope-session']};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "set-cookie" not in c.get("/api").headers  # kept, not renewed
    m.close()


def test_token_is_required_on_every_request(tmp_path):
    m, app, c = make_app(tmp_path, token="s3cret-token", port=8124)
    for path in ("/api", "/api/models", "/openapi.json", "/static/app.js"):
        r = c.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
    assert "access token" in c.get("/api").json()["detail"]
    page = c.get("/", headers={"accept": "text/html"})
    assert page.status_code == 401 and "<form" in page.text and "s3cret" not in page.text
    assert c.get("/api", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
    assert c.get("/api?token=wrong").status_code == 401
    # the printed address: ?token= once sets a cookie and leaves the address bar
    r = c.get("/?token=s3cret-token&job=abc", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?job=abc"
    assert "morphoscope_token_8124=s3cret-token" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    assert c.get("/api").status_code == 200  # the cookie carries it now
    assert c.post("/api/uploads", files={"files": ("a.png", small_png())}).status_code == 201
    assert second_client(app).get("/api").status_code == 401
    m.close()


def test_cross_site_writes_are_refused(tmp_path):
    m, _, c = make_app(tmp_path)
    done = m.add_result_job([instance_result("x")], owner=session_of(c))
    files = {"files": ("a.png", small_png())}
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                    {"sec-fetch-site": "cross-site", "origin": "http://testserver"}):
        assert c.post("/api/uploads", files=files, headers=headers).status_code == 403, headers
        assert c.post("/api/predict", files=files, headers=headers).status_code == 403, headers
        r = c.delete(f"/api/jobs/{done.id}", headers=headers)
        assert r.status_code == 403 and "another web site" in r.json()["detail"], headers
    assert m.uploads == {} and done.id in m.jobs
    # reading is not a write; the page itself (same origin) and scripts (no Origin) may write
    assert c.get(f"/api/jobs/{done.id}", headers={"origin": "http://evil.example"}).status_code == 200
    assert c.post("/api/uploads", files=files, headers={"origin": "http://testserver",
                                                        "sec-fetch-site": "same-origin"}).status_code == 201
    assert c.post("/api/uploads", files=files).status_code == 201
    m.close()


def test_host_header_of_a_loopback_server(tmp_path):
    m, _, c = make_app(tmp_path, trusted_hosts=["127.0.0.1", "localhost"])
    r = c.get("http://127.0.0.1/api")
    assert r.status_code == 200
    r = c.get("http://127.0.0.1/api", headers={"host": "evil.example"})
    assert r.status_code == 400 and "loopback" in r.json()["detail"]  # JSON, as documented
    m.close()


def test_security_headers_compression_and_caching(tmp_path):
    m, _, c = make_app(tmp_path)
    page = c.get("/")
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for r in (page, c.get("/api"), c.get("/api/jobs/nope")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    js = c.get("/static/app.js", headers={"accept-encoding": "gzip"})
    assert js.headers["content-encoding"] == "gzip" and js.headers["cache-control"] == "no-cache"
    again = c.get("/static/app.js", headers={"if-none-match": js.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert c.get("/openapi.json", headers={"accept-encoding": "gzip"}).headers["content-encoding"] == "gzip"
    docs = c.get("/docs").headers["content-security-policy"]
    assert "'sha256-" in docs and "script-src 'self' 'sha256-" in docs  # its one inline script, by hash
    m.close()


# --------------------------------------------------------------------------------------------
# names, numbers, paths
# --------------------------------------------------------------------------------------------


LONG_NAME = "2024-03-18_HeLa_H2B-GFP_DAPI_60x_oil_NA1.4_zstack_0.2um_tile-003_position-017_channel-405nm_exposure-120ms_binning1x1_stitched_MIP.tif"


def test_unicode_and_long_file_names_are_kept(tmp_path):
    from morphoscope.web.security import content_disposition

    assert len(LONG_NAME) == 134
    m, _, c = make_app(tmp_path)
    names = ["ядра.tif", "ü.tif", "細胞.tif", "細胞_DAPI.tif", LONG_NAME]
    image = tiff_bytes(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64))
    r = c.post("/api/uploads", files=[("files", (n, image)) for n in names])
    assert r.status_code == 201, r.text
    assert [u["name"] for u in r.json()] == names
    stored = [m.uploads[u["upload_id"]].path.name for u in r.json()]
    assert stored == ["image.tif"] * 5  # kept on disk under the upload's id, never the client's name
    # downloads carry the name itself (RFC 5987) and an ASCII fallback
    job = m.add_result_job([instance_result("細胞_DAPI")], owner=session_of(c))
    cd = c.get(f"/api/jobs/{job.id}/images/0/labels.tif").headers["content-disposition"]
    assert cd.startswith('attachment; filename="DAPI_labels.tif"; filename*=UTF-8\'\'')
    assert unquote(cd.split("''", 1)[1]) == "細胞_DAPI_labels.tif"
    assert content_disposition("plain.csv") == 'attachment; filename="plain.csv"'
    zip_names = zipfile.ZipFile(io.BytesIO(c.get(f"/api/jobs/{job.id}/outputs.zip?report=false").content)).namelist()
    assert "morphoscope-results/細胞_DAPI_labels.tif" in zip_names
    # path parts, control characters and bidi overrides go; the name stays
    from morphoscope.web.jobs import display_name

    assert display_name("C:\\data\\ядра.tif") == "ядра.tif"
    assert display_name("../../etc/x\u202egpj.tif") == "xgpj.tif"
    assert display_name("\x00\x1f") == "image"
    m.close()


def test_decimal_comma_and_absurd_numbers_are_refused_not_misread(tmp_path):
    m, _, c = make_app(tmp_path)
    up = m.add_upload("x.tif", tiff_bytes(np.zeros((64, 64), np.uint16)), owner=session_of(c))
    job = m.add_result_job([instance_result("x", upload_id=up.id)], owner=session_of(c))
    base = f"/api/jobs/{job.id}"
    for url in (f"{base}/measurements?pixel_size=0,65", f"{base}/images/0/measurements.csv?pixel_size=0,65"):
        r = c.get(url)
        assert r.status_code == 422, url
        assert "decimal comma" in r.json()["detail"][0]["msg"] and "0.65" in r.json()["detail"][0]["msg"]
    for bad in ("1e200", "1e308", "0", "-1", "nan", "inf", "1e-300"):
        for url in (f"{base}/measurements?pixel_size={bad}", f"{base}/images/0/objects?pixel_size={bad}",
                    f"/api/results/report.html?jobs={job.id}&pixel_size={bad}"):
            assert c.get(url).status_code == 422, url
    assert c.get(f"{base}/measurements?pixel_size=0.65").json()["columns"].count("area_um2") == 1
    r = c.post("/api/predict", files={"files": ("a.png", small_png())}, data={"pixel_size": "0,65"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pixel_size"]
    assert c.post("/api/predict", files={"files": ("a.png", small_png())}, data={"wait": "1e300"}).status_code == 422
    r = c.post("/api/jobs", json={"inputs": [{"upload_id": "x"}], "pixel_size": "0,65"})
    assert r.status_code == 422 and "decimal comma" in r.json()["detail"][0]["msg"]
    assert list(m.uploads) == [up.id]  # the refused predicts kept no upload
    m.close()


@pytest.mark.parametrize("class_id", ["%20", ",", "%2C%2C", "0", "99", "nucleus,2", "cell"])
def test_odd_mask_names_are_404_not_500(tmp_path, class_id):
    m, _, c = make_app(tmp_path)
    job = m.add_result_job([instance_result("x")], owner=session_of(c))
    r = c.get(f"/api/jobs/{job.id}/images/0/masks/{class_id}.png")
    assert r.status_code == 404 and "nucleus" in r.json()["detail"], r.text
    assert c.get(f"/api/jobs/{job.id}/images/0/masks/nucleus.png").status_code == 200
    m.close()


def test_no_server_path_in_answers_or_downloads(tmp_path):
    m, _, c = make_app(tmp_path)
    secret_dirs = [str(tmp_path), str(m.root), str(Path.home()), tempfile.gettempdir()]
    job = m.add_result_job([instance_result("x")], owner=session_of(c))
    texts = {
        "models": c.get("/api/models").text,
        "bad png": c.post("/api/uploads", files={"files": ("bad.png", b"\x89PNG\r\n\x1a\n broken")}).text,
        "bad tiff": c.post("/api/uploads", files={"files": ("bad.tif", b"II*\x00" + bytes(64))}).text,
        "report": c.get(f"/api/jobs/{job.id}/report.html").text,
        "zip report": zipfile.ZipFile(io.BytesIO(c.get(f"/api/jobs/{job.id}/outputs.zip").content)).read(
            "morphoscope-results/report.html").decode(),
    }
    assert "prediction folder" in texts["report"]  # the package's report, which names its folder
    for what, text in texts.items():
        for d in secret_dirs:
            assert d not in text, (what, d)
    m.close()


def test_a_failed_jobs_error_names_no_server_path(tmp_path):
    m, _, c = make_app(tmp_path)
    job = m.add_result_job([], owner=session_of(c))
    job.status, job.error = "failed", f"cannot read {m.root}/uploads/abc/image.tif: broken"
    st = c.get(f"/api/jobs/{job.id}").json()
    assert str(m.root) not in st["error"] and "image.tif" in st["error"]
    m.close()


# --------------------------------------------------------------------------------------------
# honest results
# --------------------------------------------------------------------------------------------


def test_model_card_says_what_the_model_was_trained_on(tmp_path):
    from morphoscope.web.jobs import describe_model, read_card_file

    ckpt = {"task": "instance", "class_names": ["nucleus"], "metrics": {"images": 50, "dataset": "../shared/data/bbbc039/validation"},
            "config": {"data": {"train": "/home/alice/projects/secret/bbbc039/training"},
                       "model": {"architecture": "maskrcnn", "backbone": "resnet18"}}}
    description, trained_on, validated_on = describe_model(ckpt, {})
    assert trained_on == "bbbc039/training" and validated_on == "bbbc039/validation"
    assert "bbbc039/training" in description and "nucleus" in description and "/home" not in description
    # a card written for people wins over what the checkpoint says
    (tmp_path / "model_best.pt").write_bytes(b"")
    (tmp_path / "model_card.json").write_text(json.dumps({"description": "HeLa nuclei, DAPI, 40x"}))
    assert describe_model(ckpt, read_card_file(tmp_path / "model_best.pt"))[0] == "HeLa nuclei, DAPI, 40x"
    # a checkpoint that says nothing says so
    assert "does not record" in describe_model({"task": "instance", "class_names": ["cell"]}, {})[0]


def test_image_warnings_reach_the_api(tmp_path):
    m, _, c = make_app(tmp_path)
    res = instance_result("brightfield")
    res.warnings.append("this image looks unlike the model's training data (fluorescence nuclei)")
    job = m.add_result_job([res], owner=session_of(c))
    im = c.get(f"/api/jobs/{job.id}").json()["images"][0]
    assert im["warnings"] == ["this image looks unlike the model's training data (fluorescence nuclei)"]
    assert m.add_result_job([instance_result("ok")]).status_dict()["images"][0]["warnings"] == []
    m.close()


def test_every_error_is_documented_and_no_5xx(tmp_path):
    m, app, _ = make_app(tmp_path)
    spec = app.openapi()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"400", "401"} <= codes, (method, path)
            assert not any(code.startswith("5") for code in codes), (method, path)
            if method in ("post", "delete"):
                assert "403" in codes, (method, path)
            for code, resp in op["responses"].items():
                if code.startswith("4"):
                    schema = resp["content"]["application/json"]["schema"]["$ref"]
                    want = "HTTPValidationError" if code == "422" else "ErrorDoc"
                    assert schema.endswith(want), (method, path, code)
    m.close()
