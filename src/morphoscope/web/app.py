"""The HTTP API and web app of ``morphoscope serve`` (FastAPI).

The page (``/``) and scripts use the same endpoints (all under ``/api``; the OpenAPI document is
``/api/openapi.json`` and docs/openapi.json, a readable reference ``/api/docs``):

1. ``POST /api/uploads`` an image file (or ``POST /api/examples/{name}`` a bundled example),
2. ``POST /api/jobs`` with the upload ids and a model id, then poll ``GET /api/jobs/{id}`` --
   or do both at once, synchronously, with ``POST /api/predict``,
3. fetch outputs at any threshold without running the model again: ``labels.tif``,
   ``overlay.png``, ``masks/{k}.png``, ``measurements``, ``predictions.json``, ``report.html``,
   ``outputs.zip``.

Nothing here needs the internet: the page's scripts and styles are in ``static/``.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from morphoscope import __version__
from morphoscope.errors import InputError, MorphoscopeError
from morphoscope.web import exports
from morphoscope.web.jobs import (Conflict, JobManager, NotFound, QueueFull, ServerConfig, WebError,
                                  png_bytes)

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("morphoscope.web")

# --------------------------------------------------------------------------------------------
# response documents (the OpenAPI schema)
# --------------------------------------------------------------------------------------------


class ErrorDoc(BaseModel):
    detail: str = Field(description="what went wrong, in one readable sentence")


class ModelCard(BaseModel):
    id: str = Field(description="the id to ask for in jobs")
    name: str
    task: Literal["instance", "semantic", "classify"] | str
    classes: list[str]
    metrics: dict[str, float] = Field(description="validation metrics stored with the model")
    backbone: str | None = None
    architecture: str | None = None
    path: str
    source: str = Field(description="'shipped' with morphoscope or a 'file' given to the server")
    score_threshold: float = Field(description="default score threshold (instance models)")
    probability_threshold: float = Field(description="default probability threshold (semantic models)")
    class_thresholds: list[float] | None = Field(None, description="per-class decision thresholds (multi-label classifiers)")
    description: str = ""
    default: bool


class UploadInfo(BaseModel):
    upload_id: str
    name: str
    size_bytes: int
    height: int
    width: int
    pages: int = Field(description="planes in the file: > 1 for a stack (choose one with 'slice')")
    channels: int
    dtype: str
    pixel_size_um: float | None = Field(None, description="read from the TIFF metadata when recorded")
    example: str | None = None
    preview_url: str


class ExampleInfo(BaseModel):
    name: str
    file: str
    description: str
    height: int
    width: int
    dtype: str
    image_url: str
    preview_url: str


class JobInput(BaseModel):
    upload_id: str
    slice: int = Field(0, ge=0, description="plane of a stack (0 for a single image)")


class JobRequest(BaseModel):
    inputs: list[JobInput] = Field(min_length=1)
    model: str | None = Field(None, description="model id (GET /api/models); default: the server's first model")
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="default threshold of the outputs (instance: score, semantic: "
        "probability); every output endpoint takes another one as ?threshold=")
    pixel_size: float | None = Field(None, gt=0, description="µm per pixel for the measurements; "
                                     "default: from the TIFF metadata, else pixels")


class ImageSummary(BaseModel):
    index: int
    name: str
    upload_id: str
    slice: int
    task: str
    height: int
    width: int
    pixel_size_um: float | None = None
    seconds: float
    n_detections: int | None = Field(None, description="instance: all detections kept (any score)")
    counts: dict[str, int] | None = Field(None, description="objects per class at the job's threshold")
    predicted_class: str | None = Field(None, description="classify: the most probable class")
    predicted: list[str] | None = Field(None, description="classify: the classes the model decides for (its thresholds)")
    probabilities: dict[str, float] | None = None
    outputs: dict[str, Any] = Field(description="URLs of this image's outputs (which exist depends on the task)")


class JobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str = Field(description="what the job is doing, for people")
    progress: float = Field(description="0..1")
    error: str | None = None
    model: str
    task: str
    classes: list[str]
    score_threshold: float
    n_images: int
    created: float
    started: float | None = None
    finished: float | None = None
    queue_position: int | None = None
    url: str
    images: list[ImageSummary] = []
    downloads: dict[str, str] | None = None


class TableDoc(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


class ObjectsDoc(TableDoc):
    threshold: float
    class_names: list[str]
    task: str


class ServerInfo(BaseModel):
    name: str
    version: str
    limits: dict[str, float]
    default_model: str | None
    queue: dict[str, int]
    links: dict[str, str]


BINARY = {"application/octet-stream": {}}
PNG = {"image/png": {}}
TIFF = {"image/tiff": {}}
ERRORS = {404: {"model": ErrorDoc, "description": "unknown job, image, model or class"},
          409: {"model": ErrorDoc, "description": "the job is not finished or failed"}}


# --------------------------------------------------------------------------------------------
# the application
# --------------------------------------------------------------------------------------------


def _attachment(name: str) -> dict:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    return {"Content-Disposition": f'attachment; filename="{safe}"'}


class UploadLimitMiddleware:
    """Refuses request bodies declared larger than the upload limit before reading them."""

    def __init__(self, app, limit_bytes: int, slack: int = 1 << 20):
        self.app, self.limit, self.slack = app, limit_bytes, slack

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT"):
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit + self.slack:
                mb = self.limit / 2**20
                resp = JSONResponse(
                    {"detail": f"the upload is {int(length) / 2**20:.1f} MB; this server accepts uploads "
                               f"up to {mb:g} MB (--max-upload-mb)"}, status_code=413)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: ServerConfig | None = None, *, manager: JobManager | None = None,
               trusted_hosts: list[str] | None = None, close_manager: bool | None = None) -> FastAPI:
    """The FastAPI application; ``manager`` (default: a new one from ``config``) holds the state.

    ``trusted_hosts`` restricts the Host header (``morphoscope serve`` sets it to the loopback
    names when it listens on 127.0.0.1, which stops DNS-rebinding pages from reaching the API).
    ``close_manager`` (default: when the manager is made here) stops the workers and deletes the
    temporary folder when the application shuts down.
    """
    from contextlib import asynccontextmanager

    config = config or (manager.config if manager else ServerConfig())
    owns_manager = manager is None if close_manager is None else close_manager
    manager = manager or JobManager(config)

    @asynccontextmanager
    async def lifespan(app):
        yield
        if owns_manager:
            manager.close()

    app = FastAPI(
        title="morphoscope",
        version=__version__,
        summary="Segment and measure microscopy images with trained models.",
        description=(
            "The HTTP API of `morphoscope serve`; the web app at `/` uses the same endpoints.\n\n"
            "Typical use: `POST /api/uploads` an image, `POST /api/jobs` with its `upload_id` and a "
            "model id, poll `GET /api/jobs/{job_id}` until `status` is `done`, then fetch outputs. "
            "`POST /api/predict` does the three steps in one request (it waits for small jobs and "
            "answers `202` with a job to poll for long ones).\n\n"
            "Outputs are made from the kept raw predictions, so every output endpoint takes "
            "`?threshold=` (instance models: the score threshold; semantic models: the probability "
            "threshold) without running the model again. Files are as `morphoscope predict` writes "
            "them (docs/outputs.md).\n\n"
            "Limits: uploads larger than `--max-upload-mb` get `413`, images with more pixels than "
            "`--max-pixels` get `413`, unreadable files `422`, a full job queue `503`. Uploads and "
            "results are deleted `--keep-minutes` after their last use."),
        docs_url=None, redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.config = config
    app.add_middleware(UploadLimitMiddleware, limit_bytes=config.max_upload_bytes)
    if trusted_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts)

    # ---- errors ----------------------------------------------------------------------------
    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError):
        headers = {"Retry-After": "5"} if isinstance(exc, QueueFull) else None
        return JSONResponse({"detail": exc.message if exc.path is None else str(exc)},
                            status_code=exc.status, headers=headers)

    @app.exception_handler(MorphoscopeError)
    async def _input_error(request: Request, exc: MorphoscopeError):
        status = 422 if isinstance(exc, InputError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        msgs = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "form"))
            msgs.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse({"detail": "; ".join(msgs) or "invalid request", "errors": jsonable(exc.errors())},
                            status_code=422)

    # ---- page ------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs():
        return HTMLResponse(render_api_docs(app.openapi()))

    # ---- server and models -----------------------------------------------------------------
    @app.get("/api", response_model=ServerInfo, tags=["server"], summary="Server version, limits and links")
    def info():
        c = manager.config
        return {"name": "morphoscope", "version": __version__,
                "limits": {"max_upload_mb": c.max_upload_mb, "max_pixels": c.max_pixels,
                           "max_queue": c.max_queue, "max_images_per_job": c.max_images_per_job,
                           "keep_minutes": c.keep_minutes, "sync_wait_s": c.sync_wait_s},
                "default_model": manager.catalog.default_id, "queue": manager.busy(),
                "links": {"page": "/", "openapi": "/api/openapi.json", "docs": "/api/docs",
                          "models": "/api/models", "examples": "/api/examples"}}

    @app.get("/api/models", response_model=list[ModelCard], tags=["models"],
             summary="The models this server offers")
    def models():
        """Installed (shipped) models and those given with `--model`, with their task, classes and
        validation metrics from the checkpoint; the first is the default."""
        return manager.catalog.cards()

    @app.get("/api/models/{model_id}", response_model=ModelCard, tags=["models"], summary="One model's card",
             responses={404: {"model": ErrorDoc}})
    def model(model_id: str):
        return manager.catalog.card(model_id)

    @app.get("/api/measurements/definitions", tags=["measurements"],
             summary="What each measurement column means")
    def definitions():
        from morphoscope.morphology.definitions import MEASUREMENTS

        return [{"name": m.name, "kind": m.kind, "formula": m.formula, "range": m.range,
                 "regionprops": m.regionprops, "notes": m.notes} for m in MEASUREMENTS]

    # ---- examples --------------------------------------------------------------------------
    @app.get("/api/examples", response_model=list[ExampleInfo], tags=["examples"],
             summary="Example images bundled with morphoscope")
    def examples():
        return [e.info() for e in list_examples(manager.config)]

    def _example(name: str):
        for e in list_examples(manager.config):
            if e.name == name:
                return e
        raise NotFound(f"unknown example '{name}'")

    @app.get("/api/examples/{name}/image", tags=["examples"], summary="An example's original file",
             response_class=FileResponse, responses={200: {"content": {"image/tiff": {}, "image/png": {}}}, 404: {"model": ErrorDoc}})
    def example_image(name: str):
        e = _example(name)
        return FileResponse(e.path, filename=e.path.name)

    @app.get("/api/examples/{name}/preview.png", tags=["examples"], summary="A small preview of an example",
             response_class=Response, responses={200: {"content": PNG}, 404: {"model": ErrorDoc}})
    def example_preview(name: str):
        return Response(_example(name).preview(), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/examples/{name}", response_model=UploadInfo, status_code=201, tags=["examples"],
              summary="Use an example as an upload", responses={404: {"model": ErrorDoc}})
    def example_upload(name: str):
        """Copies the example into the server's uploads: the answer is an upload to predict on."""
        e = _example(name)
        return manager.add_upload(e.path.name, e.path, example=e.name).info()

    # ---- uploads ---------------------------------------------------------------------------
    @app.post("/api/uploads", response_model=list[UploadInfo], status_code=201, tags=["uploads"],
              summary="Upload image files",
              responses={413: {"model": ErrorDoc, "description": "file or image too large"},
                         422: {"model": ErrorDoc, "description": "not a readable image"}})
    def upload(files: list[UploadFile] = File(description="PNG, JPEG or 8/16-bit TIFF images, "
                                                          "multi-page stacks included")):
        """Stores the files and checks that each is a readable image within the limits. All or
        nothing: when one file is refused none is kept, and the message names it."""
        return [u.info() for u in _store_uploads(files)]

    def _store_uploads(files: list[UploadFile]):
        done = []
        try:
            for f in files:
                done.append(manager.add_upload(f.filename or "image", f.file))
        except BaseException:
            for u in done:
                manager.delete_upload(u.id)
            raise
        return done

    @app.get("/api/uploads/{upload_id}", response_model=UploadInfo, tags=["uploads"],
             summary="An upload's size, slices and pixel size", responses={404: {"model": ErrorDoc}})
    def upload_info(upload_id: str):
        return manager.get_upload(upload_id).info()

    @app.get("/api/uploads/{upload_id}/preview.png", tags=["uploads"], summary="One plane of an upload, for display",
             response_class=Response, responses={200: {"content": PNG}, 404: {"model": ErrorDoc}})
    def upload_preview(upload_id: str, slice: int = Query(0, ge=0, description="plane of a stack")):
        """The plane with its intensities stretched for display (0.5-99.8 percentiles), as 8-bit RGB."""
        return Response(manager.preview_png(upload_id, slice), media_type="image/png")

    @app.delete("/api/uploads/{upload_id}", status_code=204, tags=["uploads"], summary="Delete an upload",
                responses={404: {"model": ErrorDoc}})
    def delete_upload(upload_id: str):
        manager.delete_upload(upload_id)
        return Response(status_code=204)

    # ---- jobs ------------------------------------------------------------------------------
    @app.post("/api/jobs", response_model=JobStatus, status_code=202, tags=["jobs"],
              summary="Start a prediction job",
              responses={404: {"model": ErrorDoc, "description": "unknown model or upload"},
                         503: {"model": ErrorDoc, "description": "the job queue is full; retry later"}})
    def submit(req: JobRequest):
        """Queues the model on the uploads; poll `GET /api/jobs/{job_id}`."""
        job = manager.submit([(i.upload_id, i.slice) for i in req.inputs], model=req.model,
                             score_threshold=req.score_threshold, pixel_size=req.pixel_size)
        return manager.status(job.id)

    @app.post("/api/predict", response_model=JobStatus, tags=["jobs"],
              summary="Upload images and predict in one request",
              responses={202: {"model": JobStatus, "description": "still running: poll the job's url"},
                         404: {"model": ErrorDoc}, 413: {"model": ErrorDoc}, 422: {"model": ErrorDoc},
                         500: {"model": ErrorDoc, "description": "the model failed"},
                         503: {"model": ErrorDoc}})
    def predict(files: list[UploadFile] = File(description="image files"),
                model: str | None = Form(None, description="model id; default: the server's first model"),
                score_threshold: float | None = Form(None, ge=0, le=1),
                pixel_size: float | None = Form(None, gt=0, description="µm per pixel"),
                slice: int = Form(0, ge=0, description="plane of stacks"),
                wait: float | None = Form(None, ge=0, description="seconds to wait for the result before "
                                   "answering 202 with the job (default: the server's --sync-wait)")):
        """The synchronous way: answers `200` with the finished job (outputs' URLs, counts) when it
        is done within `wait` seconds, else `202` with the job to poll."""
        manager.catalog.card(model)  # unknown model: 404 before storing anything
        ups = _store_uploads(files)
        try:
            job = manager.submit([(u.id, min(slice, u.pages - 1)) for u in ups], model=model,
                                 score_threshold=score_threshold, pixel_size=pixel_size)
        except BaseException:
            for u in ups:
                manager.delete_upload(u.id)
            raise
        manager.wait(job, manager.config.sync_wait_s if wait is None else wait)
        status = manager.status(job.id)
        if job.status == "failed":
            return JSONResponse({"detail": job.error, "job": jsonable(status)}, status_code=500)
        return JSONResponse(jsonable(status), status_code=200 if job.status == "done" else 202)

    @app.get("/api/jobs", response_model=list[JobStatus], tags=["jobs"], summary="All jobs the server keeps")
    def jobs():
        return [manager.status(j) for j in list(manager.jobs)]

    @app.get("/api/jobs/{job_id}", response_model=JobStatus, tags=["jobs"], summary="A job's status and results",
             responses={404: {"model": ErrorDoc}})
    def job_status(job_id: str):
        return manager.status(job_id)

    @app.delete("/api/jobs/{job_id}", status_code=204, tags=["jobs"], summary="Cancel or delete a job",
                responses={404: {"model": ErrorDoc}})
    def delete_job(job_id: str):
        manager.cancel(job_id)
        return Response(status_code=204)

    # ---- one image's outputs ---------------------------------------------------------------
    def _image(job_id: str, index: int):
        job = manager.finished_job(job_id)
        if not 0 <= index < len(job.results):
            raise NotFound(f"job '{job_id}' has {len(job.results)} image(s); no image {index}")
        return job, job.results[index]

    def _thr(job, threshold):
        return job.score_threshold if threshold is None else threshold

    THR = Query(None, ge=0, le=1, description="score threshold (instance) or probability threshold "
                                              "(semantic); default: the job's")
    JOB = PathParam(description="job id")
    IDX = PathParam(ge=0, description="image number in the job, from 0")

    @app.get("/api/jobs/{job_id}/images/{index}/image.png", tags=["outputs"], response_class=Response,
             summary="The image as shown (8-bit RGB)", responses={200: {"content": PNG}, **ERRORS})
    def out_image(job_id: str = JOB, index: int = IDX):
        _, r = _image(job_id, index)
        return Response(r.display_png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/jobs/{job_id}/images/{index}/labels.tif", tags=["outputs"], response_class=Response,
             summary="Label TIFF at a threshold", responses={200: {"content": TIFF}, **ERRORS})
    def out_labels(job_id: str = JOB, index: int = IDX, threshold: float | None = THR):
        """instance: 0 = background, 1..N objects numbered by descending score (uint16, uint32 past
        65,535); semantic: the class of each pixel."""
        job, r = _image(job_id, index)
        return Response(exports.labels_tiff(r, _thr(job, threshold)), media_type="image/tiff",
                        headers=_attachment(f"{r.name}_labels.tif"))

    @app.get("/api/jobs/{job_id}/images/{index}/overlay.png", tags=["outputs"], response_class=Response,
             summary="Overlay PNG at a threshold", responses={200: {"content": PNG}, **ERRORS})
    def out_overlay(job_id: str = JOB, index: int = IDX, threshold: float | None = THR,
                    classes: str | None = Query(None, description="comma-separated class names or numbers to show (default: all)"),
                    style: Literal["outline", "fill", "both"] = Query("outline")):
        job, r = _image(job_id, index)
        rgb = exports.overlay_rgb(r, _thr(job, threshold), classes=exports.parse_classes(classes, r.class_names),
                                  style=style)
        return Response(png_bytes(rgb), media_type="image/png", headers=_attachment(f"{r.name}_overlay.png"))

    @app.get("/api/jobs/{job_id}/images/{index}/masks/{class_id}.png", tags=["outputs"], response_class=Response,
             summary="One class's binary mask (0/255)", responses={200: {"content": PNG}, **ERRORS})
    def out_mask(job_id: str = JOB, index: int = IDX,
                 class_id: str = PathParam(description="class number (1..K) or name"), threshold: float | None = THR):
        job, r = _image(job_id, index)
        if r.task == "classify":
            raise Conflict("a classification model gives no masks")
        k = next(iter(exports.parse_classes(class_id, r.class_names)))
        from morphoscope.prediction.writer import safe_class_name

        return Response(exports.class_mask_png(r, k, _thr(job, threshold)), media_type="image/png",
                        headers=_attachment(f"{r.name}_{safe_class_name(r.class_names[k - 1])}.png"))

    @app.get("/api/jobs/{job_id}/images/{index}/labels.bin", tags=["outputs"], response_class=Response,
             summary="Raw label image for the web app", responses={200: {"content": BINARY}, **ERRORS})
    def out_labels_bin(job_id: str = JOB, index: int = IDX, threshold: float | None = Query(
                           None, ge=0, le=1, description="semantic models only: the probability threshold "
                           "(default: the job's)")):
        """instance: the label image of *every* detection (object k = the row of `objects` with
        label k), so that a client applies any score threshold itself: an object is shown when its
        score >= the threshold. semantic: the instance labels at the probability threshold.
        Little-endian, row-major, gzip-encoded; the `X-Dtype`, `X-Height` and `X-Width` headers
        give its layout."""
        job, r = _image(job_id, index)
        if r.task not in ("instance", "semantic"):
            raise Conflict(f"a {r.task} model gives no label image")
        data, dtype = r.labels_gz(None if r.task == "instance" else _thr(job, threshold))
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Encoding": "gzip", "X-Dtype": dtype, "X-Height": str(r.height),
                                 "X-Width": str(r.width), "Cache-Control": "no-cache"})

    @app.get("/api/jobs/{job_id}/images/{index}/objects", response_model=ObjectsDoc, tags=["measurements"],
             summary="Objects and their measurements, for the web app", responses=ERRORS)
    def out_objects(job_id: str = JOB, index: int = IDX, threshold: float | None = Query(
                        None, ge=0, le=1, description="instance: default *all* detections (column `label` = "
                        "value in labels.bin); semantic: the job's threshold"),
                    pixel_size: float | None = Query(None, gt=0, description="µm per pixel (default: the job's)")):
        """One row per object. For instance models without `threshold` every detection is listed
        with its score, so that a client can filter by any threshold itself."""
        job, r = _image(job_id, index)
        loader = manager.plane_loader()
        if r.task == "instance" and threshold is None:
            table, thr = r.base_table(loader, pixel_size), 0.0
        else:
            thr = _thr(job, threshold)
            table = r.measurements_at(thr, loader, pixel_size)
        return {**exports.table_records(table), "threshold": thr, "class_names": r.class_names, "task": r.task}

    @app.get("/api/jobs/{job_id}/images/{index}/measurements.csv", tags=["measurements"], response_class=Response,
             summary="One image's measurement table (CSV)", responses={200: {"content": {"text/csv": {}}}, **ERRORS})
    def out_image_csv(job_id: str = JOB, index: int = IDX, threshold: float | None = THR,
                      pixel_size: float | None = Query(None, gt=0)):
        job, r = _image(job_id, index)
        table = r.measurements_at(_thr(job, threshold), manager.plane_loader(), pixel_size)
        return Response(exports.csv_bytes(table), media_type="text/csv",
                        headers=_attachment(f"{r.name}_measurements.csv"))

    # ---- a job's (or several jobs') outputs ------------------------------------------------
    def _items(job_ids: list[str]):
        jobs_ = [manager.finished_job(j) for j in job_ids]
        exports.check_same_model(jobs_)
        return jobs_, exports.collect(jobs_)

    def _job_ids(jobs_param: str) -> list[str]:
        ids = [j for j in (s.strip() for s in jobs_param.split(",")) if j]
        if not ids:
            raise WebError("no job ids given (?jobs=ID,ID,...)")
        return ids

    def _measurements(job_ids, threshold, pixel_size, format):
        jobs_, items = _items(job_ids)
        thr = _thr(jobs_[0], threshold)
        table = exports.measurements(items, thr, manager.plane_loader(), pixel_size)
        if format == "csv":
            return Response(exports.csv_bytes(table), media_type="text/csv",
                            headers=_attachment("measurements.csv"))
        return {**exports.table_records(table), "threshold": thr, "class_names": jobs_[0].class_names,
                "task": jobs_[0].task}

    def _report(job_ids, threshold, pixel_size):
        jobs_, items = _items(job_ids)
        text = exports.report_html(items, _thr(jobs_[0], threshold), manager.plane_loader(), pixel_size)
        return HTMLResponse(text, headers=_attachment("report.html"))

    def _zip(job_ids, threshold, pixel_size, report):
        jobs_, items = _items(job_ids)
        data = exports.outputs_zip(items, _thr(jobs_[0], threshold), manager.plane_loader(), pixel_size,
                                   report=report)
        return Response(data, media_type="application/zip", headers=_attachment("morphoscope-results.zip"))

    def _coco(job_ids, threshold):
        jobs_, items = _items(job_ids)
        data = exports.coco_predictions(items, _thr(jobs_[0], threshold))
        return JSONResponse(data, headers=_attachment("predictions.json"))

    FMT = Query("json", description="json (columns and rows) or csv")
    PXS = Query(None, gt=0, description="µm per pixel (default: the job's)")
    JOBS = Query(description="comma-separated job ids (of models with the same task and classes)")
    REPORT = Query(True, description="include report.html (it takes the longest to make)")

    @app.get("/api/jobs/{job_id}/measurements", response_model=TableDoc, tags=["measurements"],
             summary="Measurements of all of a job's images", responses={200: {"content": {"text/csv": {}}}, **ERRORS})
    def job_measurements(job_id: str = JOB, threshold: float | None = THR, pixel_size: float | None = PXS,
                         format: Literal["json", "csv"] = FMT):
        """One row per object (instance, semantic) or per image (classify); columns as
        `morphoscope measure` writes them (docs/morphology.md)."""
        return _measurements([job_id], threshold, pixel_size, format)

    @app.get("/api/jobs/{job_id}/predictions.json", tags=["outputs"], summary="COCO results JSON (instance models)",
             responses=ERRORS)
    def job_coco(job_id: str = JOB, threshold: float | None = THR):
        return _coco([job_id], threshold)

    @app.get("/api/jobs/{job_id}/report.html", tags=["outputs"], response_class=HTMLResponse,
             summary="Self-contained HTML report", responses=ERRORS)
    def job_report(job_id: str = JOB, threshold: float | None = THR, pixel_size: float | None = PXS):
        return _report([job_id], threshold, pixel_size)

    @app.get("/api/jobs/{job_id}/outputs.zip", tags=["outputs"], response_class=Response,
             summary="All outputs in one ZIP", responses={200: {"content": {"application/zip": {}}}, **ERRORS})
    def job_zip(job_id: str = JOB, threshold: float | None = THR, pixel_size: float | None = PXS,
                report: bool = REPORT):
        """The files of `morphoscope predict --measure` (labels, masks, overlays, predictions.json,
        measurements.csv) and report.html."""
        return _zip([job_id], threshold, pixel_size, report)

    @app.get("/api/results/measurements", response_model=TableDoc, tags=["measurements"],
             summary="Measurements of several jobs together", responses={200: {"content": {"text/csv": {}}}, **ERRORS})
    def results_measurements(jobs: str = JOBS, threshold: float | None = THR, pixel_size: float | None = PXS,
                             format: Literal["json", "csv"] = FMT):
        return _measurements(_job_ids(jobs), threshold, pixel_size, format)

    @app.get("/api/results/predictions.json", tags=["outputs"], summary="COCO results JSON of several jobs",
             responses=ERRORS)
    def results_coco(jobs: str = JOBS, threshold: float | None = THR):
        return _coco(_job_ids(jobs), threshold)

    @app.get("/api/results/report.html", tags=["outputs"], response_class=HTMLResponse,
             summary="HTML report of several jobs", responses=ERRORS)
    def results_report(jobs: str = JOBS, threshold: float | None = THR, pixel_size: float | None = PXS):
        return _report(_job_ids(jobs), threshold, pixel_size)

    @app.get("/api/results/outputs.zip", tags=["outputs"], response_class=Response,
             summary="All outputs of several jobs in one ZIP",
             responses={200: {"content": {"application/zip": {}}}, **ERRORS})
    def results_zip(jobs: str = JOBS, threshold: float | None = THR, pixel_size: float | None = PXS,
                    report: bool = REPORT):
        return _zip(_job_ids(jobs), threshold, pixel_size, report)

    return app


def jsonable(obj):
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(obj)


# --------------------------------------------------------------------------------------------
# examples
# --------------------------------------------------------------------------------------------


class Example:
    def __init__(self, path: Path, description: str):
        self.path, self.description = path, description
        self.name = path.stem
        self._meta = None
        self._preview = None

    def _read(self):
        from morphoscope.io.images import read_image

        return read_image(self.path)

    def meta(self):
        if self._meta is None:
            from morphoscope.web.jobs import as_planes

            arr = self._read()
            planes = as_planes(arr)
            self._meta = {"height": int(planes.shape[1]), "width": int(planes.shape[2]), "dtype": str(arr.dtype)}
        return self._meta

    def preview(self) -> bytes:
        if self._preview is None:
            from PIL import Image

            from morphoscope.io.images import to_display_rgb
            from morphoscope.web.jobs import as_planes

            im = Image.fromarray(to_display_rgb(as_planes(self._read())[0]))
            im.thumbnail((256, 256))
            self._preview = png_bytes(np.asarray(im))
        return self._preview

    def info(self) -> dict:
        return {"name": self.name, "file": self.path.name, "description": self.description, **self.meta(),
                "image_url": f"/api/examples/{self.name}/image",
                "preview_url": f"/api/examples/{self.name}/preview.png"}


_EXAMPLES: dict[tuple, list[Example]] = {}


def list_examples(config: ServerConfig) -> list[Example]:
    """The bundled sample images, then those of ``config.examples`` folders (unique names)."""
    key = tuple(str(p) for p in config.examples)
    if key in _EXAMPLES:
        return _EXAMPLES[key]
    from morphoscope.io.images import find_images

    found: list[Example] = []
    try:
        from morphoscope.samples import sample_images

        for p in sample_images():
            desc = "U2OS nuclei, Hoechst stain (BBBC039, CC0)" if "bbbc039" in str(p).lower() else p.parent.name
            found.append(Example(p, desc))
    except ImportError:
        pass
    for folder in config.examples:
        try:
            paths = find_images(folder)
        except InputError:
            continue
        for p in paths:
            if any(part in ("labels", "masks") for part in p.parts[-2:-1]):
                continue
            found.append(Example(p, f"from {Path(folder).name}"))
    names, unique = set(), []
    for e in found:
        base, n = e.name, 2
        while e.name in names:
            e.name, n = f"{base}-{n}", n + 1
        names.add(e.name)
        unique.append(e)
    _EXAMPLES[key] = unique
    return unique


# --------------------------------------------------------------------------------------------
# a readable API reference (Swagger UI would need a CDN)
# --------------------------------------------------------------------------------------------


def _schema_text(schema: dict, comps: dict, depth: int = 0) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return f'<a href="#schema-{name}">{html.escape(name)}</a>'
    if "anyOf" in schema:
        return " or ".join(_schema_text(s, comps, depth) for s in schema["anyOf"])
    t = schema.get("type", "")
    if t == "array":
        return f"array of {_schema_text(schema.get('items', {}), comps, depth)}"
    if "enum" in schema:
        return " | ".join(html.escape(json.dumps(v)) for v in schema["enum"])
    if "const" in schema:
        return html.escape(json.dumps(schema["const"]))
    if t == "string" and schema.get("format") == "binary":
        return "file"
    return html.escape(str(t or "any"))


def render_api_docs(spec: dict) -> str:
    """The OpenAPI document as one HTML page, readable offline."""
    esc = html.escape
    comps = spec.get("components", {}).get("schemas", {})
    out = [f"<h1>{esc(spec['info']['title'])} HTTP API <small>{esc(spec['info']['version'])}</small></h1>",
           "<p>" + esc(spec["info"].get("description", "")).replace("\n\n", "</p><p>") + "</p>",
           '<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> · '
           '<a href="/">back to the app</a></p>']
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append(f'<section class="op"><h2><span class="m {method}">{method.upper()}</span> '
                       f'<code>{esc(path)}</code> — {esc(op.get("summary", ""))}</h2>')
            if op.get("description"):
                out.append("<p>" + esc(op["description"]).replace("\n\n", "</p><p>") + "</p>")
            params = op.get("parameters", [])
            if params:
                out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>")
                for p in params:
                    req = " (required)" if p.get("required") else ""
                    out.append(f"<tr><td><code>{esc(p['name'])}</code>{req}</td><td>{esc(p['in'])}</td>"
                               f"<td>{_schema_text(p.get('schema', {}), comps)}</td>"
                               f"<td>{esc(p.get('description', '') or p.get('schema', {}).get('description', ''))}</td></tr>")
                out.append("</table>")
            body = op.get("requestBody", {}).get("content", {})
            for ctype, c in body.items():
                out.append(f"<p>Body (<code>{esc(ctype)}</code>): {_schema_text(c.get('schema', {}), comps)}</p>")
            resp = []
            for code, r in op.get("responses", {}).items():
                kinds = ", ".join(f"<code>{esc(k)}</code>" for k in r.get("content", {}))
                schema = next(iter(r.get("content", {}).values()), {}).get("schema", {})
                resp.append(f"<li><b>{esc(code)}</b> {esc(r.get('description', ''))} {kinds} "
                            f"{_schema_text(schema, comps)}</li>")
            out.append("<ul>" + "".join(resp) + "</ul></section>")
    out.append("<h2>Schemas</h2>")
    for name, s in comps.items():
        if name.startswith(("HTTPValidationError", "ValidationError", "Body_")):
            continue
        out.append(f'<section id="schema-{esc(name)}"><h3>{esc(name)}</h3><table>')
        req = set(s.get("required", []))
        for field, fs in s.get("properties", {}).items():
            out.append(f"<tr><td><code>{esc(field)}</code>{' *' if field in req else ''}</td>"
                       f"<td>{_schema_text(fs, comps)}</td><td>{esc(fs.get('description', ''))}</td></tr>")
        out.append("</table></section>")
    style = ("body{font:14px/1.5 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1d2330}"
             "h1 small{font-size:.5em;color:#778}h2{font-size:15px;margin:0 0 .4em}.op{border:1px solid #e1e4ea;"
             "border-radius:8px;padding:12px 14px;margin:12px 0}.m{display:inline-block;min-width:54px;"
             "text-align:center;border-radius:4px;color:#fff;font-size:12px;padding:1px 6px;margin-right:6px}"
             ".get{background:#0072b2}.post{background:#009e73}.delete{background:#d55e00}"
             "table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #e1e4ea;"
             "padding:3px 8px;text-align:left;vertical-align:top}code{font-size:12.5px}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>morphoscope API</title>"
            f"<style>{style}</style></head><body>{''.join(out)}</body></html>")


def write_openapi(path: str | Path | None = None) -> str:
    """The OpenAPI document as committed in docs/openapi.json (written to ``path`` when given)."""
    from morphoscope.web.jobs import ModelCatalog

    class _NoModels(ModelCatalog):
        def __init__(self):  # the schema does not depend on the installed models
            self.entries, self._bundles, self.device, self.keep_loaded = {}, {}, "cpu", 0

    manager = JobManager(ServerConfig(), catalog=_NoModels())
    try:
        spec = create_app(manager=manager).openapi()
    finally:
        manager.close()
    text = json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":  # python -m morphoscope.web.app [docs/openapi.json]
    import sys

    if len(sys.argv) > 1:
        write_openapi(sys.argv[1])
    else:
        sys.stdout.write(write_openapi())
