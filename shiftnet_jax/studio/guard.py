"""The studio as a local service: who may talk to it, and for how long.

* :class:`HostGuard` (ASGI): a request whose ``Host`` is not a name the studio
  answers to (the address it listens on, ``localhost``, or ``--allow-host``) is
  refused with 403, so a web page on another site cannot reach it through DNS
  rebinding; a state-changing request (POST...) whose ``Origin`` names another
  host is refused too (a plain multipart POST needs no CORS preflight). The
  same rule as Jupyter's and Gradio's.
* Request bodies must keep arriving: at most :data:`BODY_IDLE_SECONDS` between
  two chunks and :data:`BODY_SECONDS` in all (408 otherwise).
* :class:`HeaderTimeoutH11`: uvicorn's HTTP/1.1 protocol, closing a connection
  whose request line and headers are not complete :data:`HEADER_SECONDS` after
  it opened (or after its previous response); with ``limit_concurrency`` on the
  server, half-sent requests cannot hold every descriptor.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from uvicorn.protocols.http.h11_impl import H11Protocol

from shiftnet_jax.studio.uploads import BadInput

HEADER_SECONDS = 10.0
BODY_IDLE_SECONDS = 15.0
BODY_SECONDS = 120.0
MAX_CONNECTIONS = 64
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TimedOut(BadInput):
    status = 408


def hostname(value: str) -> str:
    """``host[:port]`` or ``[v6]:port`` -> the host, lower case ('' when unparsable)."""
    try:
        return (urlsplit(f"//{value.strip()}").hostname or "").lower()
    except ValueError:
        return ""


class HostGuard:
    """ASGI middleware: Host and Origin checks, and body timeouts (see the module docstring).
    ``hosts``: the names allowed (``"*"`` among them allows every Host and Origin)."""

    def __init__(self, app, hosts, body_idle: float = BODY_IDLE_SECONDS, body_total: float = BODY_SECONDS):
        self.app, self.body_idle, self.body_total = app, body_idle, body_total
        self.hosts = {h.lower().strip("[]") for h in hosts}

    def allowed(self, name: str) -> bool:
        return "*" in self.hosts or name in self.hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = hostname(headers.get("host", ""))
        problem = None
        if not self.allowed(host):
            problem = (f"Host {json.dumps(host or headers.get('host', ''))[:80]} is not this studio's "
                       "address; start it with --allow-host NAME to answer to that name")
        elif scope["method"] not in _SAFE_METHODS and "origin" in headers:
            origin = headers["origin"]
            if origin == "null" or not self.allowed(hostname(urlsplit(origin).netloc)):
                problem = f"requests from the page at {json.dumps(origin)[:80]} are not accepted"
        if problem:
            body = json.dumps({"error": problem}).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_total

        async def timed():
            left = min(self.body_idle, deadline - loop.time())
            try:
                return await asyncio.wait_for(receive(), max(left, 0.001))
            except asyncio.TimeoutError:
                raise TimedOut(f"the request body did not arrive in time (at most {self.body_idle:g} s "
                               f"between parts, {self.body_total:g} s in all)") from None

        await self.app(scope, timed, send)


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's line and headers."""

    header_seconds = HEADER_SECONDS

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self):
        super().on_response_complete()
        self._arm()

    def _arm(self):
        waiting_for = self.cycle  # a new request replaces the cycle once its headers are in
        self.loop.call_later(self.header_seconds, self._expire, waiting_for)

    def _expire(self, waiting_for):
        if self.cycle is waiting_for and not self.transport.is_closing():
            self.transport.close()
