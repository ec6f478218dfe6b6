"""A real HTTP webhook receiver on loopback for tests: records requests, answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.monotonic() on arrival

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """`respond(n)` gives (status, headers) for the n-th request (0-based); default 200."""

    def __init__(self, respond: Callable[[int], tuple[int, dict]] | None = None,
                 delay: float = 0.0, port: int = 0):
        self.requests: list[Received] = []
        self.respond = respond or (lambda n: (200, {}))
        self.delay = delay
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer._lock:
                    n = len(outer.requests)
                    outer.requests.append(Received(self.path, dict(self.headers), body,
                                                   time.monotonic()))
                if outer.delay:
                    time.sleep(outer.delay)
                status, headers = outer.respond(n)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["webhook-id"] for r in self.requests]
