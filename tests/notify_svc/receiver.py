"""A real, minimal HTTP/1.1 webhook receiver on 127.0.0.1 for the tests.

Each request is recorded; ``plan`` decides the answer to the n-th request: a status
code, or ``STALL`` to hold the request open without ever answering (until the client
goes away). Requests after the plan runs out are answered with ``default``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

STALL = -1


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # None: never answered (stalled)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    plan: list[int] = field(default_factory=list)
    default: int = 200
    delay: float = 0.0  # seconds to wait before answering
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def delivered(self) -> list[Received]:
        """Requests answered with a 2xx."""
        return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            received = Received(method, path, headers, body)
            self.requests.append(received)
            status = self.plan.pop(0) if self.plan else self.default
            if status == STALL:
                await reader.read()  # until the client disconnects (or it is killed)
                return
            if self.delay:
                await asyncio.sleep(self.delay)  # a slow receiver, not a test wait
            received.status = status
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
