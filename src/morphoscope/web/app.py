"""The HTTP API and web app of ``morphoscope serve`` (FastAPI).

The page (``/``) and scripts use the same endpoints (all under ``/api``; the OpenAPI document is
``/openapi.json`` and docs/openapi.json, Swagger UI ``/docs``, served from this server):

1. ``POST /api/uploads`` an image file (or ``POST /api/examples/{name}`` a bundled example),
2. ``POST /api/jobs`` with the upload ids and a model id, then poll ``GET /api/jobs/{id}`` --
   or do both at once, synchronously, with ``POST /api/predict``,
3. fetch outputs at any threshold without running the model again: ``labels.tif``,
   ``overlay.png``, ``masks/{k}.png``, ``measurements``, ``predictions.json``, ``report.html``,
   ``outputs.zip``.

Uploads and jobs belong to the session that made them (web/security.py: cookie or
``X-Morphoscope-Session``); other sessions get 404. Nothing here needs the internet.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, WithJsonSchema
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect

from morphoscope import __version__
from morphoscope.errors import InputError, MorphoscopeError
from morphoscope.web import exports
from morphoscope.web.jobs import (DIAMETER_RANGE, PIXEL_SIZE_RANGE, Conflict, Invalid, JobManager, NotFound, QueueFull,
                                  ServerConfig, WebError, display_name, png_bytes)
from morphoscope.web.security import REPORT_CSP, Guard, content_disposition, docs_csp

STATIC_DIR = Path(__file__).parent / "static"
UPLOAD_PATHS = ("/api/uploads", "/api/predict")
log = logging.getLogger("morphoscope.web")

# --------------------------------------------------------------------------------------------
# request values
# --------------------------------------------------------------------------------------------


def _decimal_point(value):
    """'0,65' is refused with a message (float() would refuse it with a cryptic one, and a
    browser may have turned it into 65)."""
    if isinstance(value, str) and "," in value:
        raise ValueError(f"'{value}' has a decimal comma; write the number with a decimal point "
                         f"({value.replace(',', '.')})")
    return value


_PX_LO, _PX_HI = PIXEL_SIZE_RANGE
PixelSize = Annotated[float, BeforeValidator(_decimal_point), Field(ge=_PX_LO, le=_PX_HI)]
PIXEL_SIZE_HELP = f"µm per pixel ({_PX_LO:g} to {_PX_HI:g}; a decimal point, not a comma)"
_D_LO, _D_HI = DIAMETER_RANGE
Diameter = Annotated[float, BeforeValidator(_decimal_point), Field(ge=_D_LO, le=_D_HI)]
DIAMETER_HELP = (f"the objects' median diameter in the images, pixels ({_D_LO:g} to {_D_HI:g}): each image is "
                 "rescaled to the model's object size (models with a `diameter` only); default: estimated per image")
Threshold = Annotated[float, Field(ge=0, le=1)]
PXS = Annotated[PixelSize | None, Query(description=PIXEL_SIZE_HELP + " (default: the job's)")]

# --------------------------------------------------------------------------------------------
# response documents (the OpenAPI schema)
# --------------------------------------------------------------------------------------------


class ErrorDoc(BaseModel):
    """Every error but 422 (which is FastAPI's list of validation errors)."""

    detail: str = Field(description="what went wrong, in one readable sentence")


Kind = Literal["objects", "classes"]
ThresholdKind = Literal["score", "probability"] | None
KIND_HELP = ("what the model's results hold: `objects` (labels, masks, objects and their measurements) or "
             "`classes` (class probabilities of the whole image)")
THRESHOLD_KIND_HELP = ("what the threshold thresholds: `score` (objects scoring below it are left out; the raw "
                       "objects are kept, so a client may apply any score itself), `probability` (the objects "
                       "are made again from the kept probability maps at it), or null (no threshold)")


class ModelCard(BaseModel):
    id: str = Field(description="the id to ask for in jobs")
    name: str
    task: str = Field(description="the model's task (e.g. instance, semantic, classify), for people: what its "
                      "results hold is `kind`")
    kind: Kind = Field(description=KIND_HELP)
    threshold_kind: ThresholdKind = Field(description=THRESHOLD_KIND_HELP)
    threshold: float | None = Field(description="the model's default threshold (of `threshold_kind`), as "
                                    "`morphoscope predict` uses it")
    diameter: float | None = Field(None, description="the object diameter (pixels) the model works at: each image is "
                                   "rescaled so that its objects have it, from the job's `diameter` or the model's own "
                                   "estimate; null: the model predicts at the image's scale")
    classes: list[str]
    metrics: dict[str, float] = Field(description="validation metrics stored with the model")
    backbone: str | None = None
    architecture: str | None = None
    file: str = Field(description="the model's file name (never its folder on the server)")
    source: str = Field(description="'shipped' with morphoscope or a 'file' given to the server")
    class_thresholds: list[float] | None = Field(None, description="per-class decision thresholds (multi-label classifiers)")
    description: str = Field(description="what the model does and what images it was trained on, for people")
    trained_on: str | None = Field(None, description="the training data, as the last parts of its path")
    validated_on: str | None = Field(None, description="the validation data, as the last parts of its path")
    default: bool


class UploadInfo(BaseModel):
    upload_id: str
    name: str = Field(description="the file's own name (any script), as shown and downloaded")
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
    inputs: list[JobInput] = Field(min_length=1, max_length=64)
    model: str | None = Field(None, description="model id (GET /api/models); default: the server's first model")
    score_threshold: Threshold | None = Field(
        None, description="default threshold of the outputs, of the model's `threshold_kind` (score or "
        "probability; default: the model's own); every output endpoint takes another one as ?threshold=")
    pixel_size: PixelSize | None = Field(None, description=PIXEL_SIZE_HELP + "; default: from the TIFF "
                                         "metadata, else pixels")
    diameter: Diameter | None = Field(None, description=DIAMETER_HELP)


_FILES = Annotated[list[bytes], WithJsonSchema(
    {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"}})]


class UploadForm(BaseModel):
    files: _FILES = Field(description="PNG, JPEG or 8/16-bit TIFF images, multi-page stacks included")


class PredictForm(BaseModel):
    """The form fields of POST /api/predict besides its files."""

    model: str | None = Field(None, description="model id; default: the server's first model")
    score_threshold: Threshold | None = None
    pixel_size: PixelSize | None = Field(None, description=PIXEL_SIZE_HELP)
    diameter: Diameter | None = Field(None, description=DIAMETER_HELP)
    slice: int = Field(0, ge=0, description="plane of stacks")
    wait: float | None = Field(None, ge=0, le=3600, description="seconds to wait for the result before "
                               "answering 202 with the job (default: the server's --sync-wait)")


class PredictBody(PredictForm):
    files: _FILES = Field(description="image files")


class ImageSummary(BaseModel):
    index: int
    name: str
    upload_id: str
    slice: int
    task: str = Field(description="the model's task, for people")
    kind: Kind = Field(description=KIND_HELP)
    threshold_kind: ThresholdKind = Field(description=THRESHOLD_KIND_HELP)
    height: int
    width: int
    pixel_size_um: float | None = None
    seconds: float
    warnings: list[str] = Field([], description="what may make this result wrong, for people (e.g. an "
                                "image unlike the model's training data)")
    n_detections: int | None = Field(None, description="score thresholds: every object found, at any score (the "
                                     "objects of labels.bin)")
    counts: dict[str, int] | None = Field(None, description="objects: objects per class at the job's threshold")
    predicted_class: str | None = Field(None, description="classes: the most probable class")
    predicted: list[str] | None = Field(None, description="classes: the classes the model decides for (its thresholds)")
    probabilities: dict[str, float] | None = Field(None, description="classes: each class's probability")
    scale: dict[str, Any] | None = Field(None, description="how the image was rescaled for the model: `scale` (model "
                                         "pixels per image pixel), `scale_from` (`diameter` given, `estimate`, "
                                         "`pixel_size`), `diameter` (the objects' median diameter in the image, "
                                         "pixels); null: predicted at the image's scale")
    outputs: dict[str, Any] = Field(description="URLs of this image's outputs (which exist depends on `kind`)")


class JobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str = Field(description="what the job is doing, for people")
    progress: float = Field(description="0..1")
    error: str | None = None
    model: str
    task: str = Field(description="the model's task, for people")
    kind: Kind = Field(description=KIND_HELP)
    threshold_kind: ThresholdKind = Field(description=THRESHOLD_KIND_HELP)
    classes: list[str]
    score_threshold: float = Field(description="the job's threshold, of `threshold_kind` (the default of every output)")
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
    """A measurement table with what it was made at and of."""

    threshold: float
    class_names: list[str]
    task: str = Field(description="the model's task, for people")
    kind: Kind = Field(description=KIND_HELP)
    threshold_kind: ThresholdKind = Field(description=THRESHOLD_KIND_HELP)


class ServerInfo(BaseModel):
    name: str
    version: str
    limits: dict[str, float]
    token_required: bool = Field(description="every request must carry the server's access token")
    default_model: str | None
    queue: dict[str, int]
    links: dict[str, str]


BINARY = {"application/octet-stream": {}}
PNG = {"image/png": {}}
TIFF = {"image/tiff": {}}
VALIDATION = {"description": "Validation Error: a value that cannot be used (FastAPI's list of errors)",
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}
ERROR_TEXT = {
    400: "malformed request: a body that is not the documented form, or (loopback servers) a Host "
         "header naming another host",
    401: "the server was started with an access token and the request did not carry it",
    403: "a write sent by another web site, or deleting what the server itself made",
    404: "unknown (or another session's) job, upload, image, model or class",
    409: "the job is not finished, or failed, or has no such output",
    410: "the uploaded image these measurements need has been deleted",
    413: "the upload, an image plane or the decoded image is larger than the server accepts",
    429: "try again later: the job queue is full, or your (or the server's) space for images is used up",
}


def errors(*codes: int) -> dict:
    return {c: VALIDATION if c == 422 else {"model": ErrorDoc, "description": ERROR_TEXT[c]} for c in codes}


OUT_ERRORS = errors(404, 409)


def multipart_body(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": model.model_json_schema()}}}}


# --------------------------------------------------------------------------------------------
# the application
# --------------------------------------------------------------------------------------------


class CachedStatic(StaticFiles):
    """Static files with ETags (304 when unchanged) that browsers check again on each use."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def _docs_static_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def create_app(config: ServerConfig | None = None, *, manager: JobManager | None = None,
               trusted_hosts: list[str] | None = None, close_manager: bool | None = None) -> FastAPI:
    """The FastAPI application; ``manager`` (default: a new one from ``config``) holds the state.

    ``trusted_hosts`` restricts the Host header (``morphoscope serve`` sets it to the loopback
    names when it listens on 127.0.0.1, which stops DNS-rebinding pages from reaching the API).
    ``config.token``, when set, is required on every request. ``close_manager`` (default: when
    the manager is made here) stops the workers and deletes the temporary folder when the
    application shuts down.
    """
    from contextlib import asynccontextmanager

    config = config or (manager.config if manager else ServerConfig())
    owns_manager = manager is None if close_manager is None else close_manager
    manager = manager or JobManager(config)
    c = manager.config

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
            "`?threshold=` without running the model again: a score threshold or a probability "
            "threshold, as the job's `threshold_kind` says. Which outputs exist follows the job's "
            "`kind`: `objects` (labels, masks, objects, COCO) or `classes` (class probabilities). "
            "Files are as `morphoscope predict` writes them (docs/outputs.md).\n\n"
            "Sessions: uploads and jobs belong to the session that made them; other sessions get "
            "`404`. Browsers keep the session in a cookie; scripts keep the cookie (httpx.Client, "
            "requests.Session) or send back the `X-Morphoscope-Session` header of the first answer. "
            "A server started with a token (`--token`, and by default when it listens beyond this "
            "computer) needs `Authorization: Bearer TOKEN` on every request.\n\n"
            "Errors are `{\"detail\": \"one sentence\"}`, except `422`, FastAPI's list of "
            "validation errors. Limits: uploads larger than `--max-upload-mb`, planes larger than "
            "`--max-pixels` and images decoding to more than `--max-image-mb` get `413`; a full "
            "queue or a used-up quota `429` (with `Retry-After`). Uploads and results are deleted "
            "`--keep-minutes` after their last use."),
        docs_url=None, redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan,
        responses=errors(400, 401),
    )
    app.state.manager = manager
    app.state.config = config
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    app.add_middleware(Guard, token=c.token, allowed_hosts=trusted_hosts, upload_paths=UPLOAD_PATHS,
                       upload_limit=c.max_upload_bytes + (256 << 10),  # + the multipart envelope
                       upload_limit_text=f"{c.max_upload_mb:g} MB", port=c.port)

    def who(request: Request) -> tuple[str, str]:
        """(session, client address) that the Guard found for this request."""
        state = request.scope.get("state", {})
        return state.get("session", "anonymous"), state.get("client", "unknown")

    def owner(request: Request) -> str:
        return who(request)[0]

    # ---- errors ----------------------------------------------------------------------------
    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError):
        message = manager.scrub(exc.message if exc.path is None else str(exc))
        if isinstance(exc, Invalid):
            return JSONResponse({"detail": [{"loc": list(exc.loc), "msg": message, "type": exc.type}]},
                                status_code=422)
        headers = {"Retry-After": "5"} if isinstance(exc, QueueFull) else None
        return JSONResponse({"detail": message}, status_code=exc.status, headers=headers)

    @app.exception_handler(MorphoscopeError)
    async def _input_error(request: Request, exc: MorphoscopeError):
        message = manager.scrub(str(exc))
        if isinstance(exc, InputError):
            return JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]},
                                status_code=422)
        return JSONResponse({"detail": message}, status_code=400)

    # ---- page and reference ----------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", CachedStatic(directory=STATIC_DIR), name="static")
    app.mount("/docs-static", CachedStatic(directory=_docs_static_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui():
        from fastapi.openapi.docs import get_swagger_ui_html

        page = get_swagger_ui_html(
            openapi_url="/openapi.json", title="morphoscope HTTP API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js", swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon.png",
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True, "defaultModelsExpandDepth": 0})
        page.headers["Content-Security-Policy"] = docs_csp(page.body.decode())
        return page

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_alias():
        return JSONResponse(app.openapi())

    @app.get("/api/docs", include_in_schema=False)
    def docs_alias():
        return RedirectResponse("/docs", status_code=308)

    # ---- server and models -----------------------------------------------------------------
    @app.get("/api", response_model=ServerInfo, tags=["server"], summary="Server version, limits and links")
    def info():
        return {"name": "morphoscope", "version": __version__,
                "limits": {"max_upload_mb": c.max_upload_mb, "max_pixels": c.max_pixels,
                           "max_image_mb": c.max_image_mb, "quota_mb": c.quota_mb,
                           "max_total_mb": c.max_total_mb,
                           "max_queue": c.max_queue, "max_images_per_job": c.max_images_per_job,
                           "keep_minutes": c.keep_minutes, "sync_wait_s": c.sync_wait_s,
                           "pixel_size_min_um": _PX_LO, "pixel_size_max_um": _PX_HI,
                           "diameter_min_px": _D_LO, "diameter_max_px": _D_HI},
                "token_required": bool(c.token),
                "default_model": manager.catalog.default_id, "queue": manager.busy(),
                "links": {"page": "/", "openapi": "/openapi.json", "docs": "/docs",
                          "models": "/api/models", "examples": "/api/examples"}}

    @app.get("/api/models", response_model=list[ModelCard], tags=["models"],
             summary="The models this server offers")
    def models():
        """Installed (shipped) models and those given with `--model`, with their task, classes,
        what they were trained on and validation metrics from the checkpoint; the first is the
        default."""
        return manager.catalog.cards()

    @app.get("/api/models/{model_id}", response_model=ModelCard, tags=["models"], summary="One model's card",
             responses=errors(404))
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
             response_class=FileResponse, responses={200: {"content": {"image/tiff": {}, "image/png": {}}}, **errors(404)})
    def example_image(name: str):
        e = _example(name)
        return FileResponse(e.path, filename=e.path.name)

    @app.get("/api/examples/{name}/preview.png", tags=["examples"], summary="A small preview of an example",
             response_class=Response, responses={200: {"content": PNG}, **errors(404)})
    def example_preview(name: str):
        return Response(_example(name).preview(), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/examples/{name}", response_model=UploadInfo, status_code=201, tags=["examples"],
              summary="Use an example as an upload", responses=errors(403, 404, 429))
    def example_upload(name: str, request: Request):
        """Copies the example into the server's uploads: the answer is an upload to predict on."""
        e = _example(name)
        session, client = who(request)
        return manager.add_upload(e.path.name, e.path, example=e.name, owner=session, client=client).info()

    # ---- uploads ---------------------------------------------------------------------------
    async def _receive(request: Request):
        """The request's files stored and checked (all or nothing), and its other form fields."""
        from morphoscope.web.uploads import MalformedBody, receive_form

        session, client = who(request)

        def open_file(filename: str, index: int):
            try:
                uid, path, name = manager.reserve_upload(filename)
            except Invalid as exc:
                raise Invalid(exc.message, loc=("body", "files", index)) from None
            return path, (uid, path, name)

        try:
            form = await receive_form(
                request, open_file=open_file, discard=lambda t: manager.discard_upload_file(t[1]),
                file_limit=c.max_upload_bytes, too_large=lambda fn, size: manager.too_large(display_name(fn), size),
                max_files=c.max_images_per_job)
        except MalformedBody as exc:
            raise WebError(str(exc)) from None
        except ClientDisconnect:
            raise WebError("the client went away before the upload ended") from None
        files = [f for f in form.files if f.field == "files"]
        for f in form.files:
            if f.field != "files":
                manager.discard_upload_file(f.path)
        if not files:
            raise RequestValidationError([{"type": "missing", "loc": ("body", "files"), "msg": "Field required",
                                           "input": None}])

        def register_all():
            done = []
            try:
                for i, f in enumerate(files):
                    uid, path, name = f.token
                    try:
                        done.append(manager.register_upload(uid, path, name, owner=session, client=client))
                    except Invalid as exc:
                        raise Invalid(exc.message, loc=("body", "files", i)) from None
            except BaseException:
                for u in done:
                    manager.delete_upload(u.id)
                for f in files[len(done):]:
                    manager.discard_upload_file(f.path)
                raise
            return done

        return await run_in_threadpool(register_all), form.fields

    @app.post("/api/uploads", response_model=list[UploadInfo], status_code=201, tags=["uploads"],
              summary="Upload image files", openapi_extra=multipart_body(UploadForm),
              responses=errors(403, 413, 422, 429))
    async def upload(request: Request):
        """Stores the files and checks that each is a readable image within the limits, from its
        header before decoding it. All or nothing: when one file is refused none is kept, and the
        message names it. File names in any script are kept."""
        ups, _ = await _receive(request)
        return [u.info() for u in ups]

    @app.get("/api/uploads/{upload_id}", response_model=UploadInfo, tags=["uploads"],
             summary="An upload's size, slices and pixel size", responses=errors(404))
    def upload_info(upload_id: str, request: Request):
        return manager.get_upload(upload_id, owner(request)).info()

    @app.get("/api/uploads/{upload_id}/preview.png", tags=["uploads"], summary="One plane of an upload, for display",
             response_class=Response, responses={200: {"content": PNG}, **errors(404)})
    def upload_preview(upload_id: str, request: Request,
                       slice: int = Query(0, ge=0, description="plane of a stack")):
        """The plane with its intensities stretched for display (0.5-99.8 percentiles), as 8-bit RGB."""
        return Response(manager.preview_png(upload_id, slice, owner=owner(request)), media_type="image/png")

    @app.delete("/api/uploads/{upload_id}", status_code=204, tags=["uploads"], summary="Delete an upload",
                responses=errors(403, 404))
    def delete_upload(upload_id: str, request: Request):
        manager.delete_upload(upload_id, owner(request))
        return Response(status_code=204)

    # ---- jobs ------------------------------------------------------------------------------
    @app.post("/api/jobs", response_model=JobStatus, status_code=202, tags=["jobs"],
              summary="Start a prediction job", responses=errors(403, 404, 413, 429))
    def submit(req: JobRequest, request: Request):
        """Queues the model on the uploads; poll `GET /api/jobs/{job_id}`."""
        session = owner(request)
        job = manager.submit([(i.upload_id, i.slice) for i in req.inputs], model=req.model,
                             score_threshold=req.score_threshold, pixel_size=req.pixel_size,
                             diameter=req.diameter, owner=session)
        return manager.status(job.id, session)

    @app.post("/api/predict", response_model=JobStatus, tags=["jobs"],
              summary="Upload images and predict in one request", openapi_extra=multipart_body(PredictBody),
              responses={200: {"description": "the job ended: `status` is `done`, or `failed` with `error` "
                                              "saying why"},
                         202: {"model": JobStatus, "description": "still running: poll the job's url"},
                         **errors(403, 404, 413, 422, 429)})
    async def predict(request: Request):
        """The synchronous way: answers `200` with the job once it has ended within `wait`
        seconds (`status` `done`, or `failed` and why), else `202` with the job to poll."""
        ups, fields = await _receive(request)
        session = owner(request)
        try:
            try:
                params = PredictForm.model_validate({k: v for k, v in fields.items() if v != ""})
            except ValidationError as exc:
                raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                              for e in exc.errors(include_url=False, include_context=False)]) from None
            job = manager.submit([(u.id, min(params.slice, u.pages - 1)) for u in ups], model=params.model,
                                 score_threshold=params.score_threshold, pixel_size=params.pixel_size,
                                 diameter=params.diameter, owner=session)
        except BaseException:
            for u in ups:
                manager.delete_upload(u.id)
            raise
        await run_in_threadpool(manager.wait, job, c.sync_wait_s if params.wait is None else params.wait)
        status = manager.status(job.id, session)
        return JSONResponse(jsonable(status), status_code=202 if job.status in ("queued", "running") else 200)

    @app.get("/api/jobs", response_model=list[JobStatus], tags=["jobs"], summary="Your jobs")
    def jobs(request: Request):
        """The jobs of this session (and those the server's operator added for everyone)."""
        session = owner(request)
        return [manager.status(j.id, session) for j in manager.jobs_of(session)]

    @app.get("/api/jobs/{job_id}", response_model=JobStatus, tags=["jobs"], summary="A job's status and results",
             responses=errors(404))
    def job_status(job_id: str, request: Request):
        return manager.status(job_id, owner(request))

    @app.delete("/api/jobs/{job_id}", status_code=204, tags=["jobs"], summary="Cancel or delete a job",
                responses=errors(403, 404))
    def delete_job(job_id: str, request: Request):
        manager.cancel(job_id, owner(request))
        return Response(status_code=204)

    # ---- one image's outputs ---------------------------------------------------------------
    def _image(job_id: str, index: int, request: Request):
        job = manager.finished_job(job_id, owner(request))
        if not 0 <= index < len(job.results):
            raise NotFound(f"job '{job_id}' has {len(job.results)} image(s); no image {index}")
        return job, job.results[index]

    def _thr(job, threshold):
        return job.score_threshold if threshold is None else threshold

    THR = Query(None, ge=0, le=1, description="the threshold, of the job's `threshold_kind` (score or "
                                              "probability); default: the job's")
    JOB = PathParam(description="job id")
    IDX = PathParam(ge=0, description="image number in the job, from 0")

    @app.get("/api/jobs/{job_id}/images/{index}/image.png", tags=["outputs"], response_class=Response,
             summary="The image as shown (8-bit RGB)", responses={200: {"content": PNG}, **OUT_ERRORS})
    def out_image(request: Request, job_id: str = JOB, index: int = IDX):
        _, r = _image(job_id, index, request)
        return Response(r.display_png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/jobs/{job_id}/images/{index}/labels.tif", tags=["outputs"], response_class=Response,
             summary="Label TIFF at a threshold", responses={200: {"content": TIFF}, **OUT_ERRORS})
    def out_labels(request: Request, job_id: str = JOB, index: int = IDX, threshold: float | None = THR):
        """0 = background, 1..N the objects, numbered by descending score (uint16, uint32 past
        65,535), with the pixel size when known: the label TIFF of `morphoscope predict`."""
        job, r = _image(job_id, index, request)
        return Response(exports.labels_tiff(r, _thr(job, threshold), work_dir=manager.root / "exports"),
                        media_type="image/tiff",
                        headers={"Content-Disposition": content_disposition(f"{r.name}_labels.tif")})

    @app.get("/api/jobs/{job_id}/images/{index}/overlay.png", tags=["outputs"], response_class=Response,
             summary="Overlay PNG at a threshold", responses={200: {"content": PNG}, **OUT_ERRORS})
    def out_overlay(request: Request, job_id: str = JOB, index: int = IDX, threshold: float | None = THR,
                    classes: str | None = Query(None, description="comma-separated class names or numbers to show (default: all)"),
                    style: Literal["outline", "fill", "both"] = Query("outline")):
        job, r = _image(job_id, index, request)
        rgb = exports.overlay_rgb(r, _thr(job, threshold), classes=exports.parse_classes(classes, r.class_names),
                                  style=style)
        return Response(png_bytes(rgb), media_type="image/png",
                        headers={"Content-Disposition": content_disposition(f"{r.name}_overlay.png")})

    @app.get("/api/jobs/{job_id}/images/{index}/masks/{class_id}.png", tags=["outputs"], response_class=Response,
             summary="One class's binary mask (0/255)", responses={200: {"content": PNG}, **OUT_ERRORS})
    def out_mask(request: Request, job_id: str = JOB, index: int = IDX,
                 class_id: str = PathParam(description="class number (1..K) or name"), threshold: float | None = THR):
        job, r = _image(job_id, index, request)
        if r.kind != "objects":
            raise Conflict("this model classifies whole images; it gives no masks")
        wanted = exports.parse_classes(class_id, r.class_names)
        if not wanted or len(wanted) != 1:
            raise NotFound(f"'{class_id}' names no one class; classes: {', '.join(r.class_names)} "
                           f"(or 1..{len(r.class_names)})")
        k = next(iter(wanted))
        from morphoscope.engine.writer import safe_class_name

        return Response(exports.class_mask_png(r, k, _thr(job, threshold)), media_type="image/png",
                        headers={"Content-Disposition": content_disposition(
                            f"{r.name}_{safe_class_name(r.class_names[k - 1])}.png")})

    @app.get("/api/jobs/{job_id}/images/{index}/labels.bin", tags=["outputs"], response_class=Response,
             summary="Raw label image for the web app", responses={200: {"content": BINARY}, **OUT_ERRORS})
    def out_labels_bin(request: Request, job_id: str = JOB, index: int = IDX, threshold: float | None = Query(
                           None, ge=0, le=1, description="probability thresholds only: the threshold "
                           "(default: the job's); score thresholds: ignored")):
        """`threshold_kind` score: the label image of *every* object found (object k = the row of
        `objects` with label k), so that a client applies any score threshold itself: an object
        is shown when its score >= the threshold. `threshold_kind` probability: the labels at the
        threshold. Little-endian, row-major, gzip-encoded; the `X-Dtype`, `X-Height` and
        `X-Width` headers give its layout."""
        job, r = _image(job_id, index, request)
        if r.kind != "objects":
            raise Conflict("this model classifies whole images; it gives no label image")
        data, dtype = r.labels_gz(None if r.live_threshold else _thr(job, threshold))
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Encoding": "gzip", "X-Dtype": dtype, "X-Height": str(r.height),
                                 "X-Width": str(r.width), "Cache-Control": "no-cache"})

    @app.get("/api/jobs/{job_id}/images/{index}/objects", response_model=ObjectsDoc, tags=["measurements"],
             summary="Objects and their measurements, for the web app", responses={**OUT_ERRORS, **errors(410)})
    def out_objects(request: Request, job_id: str = JOB, index: int = IDX, threshold: float | None = Query(
                        None, ge=0, le=1, description="score thresholds: default *every* object (column `label` = "
                        "value in labels.bin); probability thresholds: the job's threshold"),
                    pixel_size: PXS = None):
        """One row per object. For score thresholds without `threshold` every object found is
        listed with its score, so that a client can filter by any threshold itself."""
        job, r = _image(job_id, index, request)
        loader = manager.plane_loader()
        if r.live_threshold and threshold is None:
            table, thr = r.base_table(loader, pixel_size), 0.0
        else:
            thr = _thr(job, threshold)
            table = r.measurements_at(thr, loader, pixel_size)
        return {**exports.table_records(table), "threshold": thr, "class_names": r.class_names, "task": r.task,
                "kind": r.kind, "threshold_kind": r.threshold_kind}

    @app.get("/api/jobs/{job_id}/images/{index}/measurements.csv", tags=["measurements"], response_class=Response,
             summary="One image's measurement table (CSV)",
             responses={200: {"content": {"text/csv": {}}}, **OUT_ERRORS, **errors(410)})
    def out_image_csv(request: Request, job_id: str = JOB, index: int = IDX, threshold: float | None = THR,
                      pixel_size: PXS = None):
        job, r = _image(job_id, index, request)
        table = r.measurements_at(_thr(job, threshold), manager.plane_loader(), pixel_size)
        return Response(exports.csv_bytes(table), media_type="text/csv",
                        headers={"Content-Disposition": content_disposition(f"{r.name}_measurements.csv")})

    # ---- a job's (or several jobs') outputs ------------------------------------------------
    def _items(job_ids: list[str], request: Request):
        session = owner(request)
        jobs_ = [manager.finished_job(j, session) for j in job_ids]
        exports.check_same_model(jobs_)
        return jobs_, exports.collect(jobs_)

    def _job_ids(jobs_param: str) -> list[str]:
        ids = list(dict.fromkeys(j for j in (s.strip() for s in jobs_param.split(",")) if j))
        if not ids:
            raise Invalid("no job ids given (?jobs=ID,ID,...)", loc=("query", "jobs"))
        return ids

    def _measurements(job_ids, threshold, pixel_size, format, request):
        jobs_, items = _items(job_ids, request)
        thr = _thr(jobs_[0], threshold)
        table = exports.measurements(items, thr, manager.plane_loader(), pixel_size)
        if format == "csv":
            return Response(exports.csv_bytes(table), media_type="text/csv",
                            headers={"Content-Disposition": content_disposition("measurements.csv")})
        return {**exports.table_records(table), "threshold": thr, "class_names": jobs_[0].class_names,
                "task": jobs_[0].task, "kind": jobs_[0].kind, "threshold_kind": jobs_[0].threshold_kind}

    def _report(job_ids, threshold, pixel_size, request):
        jobs_, items = _items(job_ids, request)
        text = exports.report_html(items, _thr(jobs_[0], threshold), manager.plane_loader(), pixel_size,
                                   work_dir=manager.root / "exports", scrub=manager.scrub)
        return HTMLResponse(text, headers={"Content-Disposition": content_disposition("report.html"),
                                           "Content-Security-Policy": REPORT_CSP})

    def _zip(job_ids, threshold, pixel_size, report, request):
        jobs_, items = _items(job_ids, request)
        path = exports.outputs_zip(items, _thr(jobs_[0], threshold), manager.plane_loader(), pixel_size,
                                   report=report, work_dir=manager.root / "exports", scrub=manager.scrub)
        return FileResponse(path, media_type="application/zip", filename="morphoscope-results.zip",
                            background=BackgroundTask(os.unlink, path))

    def _coco(job_ids, threshold, request):
        jobs_, items = _items(job_ids, request)
        data = exports.coco_predictions(items, _thr(jobs_[0], threshold))
        return JSONResponse(data, headers={"Content-Disposition": content_disposition("predictions.json")})

    FMT = Query("json", description="json (columns and rows) or csv")
    JOBS = Query(description="comma-separated job ids (of models whose results hold the same kind, threshold "
                             "kind and classes)")
    REPORT = Query(True, description="include report.html (it takes the longest to make)")
    EXPORT_ERRORS = {**OUT_ERRORS, **errors(410)}
    HTML_OK = {200: {"content": {"text/html": {}}}}

    @app.get("/api/jobs/{job_id}/measurements", response_model=ObjectsDoc, tags=["measurements"],
             summary="Measurements of all of a job's images",
             responses={200: {"content": {"text/csv": {}}}, **EXPORT_ERRORS})
    def job_measurements(request: Request, job_id: str = JOB, threshold: float | None = THR, pixel_size: PXS = None,
                         format: Literal["json", "csv"] = FMT):
        """One row per object (`kind` objects) or per image (`kind` classes); columns as
        `morphoscope predict --measure` writes them (docs/morphology.md)."""
        return _measurements([job_id], threshold, pixel_size, format, request)

    @app.get("/api/jobs/{job_id}/predictions.json", tags=["outputs"], summary="COCO results JSON (models that find objects)",
             responses=OUT_ERRORS)
    def job_coco(request: Request, job_id: str = JOB, threshold: float | None = THR):
        return _coco([job_id], threshold, request)

    @app.get("/api/jobs/{job_id}/report.html", tags=["outputs"], response_class=Response,
             summary="Self-contained HTML report", responses={**HTML_OK, **EXPORT_ERRORS})
    def job_report(request: Request, job_id: str = JOB, threshold: float | None = THR, pixel_size: PXS = None):
        return _report([job_id], threshold, pixel_size, request)

    @app.get("/api/jobs/{job_id}/outputs.zip", tags=["outputs"], response_class=Response,
             summary="All outputs in one ZIP", responses={200: {"content": {"application/zip": {}}}, **EXPORT_ERRORS})
    def job_zip(request: Request, job_id: str = JOB, threshold: float | None = THR, pixel_size: PXS = None,
                report: bool = REPORT):
        """The files of `morphoscope predict --measure` (labels, masks, overlays, predictions.json,
        measurements.csv) and report.html."""
        return _zip([job_id], threshold, pixel_size, report, request)

    @app.get("/api/results/measurements", response_model=ObjectsDoc, tags=["measurements"],
             summary="Measurements of several jobs together",
             responses={200: {"content": {"text/csv": {}}}, **EXPORT_ERRORS})
    def results_measurements(request: Request, jobs: str = JOBS, threshold: float | None = THR,
                             pixel_size: PXS = None, format: Literal["json", "csv"] = FMT):
        return _measurements(_job_ids(jobs), threshold, pixel_size, format, request)

    @app.get("/api/results/predictions.json", tags=["outputs"], summary="COCO results JSON of several jobs",
             responses=OUT_ERRORS)
    def results_coco(request: Request, jobs: str = JOBS, threshold: float | None = THR):
        return _coco(_job_ids(jobs), threshold, request)

    @app.get("/api/results/report.html", tags=["outputs"], response_class=Response,
             summary="HTML report of several jobs", responses={**HTML_OK, **EXPORT_ERRORS})
    def results_report(request: Request, jobs: str = JOBS, threshold: float | None = THR, pixel_size: PXS = None):
        return _report(_job_ids(jobs), threshold, pixel_size, request)

    @app.get("/api/results/outputs.zip", tags=["outputs"], response_class=Response,
             summary="All outputs of several jobs in one ZIP",
             responses={200: {"content": {"application/zip": {}}}, **EXPORT_ERRORS})
    def results_zip(request: Request, jobs: str = JOBS, threshold: float | None = THR, pixel_size: PXS = None,
                    report: bool = REPORT):
        return _zip(_job_ids(jobs), threshold, pixel_size, report, request)

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

    def meta(self):
        if self._meta is None:
            from morphoscope.web.jobs import read_layout

            lay = read_layout(self.path)  # the header only
            self._meta = {"height": lay.height, "width": lay.width, "dtype": lay.dtype, "_axes": lay.axes,
                          "_planes": lay.planes}
        return self._meta

    def preview(self) -> bytes:
        if self._preview is None:
            from PIL import Image

            from morphoscope.io.images import to_display_rgb
            from morphoscope.web.jobs import read_plane

            meta = self.meta()
            im = Image.fromarray(to_display_rgb(read_plane(self.path, meta["_axes"], meta["_planes"] // 2)))
            im.thumbnail((256, 256))
            self._preview = png_bytes(np.asarray(im))
        return self._preview

    def info(self) -> dict:
        meta = {k: v for k, v in self.meta().items() if not k.startswith("_")}
        return {"name": self.name, "file": self.path.name, "description": self.description, **meta,
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
# the committed OpenAPI document
# --------------------------------------------------------------------------------------------


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
