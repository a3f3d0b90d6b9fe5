"""Run the service under uvicorn in a background thread (demo, tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

__all__ = ["RunningServer", "http_protocol", "start_in_thread"]


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_protocol() -> dict[str, Any]:
    """uvicorn's ``http`` setting of the service: the httptools protocol writing each response's
    head and body in one send (:mod:`veritee.service.http_protocol`) when httptools is installed
    (uvicorn's own choice then); else nothing (uvicorn's default)."""
    import importlib.util

    if importlib.util.find_spec("httptools") is None:
        return {}
    from veritee.service.http_protocol import PROTOCOL

    return {"http": PROTOCOL}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def start_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, **config: Any
) -> RunningServer:
    """Start ``app`` and wait until it accepts connections."""
    port = port or _free_port(host)
    config = {**http_protocol(), **config}  # as ``veritee serve`` runs it
    cfg = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, **config)
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, name="veritee-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.01)
    scheme = "https" if config.get("ssl_certfile") or config.get("ssl_context_factory") else "http"
    return RunningServer(server, thread, host, port, scheme)
