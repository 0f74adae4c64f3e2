"""The web server under a bounded load: start `digits serve`, post the page's own request
from keep-alive clients on 127.0.0.1, and record latency percentiles and errors. Every
request loop is bounded in count and stops by itself."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time

from digit_recognizer.bench.machine import percentiles
from digit_recognizer.errors import DigitsError

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    port: int, workers: int, options: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, float]:
    """Start `digits serve` (with more `options`, e.g. --db URL); returns the process and
    seconds until /api/health answered."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "digit_recognizer", "serve", "--port", str(port), "--workers", str(workers),
         *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    while time.perf_counter() - start < 30:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise DigitsError(f"digits serve did not answer within 30 s: {process.stderr.read()[-500:]}")


def _connect(port: int) -> tuple[socket.socket, io.BufferedReader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, sock.makefile("rb")


def _exchange(sock: socket.socket, reader: io.BufferedReader, message: bytes) -> int:
    """Send one prebuilt HTTP/1.1 request; read the response (status line, headers, a body
    of Content-Length bytes) and return its status code."""
    sock.sendall(message)
    status = int(reader.readline().split()[1])
    length = None
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None or len(reader.read(length)) != length:
        raise OSError("response cut short or without Content-Length")
    return status


def load(
    port: int, body: bytes, requests: int, concurrency: int, content_type: str = "image/png"
) -> dict:
    """POST /api/predict `requests` times from `concurrency` keep-alive clients, then stop.

    The clients draw from one shared count (as `ab -n requests -c concurrency` does), so the
    server sees `concurrency` requests in flight until the last few. With a fixed share per
    client, the clients on a less busy server worker finished early and the rest of the run
    measured fewer clients than it claimed. They send prebuilt request bytes over plain
    sockets: http.client parses every response's headers with the email package, 0.28-0.57
    ms of CPU per request against 0.11-0.19 ms here, taken from the server under test."""
    latencies: list[float] = []
    errors = [0]
    remaining = [requests]
    lock = threading.Lock()
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    message = head.encode("ascii") + body

    def take_one() -> bool:
        with lock:
            remaining[0] -= 1
            return remaining[0] >= 0

    def client() -> None:
        connection = None
        while take_one():
            start = time.perf_counter()
            try:
                connection = connection or _connect(port)
                ok = _exchange(*connection, message) == 200
            except (OSError, ValueError, IndexError):  # refused, reset, timed out, garbled
                ok = False
                if connection:
                    connection[0].close()
                connection = None
            with lock:
                latencies.append(time.perf_counter() - start)
                errors[0] += not ok
        if connection:
            connection[0].close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": errors[0],
        "requests_per_s": requests / elapsed,
        **percentiles(latencies),
    }


def canvas_png() -> bytes:
    """A 280x280 PNG of a 7 drawn as on the page: a black stroke 18 px wide on white, RGBA
    and opaque, compressed as a browser's canvas.toDataURL() gives it. Chromium writes RGBA
    at zlib level 1 (tests/test_browser.py checks both): 3-5 KB that inflate in 0.1-0.2 ms,
    where Pillow's default level 6 packs the long runs of white into 1.5 KB that take 0.5."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (280, 280), "white")
    ImageDraw.Draw(image).line(
        [(60, 50), (220, 50), (120, 240)], fill="black", width=18, joint="curve"
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def number_canvas_png() -> bytes:
    """An 840x280 PNG of "4710" drawn as on the page in number mode (the 1 touching the 0),
    RGBA at zlib level 1 as Chromium sends it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (840, 280), "white")
    draw = ImageDraw.Draw(image)
    strokes = [
        [(152, 250), (152, 34), (62, 180), (196, 180)],  # 4
        [(250, 40), (370, 40), (300, 250)],  # 7
        [(454, 30), (454, 250)],  # 1
    ]
    for stroke in strokes:
        draw.line(stroke, fill="black", width=18, joint="curve")
    draw.ellipse([(470, 30), (610, 252)], outline="black", width=18)  # 0, touching the 1
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def page_request_body() -> bytes:
    """The JSON body the page posts: {"image": "data:image/png;base64,..."}."""
    data_url = "data:image/png;base64," + base64.b64encode(canvas_png()).decode("ascii")
    return json.dumps({"image": data_url}).encode("ascii")


def server(requests: int, concurrency: tuple[int, ...], workers: int) -> dict:
    port = free_port()
    process, ready_s = start_server(port, workers)
    try:
        body = page_request_body()
        load(port, body, 50, 4, "application/json")  # warm-up
        levels = [load(port, body, requests, c, "application/json") for c in concurrency]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/api/health")
        healthy = connection.getresponse().status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    return {"ready_s": ready_s, "workers": workers, "levels": levels, "healthy_after": healthy}
