"""PostgreSQL, the record: a pooled asyncpg connection factory and start-up migrations.

:class:`Database` hands out pooled connections and transactions. Any failure to reach the
server (refused, reset, shut down, timed out) leaves it as
:class:`~feedchat_runtime.errors.Unavailable` with reason ``DATABASE_UNAVAILABLE``, so a
caller answers UNAVAILABLE with a clear message and retries later; a transaction that
fails that way is rolled back by the server, so nothing is half-written. A pool replaces
broken connections on the next acquire, so a restarted server is picked up unaided.

Each service keeps its schema as numbered SQL files in its own ``migrations`` package
folder (``001_users.sql``, ``002_...``). :func:`migrate` applies the missing ones at
start-up, each in its own transaction, under one PostgreSQL advisory lock: several
instances starting at once wait for each other and each migration runs exactly once.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from feedchat_runtime.errors import Unavailable

logger = logging.getLogger(__name__)

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or command time-out
    asyncpg.PostgresConnectionError,  # the connection broke (08xxx)
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
"""Exceptions that mean "the database cannot be reached now", not "the query is wrong"."""

MIGRATION_LOCK = 0x66656564_63686174  # "feedchat": one advisory lock for every migration

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS feedchat_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def unavailable(exc: BaseException) -> Unavailable:
    """The UNAVAILABLE error a caller sees for a database it cannot reach."""
    logger.warning("database unavailable: %s", exc)
    return Unavailable("the database is unavailable; retry shortly", reason="DATABASE_UNAVAILABLE")


class Database:
    """A pool of asyncpg connections to one PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, max_size: int = 10, timeout: float = 5.0) -> Database:
        """A pool for ``url`` with one connection open (so a bad URL fails at start-up).

        ``timeout`` bounds connecting and every statement; a statement slower than that
        fails as UNAVAILABLE instead of holding an RPC forever.
        """
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=max_size,
                timeout=timeout,
                command_timeout=timeout,
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(
                f"cannot reach PostgreSQL at {redact(url)}: {exc}",
                reason="DATABASE_UNAVAILABLE",
            ) from exc
        assert pool is not None
        return cls(pool)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; connection failures become UNAVAILABLE."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside one transaction: committed on exit, rolled back on error."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connection() as conn:
            status: str = await conn.execute(query, *args)
            return status

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def ping(self) -> bool:
        """True when the server answers a trivial query (the health check)."""
        try:
            return bool(await self.fetchval("SELECT 1") == 1)
        except Unavailable:
            return False

    async def close(self) -> None:
        await self._pool.close()


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


@dataclass(frozen=True)
class Migration:
    """One schema change: ``NNN_name.sql`` in a service's migrations folder."""

    version: int
    name: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    """The migrations of ``package`` (its ``migrations`` folder), in version order.

    Versions must run 1, 2, 3, ... without gaps, so a missing file is noticed here and
    not as a mysterious schema later.
    """
    folder = importlib.resources.files(package) / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{package} migrations are not numbered 1..n: {versions}")
    return found


async def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations of ``component`` that this database lacks; their versions.

    Holds the advisory lock for the whole run (released with the connection if this process
    dies), so concurrent starters apply each migration once and see the finished schema.
    """
    applied_now: list[int] = []
    async with db.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(MIGRATIONS_TABLE)
            rows = await conn.fetch(
                "SELECT version FROM feedchat_migrations WHERE component = $1", component
            )
            done = {row["version"] for row in rows}
            for migration in migrations:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO feedchat_migrations (component, version, name) "
                        "VALUES ($1, $2, $3)",
                        component,
                        migration.version,
                        migration.name,
                    )
                applied_now.append(migration.version)
                logger.info(
                    "applied migration %s/%03d_%s", component, migration.version, migration.name
                )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now


async def open_database(url: str, component: str, package: str, max_size: int) -> Database:
    """Connect and bring ``component``'s schema up to date: what a service does at start."""
    db = await Database.connect(url, max_size=max_size)
    try:
        await migrate(db, component, load_migrations(package))
    except BaseException:
        await db.close()
        raise
    return db
