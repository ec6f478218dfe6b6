"""A minimal HTTP/1.1 load generator over keep-alive loopback connections.

The client has to be cheap: it shares two cores with the server under test, and a heavy client
(httpx, locust) would cap the bare baseline sooner than the service and flatter the ratio. So
requests are pre-built bytes, and a response is read by its Content-Length, nothing more.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field


def request_bytes(method: str, path: str, headers: dict[str, str], body: dict | None) -> bytes:
    """One complete HTTP/1.1 request, ready to write on a keep-alive connection."""
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive",
             f"Content-Length: {len(payload)}"]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Connection:
    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.port, self.reader, self.writer = port, reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(port, *await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Write one request and read its response: (status, body). A connection the server
        closed while it sat idle (uvicorn's keep-alive timeout) is opened again first."""
        if self.reader.at_eof():
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


@dataclass
class Outcome:
    """Latencies (s) of the successful requests, over `elapsed` seconds of load."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    @classmethod
    def merged(cls, outcomes: list[Outcome], side_by_side: bool = False) -> Outcome:
        """Several rounds of the same load as one; or, `side_by_side`, loads run at the same
        time (their time is then the longest one's, not the sum)."""
        elapsed = [o.elapsed for o in outcomes]
        total = cls(elapsed=max(elapsed) if side_by_side else sum(elapsed))
        for o in outcomes:
            total.latencies += o.latencies
            for status, n in o.errors.items():
                total.errors[status] = total.errors.get(status, 0) + n
        return total

    def record(self, status: int, latency: float) -> None:
        if 200 <= status < 300:
            self.latencies.append(latency)
        else:
            self.errors[status] = self.errors.get(status, 0) + 1


def closed_loop(port: int, requests: list[bytes], connections: int, seconds: float,
                warmup: float = 1.0) -> Outcome:
    """Each of `connections` sends the next request as soon as the last one is answered, for
    `warmup` (not counted) and then `seconds` seconds; requests are taken round-robin."""

    async def run() -> Outcome:
        outcome = Outcome()
        conns = [await Connection.open(port) for _ in range(connections)]
        counter = iter(range(1 << 62))
        begin = time.perf_counter()
        measure_from, stop_at = begin + warmup, begin + warmup + seconds

        async def drive(conn: Connection) -> None:
            while (now := time.perf_counter()) < stop_at:
                status, _ = await conn.send(requests[next(counter) % len(requests)])
                if now >= measure_from:
                    outcome.record(status, time.perf_counter() - now)

        await asyncio.gather(*(drive(c) for c in conns))
        outcome.elapsed = time.perf_counter() - measure_from
        for c in conns:
            c.close()
        return outcome

    return asyncio.run(run())


@dataclass
class Sent:
    """One open-loop request: when it was due, when its answer came, what it said."""

    due: float  # time.monotonic() at which the pacer scheduled it
    done: float
    status: int
    body: bytes


def open_loop(port: int, requests: list[bytes], rate: float, seconds: float,
              connections: int = 32) -> tuple[list[Sent], float]:
    """Send at a steady `rate` per second whatever the answers do (no coordinated omission:
    a request waiting for a free connection is still timed from when it was due). Returns
    every request and the seconds the sending took."""

    async def run() -> tuple[list[Sent], float]:
        pool: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await Connection.open(port))
        sent: list[Sent] = []

        async def one(request: bytes, due: float) -> None:
            conn = await pool.get()
            status, body = await conn.send(request)
            sent.append(Sent(due, time.monotonic(), status, body))
            pool.put_nowait(conn)

        total = int(rate * seconds)
        start = time.monotonic()
        tasks = []
        for i in range(total):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(requests[i % len(requests)], due)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        while not pool.empty():
            pool.get_nowait().close()
        return sent, elapsed

    return asyncio.run(run())
