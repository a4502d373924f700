"""A chat server (``python -m chat_svc``) as a separate local process, for tests and benches
that need real processes (kills, CPU per process)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from feedchat_local.embedded import EmbeddedServer, free_port


def chat_process(
    tmp: Path,
    name: str,
    *,
    etcd: str,
    prefix: str,
    redis_url: str,
    postgres_url: str,
    port: int = 0,
    lease_ttl: int = 2,
    send_rate: int = 1000,
    options: Sequence[str] = (),
    python_options: Sequence[str] = (),
) -> EmbeddedServer:
    """Chat server ``name`` in dev mode (dev tokens), logging text to ``tmp/<name>.log``.

    ``port``: reuse an address (after a kill); ``send_rate``: the per-user rate limit and
    burst; ``options``: more chat_svc flags; ``python_options``: for the interpreter
    (e.g. ``-m cProfile -o FILE``)."""
    port = port or free_port()
    argv = [
        sys.executable,
        *python_options,
        "-m",
        "chat_svc",
        "--port",
        str(port),
        "--instance",
        name,
        "--etcd",
        etcd,
        "--etcd-prefix",
        prefix,
        "--redis-url",
        redis_url,
        "--dev",
        "--postgres-url",
        postgres_url,
        "--lease-ttl",
        str(lease_ttl),
        "--log-format",
        "text",
        "--send-rate",
        str(send_rate),
        "--send-burst",
        str(send_rate),
        *options,
    ]
    return EmbeddedServer(name, "127.0.0.1", port, tmp / name, argv, tmp / f"{name}.log")
