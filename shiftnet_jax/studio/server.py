"""The studio's HTTP side: a Starlette app serving the page and the JSON/PNG API.

    GET  /             the page (static/index.html)
    GET  /local        the local mode (static/local.html): the ONNX model runs in the
                       browser (built by python -m shiftnet_jax.studio.build_local)
    GET  /api/health   models, working sizes, limits
    GET  /api/local/NAME  the local mode's model NAME: working size, and why it is stale if it is
    POST /api/inpaint  multipart image, mask [, model, dilate, strategy] -> image/png
    POST /api/flow     the same fields -> JSON: per window, the shift's source of every hole position

Every refusal is a 4xx with ``{"error": "one line"}``; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from shiftnet_jax.errors import first_line
from shiftnet_jax.studio import guard, local_models
from shiftnet_jax.studio import engine as eng
from shiftnet_jax.studio.engine import BadInput, Engine, TooLarge

STATIC = Path(__file__).resolve().parent / "static"
MAX_DILATE = 256
log = logging.getLogger("shiftnet_jax.studio")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _mb(n: int) -> str:
    return f"{n / 2**20:.3g} MB"


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, whether
    the client announces the length or streams it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        limit = f"the upload limit is {_mb(self.max_bytes)}"
        if length.isdigit() and int(length) > self.max_bytes:
            response = _error(413, f"request body is {_mb(int(length))}; {limit}")
            return await response(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised inside the endpoint, answered as 413 there
                raise TooLarge(f"request body over {_mb(self.max_bytes)}; {limit}")
            return message

        await self.app(scope, limited, send)


async def _fields(request: Request, engine: Engine):
    """The multipart fields of an inpaint/flow request, decoded and checked."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadInput("send multipart/form-data with the fields image and mask")
    async with request.form(max_files=4, max_fields=8) as form:
        blobs = {}
        for name in ("image", "mask"):
            part = form.get(name)
            if part is None:
                raise BadInput(f"missing field {name!r} (send multipart/form-data with image and mask)")
            if not isinstance(part, UploadFile):
                raise BadInput(f"field {name!r} must be a file upload")
            blobs[name] = await part.read()
        text = {}
        for name in ("model", "dilate", "strategy"):
            value = form.get(name)
            if isinstance(value, UploadFile):
                raise BadInput(f"field {name!r} must be text, not a file")
            text[name] = (value or "").strip()
        model = engine.model(text["model"] or None)
        dilate = text["dilate"] or "0"
        strategy = text["strategy"] or eng.framing.DEFAULT_STRATEGY
    if not (dilate.isascii() and dilate.isdigit()) or int(dilate) > MAX_DILATE:  # not "١٢"
        raise BadInput(f"dilate must be a whole number of pixels from 0 to {MAX_DILATE} (digits 0-9), "
                       f"got {ascii(dilate)[:40]}")
    if strategy not in eng.framing.STRATEGIES:
        raise BadInput(f"strategy must be one of {', '.join(eng.framing.STRATEGIES)}, got {ascii(strategy[:40])}")
    # Decoding is CPU work: off the event loop, but not on the device thread.
    image = await run_in_threadpool(eng.decode_image, blobs["image"], engine.max_pixels)
    mask = await run_in_threadpool(eng.decode_mask, blobs["mask"], image.shape[:2], engine.max_pixels)
    return model, image, mask, int(dilate), strategy


def _guard(endpoint):
    """Answer an unexpected failure with a one-line 500 (and one log line), not a traceback."""

    async def guarded(request):
        try:
            return await endpoint(request)
        except (BadInput, HTTPException):
            raise
        except Exception as e:  # noqa: BLE001 - the server must keep serving
            what = f"{type(e).__name__}: {first_line(e)}"
            log.error("error: %s %s: %s", request.method, request.url.path, what)
            return _error(500, f"inpainting failed on the server ({what})")

    return guarded


@contextlib.asynccontextmanager
async def _while_connected(request: Request):
    """A threading.Event set when the client goes away; the device thread skips queued work
    whose client is gone (it is checked just before the forward starts)."""
    gone = threading.Event()

    async def watch():
        while not gone.is_set():
            if await request.is_disconnected():
                gone.set()
                log.info("client of %s went away: its work is dropped", request.url.path)
                return
            await asyncio.sleep(0.2)

    task = asyncio.create_task(watch())
    try:
        yield gone
    finally:
        task.cancel()


def create_app(engine: Engine, hosts=guard.LOOPBACK_NAMES) -> Starlette:
    """The studio as an ASGI app (``engine`` holds the models and the limits); it answers
    requests whose Host (and Origin, for POSTs) is one of ``hosts`` (see ``guard``)."""

    async def index(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def local(request):
        return FileResponse(STATIC / "local.html", headers={"Cache-Control": "no-cache"})

    async def health(request):
        return JSONResponse(engine.health())

    async def local_model(request):
        """The local mode's model NAME: its working size and, if any, why it is not the
        model it was built from (one line; the page shows it)."""
        name = request.path_params["name"]
        if not local_models.is_name(name):
            return _error(400, "not a model name: letters, digits, '_', '.', '-'")
        return JSONResponse(await run_in_threadpool(local_models.describe, name))

    @_guard
    async def inpaint(request):
        model, image, mask, dilate, strategy = await _fields(request, engine)
        async with _while_connected(request) as gone:
            out = await engine.inpaint(model, image, mask, dilate, strategy, gone=gone)
        if out is None:  # the client went away: nobody reads an answer
            return Response(status_code=499)
        png = await run_in_threadpool(eng.encode_png, out)
        return Response(png, media_type="image/png",
                        headers={"X-Model": model.name, "Cache-Control": "no-store"})

    @_guard
    async def flow(request):
        model, image, mask, dilate, strategy = await _fields(request, engine)
        async with _while_connected(request) as gone:
            body = await engine.flow(model, image, mask, dilate, strategy, gone=gone)
        if body is None:
            return Response(status_code=499)
        body["model"] = model.name
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    async def bad_input(request, exc: BadInput):
        return _error(exc.status, str(exc))

    async def http_error(request, exc: HTTPException):
        return _error(exc.status_code, first_line(str(exc.detail)) if exc.detail else "error")

    routes = [
        Route("/", index),
        Route("/local", local),
        Route("/api/health", health),
        Route("/api/local/{name}", local_model),
        Route("/api/inpaint", inpaint, methods=["POST"]),
        Route("/api/flow", flow, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        BadInput: bad_input, HTTPException: http_error})
    app.state.engine = engine
    return guard.HostGuard(BodyLimit(app, engine.max_bytes), hosts)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; raises OSError with a one-line reason (port in use, bad host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def make_server(app, sock: socket.socket, *, access_log: bool = False):
    """A uvicorn Server for ``app`` on an already bound socket (``server.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="info" if access_log else "warning",
                            access_log=access_log, timeout_graceful_shutdown=5,
                            http=guard.HeaderTimeoutH11, timeout_keep_alive=5,
                            limit_concurrency=guard.MAX_CONNECTIONS)
    return uvicorn.Server(config)
