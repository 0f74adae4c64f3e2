"""The web app: a draw-a-digit page and a JSON API over the ONNX recognizer.

Routes: `/` (the page), `POST /api/predict` (a digit), `POST /api/read` (a number),
`POST /api/feedback` (a user's correction, into the feedback store), `GET /api/health`,
`GET /api/model`, `/docs`.
uvicorn runs it from web/server.py.
Bad input never gives a 500: every error is a 4xx with {"error": "..."}.
An upload's path: this module (request, answer) -> predict.Recognizer.read (the model) ->
preprocess (which decodes through images.py). Never imports TensorFlow.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from digit_recognizer import __version__
from digit_recognizer import feedback as fb
from digit_recognizer.errors import DigitsError, ImageError, ImageTooLargeError, NoDigitError
from digit_recognizer.images import MAX_PIXELS, grey_png, open_image
from digit_recognizer.model_store import LiveModel

STATIC = Path(__file__).parent / "static"
MAX_BYTES = 5 * 1024 * 1024  # largest upload we read (413 beyond)
DISCARD_BYTES = 64 * 1024 * 1024  # an oversized body is read and dropped up to this, see below
# Uploads up to this size (a canvas drawing is 3-10 KB) are read on the event loop: their
# few milliseconds of work cost less than a hand-off to the thread pool, which under load
# also has threads fight over the GIL (p99 at concurrency 8: 50-85 ms pooled, 33-41 inline).
# Larger ones (photos) go to the pool, so that decoding them does not hold up other clients.
INLINE_BYTES = 256 * 1024
FEEDBACK_BYTES = 64 * 1024  # a correction is ~2 KB: the view's PNG and a few numbers
FEEDBACK_FIELDS = ("client_id", "model_version", "predicted", "label", "probabilities", "view_png")

FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": list(FEEDBACK_FIELDS),
                    "properties": {
                        "client_id": {"type": "string", "description": "random, 8-64 chars"},
                        "model_version": {"type": "string"},
                        "predicted": {"type": "integer", "minimum": 0, "maximum": 9},
                        "label": {"type": "integer", "minimum": 0, "maximum": 9},
                        "probabilities": {"type": "array", "items": {"type": "number"}},
                        "view_png": {"type": "string", "description": "28x28 grey PNG, base64"},
                    },
                }
            }
        },
    }
}

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "description": "data: URL"}},
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class HTTPProblem(Exception):
    """An error answered as {"error": message} with a 4xx status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) past max_bytes without keeping it.

    A client that sends its body without waiting for `Expect: 100-continue` (Python's urllib
    and requests) only reads the answer once the body is sent: answered and closed early, it
    sees a connection reset, not the 413. So up to DISCARD_BYTES of an oversized body are read
    and dropped before answering; past that the connection is cut short."""
    too_large = HTTPProblem(413, f"request body over the {max_bytes:,}-byte limit")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > DISCARD_BYTES:
        raise too_large
    body, received = bytearray(), 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > DISCARD_BYTES:
            raise too_large
        if received <= max_bytes:
            body += chunk
    if received > max_bytes:
        raise too_large
    return bytes(body)


def media_type(request: Request) -> str:
    """The request's Content-Type without its parameters, lower case ('' if none)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPProblem(400, "body is not valid JSON") from None
    except RecursionError:  # `[[[[...` a thousand deep: the parser's stack runs out
        raise HTTPProblem(400, "body is JSON nested too deeply") from None


def decode_data_url(text: object) -> bytes:
    """'data:image/png;base64,....' (or bare base64) -> bytes."""
    if not isinstance(text, str) or not text:
        raise HTTPProblem(400, 'JSON body needs "image": a data: URL or base64 string')
    if text.startswith("data:") and "," not in text:
        raise HTTPProblem(400, "image is a data: URL without data (no comma)")
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPProblem(400, "image is not valid base64") from None


async def image_bytes(request: Request, max_bytes: int) -> bytes:
    """The uploaded image from a multipart form, a JSON data URL, or a raw image body."""
    content_type = media_type(request)
    if content_type not in ("multipart/form-data", "application/json") and not (
        content_type.startswith("image/") or content_type == "application/octet-stream"
    ):
        raise HTTPProblem(415, f"unsupported content type {content_type or '(none)'!r}")
    body = await read_limited(request, max_bytes)
    if not body:
        raise HTTPProblem(400, "empty request body")
    if content_type == "application/json":
        document = parse_json(body)
        data = decode_data_url(document.get("image") if isinstance(document, dict) else None)
    elif content_type == "multipart/form-data":

        async def replay() -> dict:  # the stream is spent: hand the parser the bytes we read
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
        except Exception as e:  # malformed multipart: missing boundary, bad framing, ...
            raise HTTPProblem(400, f"malformed multipart body ({e})") from None
        upload = form.get("image") or form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPProblem(400, 'multipart body needs a file field named "image"')
        data = await upload.read()
    else:
        data = body
    if not data:
        raise HTTPProblem(400, "empty image")
    return data


def correction_from(document: object, known_versions: set[str]) -> fb.Correction:
    """The correction a /api/feedback JSON body describes (422 naming a bad field)."""
    if not isinstance(document, dict):
        raise HTTPProblem(422, "body must be a JSON object")
    missing = [k for k in FEEDBACK_FIELDS if k not in document]
    if missing:
        raise HTTPProblem(422, f"missing field(s): {', '.join(missing)}")
    try:
        png = decode_data_url(document["view_png"])
        view = np.asarray(open_image(png, max_pixels=28 * 28).convert("L"))
    except (HTTPProblem, DigitsError) as e:
        message = e.message if isinstance(e, HTTPProblem) else str(e)
        raise HTTPProblem(422, f"view_png: {message}") from None
    if view.shape != (28, 28):
        raise HTTPProblem(422, f"view_png must be 28x28, got {view.shape[1]}x{view.shape[0]}")
    version = document["model_version"]
    if isinstance(version, str) and version not in known_versions:
        raise HTTPProblem(422, f"unknown model_version {version!r}: reload the page")
    correction = fb.Correction(
        client_id=document["client_id"],
        model_version=version,
        predicted=document["predicted"],
        label=document["label"],
        probabilities=document["probabilities"],
        view=view,
    )
    try:
        return fb.checked(correction)
    except fb.FeedbackError as e:
        raise HTTPProblem(422, str(e)) from None


def view_png(view: np.ndarray) -> str:
    """The 28x28 view as a base64 PNG, for the page to show what the model saw."""
    return base64.b64encode(grey_png(view)).decode("ascii")


def create_app(
    model: str | Path | None = None,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    db: str | None = None,
    feedback_rate: int = fb.RATE_LIMIT,
    store: str | Path | None = None,
) -> FastAPI:
    """The app, with one ONNX Runtime session shared by all requests. `model`: a fixed
    model; None serves the model store's current version (`store`, None: the default
    store), switching when a version is promoted or rolled back. `db`: the feedback store's
    URL (None: DIGITS_DB or the default SQLite file), opened on the first correction."""
    live = LiveModel(model, store)
    app = FastAPI(title="digit-recognizer", version=__version__)

    @app.exception_handler(HTTPProblem)
    async def problem(_request: Request, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def framework_problem(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own refusals (unknown path, method not allowed) in the same shape
        as ours, {"error": ...}, so that a client reads every error one way."""
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    def answer(data: bytes, read, extras=None) -> dict:
        """`read(data)`'s answer as a dict with the time reading took (not `extras`, added
        after); reading errors as 4xx."""
        start = time.perf_counter()
        try:
            result = read(data)
        except ImageTooLargeError as e:
            raise HTTPProblem(413, str(e)) from None
        except ImageError as e:
            raise HTTPProblem(400, str(e)) from None
        except NoDigitError as e:
            raise HTTPProblem(422, str(e)) from None
        body = {**result.as_dict(), "latency_ms": round(1000 * (time.perf_counter() - start), 3)}
        return {**body, **extras(result)} if extras else body

    @functools.cache
    def feedback_store() -> fb.FeedbackStore:
        return fb.open_store(db)

    def store_correction(correction: fb.Correction) -> int:
        return feedback_store().add(correction, rate_limit=feedback_rate)

    async def respond(request: Request, read, extras=None) -> JSONResponse:
        data = await image_bytes(request, max_bytes)
        if len(data) <= INLINE_BYTES:
            return JSONResponse(answer(data, read, extras))
        return JSONResponse(await run_in_threadpool(answer, data, read, extras))

    @app.post("/api/predict", openapi_extra=PREDICT_BODY)
    async def api_predict(request: Request) -> JSONResponse:
        """Read the digit in an image: multipart (field "image"), JSON data URL, or raw image."""
        recognizer = live.recognizer()  # this request's model, whatever is promoted meanwhile

        def read(data: bytes):
            return recognizer.read(data, max_pixels=max_pixels)

        def the_view(prediction) -> dict:
            return {"view_png": view_png(prediction.view), "model_version": recognizer.version}

        return await respond(request, read, the_view)

    @app.post("/api/read", openapi_extra=PREDICT_BODY)
    async def api_read(request: Request) -> JSONResponse:
        """Read a whole number (digits may touch): {number, confidence, digits: [{digit,
        confidence, box}]}; the same inputs and errors as /api/predict."""
        recognizer = live.recognizer()

        def read(data: bytes):
            return recognizer.read_number(data, max_pixels=max_pixels)

        return await respond(request, read)

    @app.post("/api/feedback", status_code=201, openapi_extra=FEEDBACK_BODY)
    async def api_feedback(request: Request) -> JSONResponse:
        """Store a user's verdict on an answer: the 28x28 view, the answer, its probabilities,
        the model version and the right label. Nothing else about the sender is kept."""
        if media_type(request) != "application/json":
            raise HTTPProblem(415, "send the correction as application/json")
        document = parse_json(await read_limited(request, FEEDBACK_BYTES))
        correction = correction_from(document, live.known_versions())
        try:
            row = await run_in_threadpool(store_correction, correction)
        except fb.RateLimitedError as e:
            raise HTTPProblem(429, str(e)) from None
        except DigitsError as e:  # the database is down or refused: try again later
            raise HTTPProblem(503, str(e)) from None
        return JSONResponse({"id": row, "agreed": correction.predicted == correction.label}, 201)

    @app.get("/api/health")
    def health() -> dict:
        recognizer = live.recognizer()
        return {
            "status": "ok",
            "version": __version__,
            "model": recognizer.model_path.name,
            "model_version": recognizer.version,
        }

    @app.get("/api/model")
    def model_card() -> dict:
        recognizer = live.recognizer()
        card = recognizer.card or {"model_file": recognizer.model_path.name}
        return {**card, "model_version": recognizer.version, "store_version": live.store_version}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes, which cannot be handed arguments: the model
    comes from DIGITS_MODEL (unset: the model store's current version, the store from
    DIGITS_MODEL_STORE), the feedback store from DIGITS_DB, the per-client limit from
    DIGITS_FEEDBACK_RATE."""
    rate = os.environ.get("DIGITS_FEEDBACK_RATE")
    return create_app(
        os.environ.get("DIGITS_MODEL") or None,
        db=os.environ.get("DIGITS_DB") or None,
        feedback_rate=int(rate) if rate else fb.RATE_LIMIT,
    )
