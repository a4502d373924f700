"""The PostgreSQL piece: migrations from an empty schema (once, even when several
processes start together), UNAVAILABLE while the server is gone, recovery on its return."""

from __future__ import annotations

import asyncio

import pytest

from feedchat_local.embedded import EmbeddedServer, free_port, postgres_url
from feedchat_runtime.errors import Unavailable
from feedchat_runtime.postgres import Database, load_migrations, migrate, open_database
from tests.waiting import wait_until

DEMO = "tests.feedchat_runtime.pgdemo"


async def test_migrations_build_the_schema_from_an_empty_database(database_url: str) -> None:
    db = await open_database(database_url, "demo", DEMO, max_size=2)
    try:
        await db.execute("INSERT INTO notes (note_id, body, author) VALUES (1, 'hi', 'ann')")
        assert await db.fetchval("SELECT author FROM notes WHERE note_id = 1") == "ann"
        rows = await db.fetch("SELECT version, name FROM feedchat_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(1, "notes"), (2, "note_authors")]
        # A restart applies nothing again and keeps the rows.
        assert await migrate(db, "demo", load_migrations(DEMO)) == []
        assert await db.fetchval("SELECT count(*) FROM notes") == 1
    finally:
        await db.close()


async def test_instances_starting_together_apply_each_migration_once(database_url: str) -> None:
    dbs = [await Database.connect(database_url, max_size=1) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(db, "demo", load_migrations(DEMO)) for db in dbs))
        assert sorted(applied) == [[], [], [], [1, 2]]
        assert await dbs[0].fetchval("SELECT count(*) FROM feedchat_migrations") == 2
    finally:
        for db in dbs:
            await db.close()


async def test_constraints_reject_bad_rows(database_url: str) -> None:
    db = await open_database(database_url, "demo", DEMO, max_size=1)
    try:
        with pytest.raises(Exception, match="check constraint"):
            await db.execute("INSERT INTO notes (note_id, body) VALUES (1, $1)", "x" * 101)
    finally:
        await db.close()


async def test_unreachable_server_fails_start_with_a_clear_message() -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/feedchat"
    with pytest.raises(Unavailable, match="cannot reach PostgreSQL") as caught:
        await Database.connect(url, timeout=1.0)
    assert caught.value.reason == "DATABASE_UNAVAILABLE"
    assert "secret" not in caught.value.message


async def test_stopped_server_is_unavailable_and_recovered_unaided(
    private_postgres: EmbeddedServer,
) -> None:
    db = await open_database(postgres_url(private_postgres), "demo", DEMO, max_size=2)
    try:
        await db.execute("INSERT INTO notes (note_id, body) VALUES (1, 'kept')")
        private_postgres.stop()
        assert not await db.ping()
        with pytest.raises(Unavailable) as caught:
            await db.execute("INSERT INTO notes (note_id, body) VALUES (2, 'lost')")
        assert caught.value.reason == "DATABASE_UNAVAILABLE"
        private_postgres.start()
        await wait_until(db.ping, timeout=10)
        rows = await db.fetch("SELECT body FROM notes ORDER BY note_id")
        assert [r["body"] for r in rows] == ["kept"]
    finally:
        await db.close()


async def test_killed_server_restarts_with_committed_rows(private_postgres: EmbeddedServer) -> None:
    db = await open_database(postgres_url(private_postgres), "demo", DEMO, max_size=1)
    try:
        await db.execute("INSERT INTO notes (note_id, body) VALUES (1, 'committed')")
        private_postgres.kill()
        private_postgres.start()
        await wait_until(db.ping, timeout=10)
        assert await db.fetchval("SELECT body FROM notes") == "committed"
    finally:
        await db.close()
