"""Run the web app with uvicorn. Imports neither FastAPI nor the app: with several workers,
this process only supervises, and each worker imports the app itself (`app_from_env`);
importing FastAPI here too would delay the first answer by about 0.5 s."""

from __future__ import annotations

import contextlib
import socket


def run_server(host: str, port: int, workers: int = 1, log_level: str = "warning") -> None:
    """Serve with uvicorn; several workers share one listening socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # httptools parses HTTP in C (the page's request 0.38 ms quicker than with h11). The loop
    # stays asyncio's even where uvloop is installed: uvloop let some connections starve at
    # concurrency 32 (p99 345-562 ms against 75-138; docs/decisions.md, "HTTP stack").
    config = uvicorn.Config(
        "digit_recognizer.web.app:app_from_env", factory=True, host=host, port=port,
        workers=workers, log_level=log_level, http="httptools", loop="asyncio",
    )  # fmt: skip
    if workers == 1:
        uvicorn.Server(config).run()
        return
    # uvicorn binds its multi-worker socket with protocol 0, and asyncio turns Nagle off
    # (TCP_NODELAY) only on sockets whose protocol is IPPROTO_TCP: each response would then
    # wait ~40 ms for a delayed ACK (measured: 48 ms p50 instead of 4 ms). Bind it ourselves.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()
