"""The studio as a local service, over real loopback sockets (127.0.0.1 only): Host and Origin
checks, ASCII digits, no paths in answers, half-sent requests closed, a connection limit."""

import socket
import time

import httpx
import numpy as np
import pytest
from studio_util import crops, png, rect_mask, running_server, tiny_checkpoint

from shiftnet_jax.studio import engine as eng
from shiftnet_jax.studio import guard, server


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    models = eng.load_models([tiny_checkpoint(tmp_path_factory.mktemp("guard") / "tiny")])
    old = guard.HeaderTimeoutH11.header_seconds
    guard.HeaderTimeoutH11.header_seconds = 1.0  # short, to test it in seconds
    try:
        with running_server(server.create_app(eng.Engine(models))) as base:
            yield base
    finally:
        guard.HeaderTimeoutH11.header_seconds = old


def _upload():
    image = crops(1)[0]
    return {"image": ("i.png", png(image)), "mask": ("m.png", png(rect_mask(120, 160, 10, 10, 50, 50).astype(np.uint8) * 255))}


def test_foreign_host_and_origin_are_refused(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/api/health").status_code == 200
        r = http.get("/api/health", headers={"Host": "attacker.example:8000"})  # DNS rebinding
        assert r.status_code == 403 and "--allow-host" in r.json()["error"]
        r = http.post("/api/inpaint", files=_upload(), headers={"Origin": "https://attacker.example"})
        assert r.status_code == 403 and "attacker.example" in r.json()["error"]
        r = http.post("/api/inpaint", files=_upload(), headers={"Origin": "null"})
        assert r.status_code == 403
        own = http.post("/api/inpaint", files=_upload(), headers={"Origin": url})
        assert own.status_code == 200 and own.headers["content-type"] == "image/png"


def test_answers_hold_no_paths_and_digits_are_ascii(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        health = http.get("/api/health").json()
        assert all("/" not in m["checkpoint"] for m in health["models"]), health
        r = http.post("/api/inpaint", files=_upload(), data={"dilate": "\u0661\u0662"})  # Arabic-Indic 12
        assert r.status_code == 400 and "digits 0-9" in r.json()["error"]


def test_half_sent_requests_are_closed_and_health_still_answers(url):
    port = int(url.rsplit(":", 1)[1])
    held = []
    for _ in range(40):  # more than a few, fewer than the connection limit
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /api/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        held.append(s)
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/api/health").status_code == 200
    closed = 0
    for s in held:
        s.settimeout(5)
        try:
            closed += s.recv(1) == b""  # the server closed it after the header deadline
        except (TimeoutError, ConnectionResetError):
            closed += 0
        s.close()
    assert closed == len(held) and time.monotonic() - start < 8, (closed, time.monotonic() - start)


def test_connection_limit_answers_503_beyond_it(url):
    port = int(url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(guard.MAX_CONNECTIONS + 4)]
    try:
        for s in held:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0")   # incomplete: held until the deadline
        time.sleep(0.3)
        with httpx.Client(base_url=url, timeout=10) as http:
            status = http.get("/api/health").status_code
        assert status == 503  # refused at once, not hung; served again once those close
    finally:
        for s in held:
            s.close()
    time.sleep(1.5)
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/api/health").status_code == 200


def test_work_of_a_client_that_went_away_is_dropped():
    import asyncio
    import threading

    calls = []
    studio = eng.Engine([object()])  # only the device queue is used here
    gone = threading.Event()
    gone.set()
    assert asyncio.run(studio.on_device(calls.append, 1, gone=gone)) is None and calls == []
    asyncio.run(studio.on_device(calls.append, 2, gone=threading.Event()))
    assert calls == [2]
    studio.close()
