"""``python -m feed_svc.worker``: fanout workers in their own process (no gRPC API).

Takes the same flags as ``python -m feed_svc`` (``--postgres-url`` too: post bodies missing
from Redis are read from the record); ``--fanout-workers`` sets the pool size and
``--instance`` names its consumers. SIGTERM stops it; a job it was working on stays pending
and is claimed by another worker after ``--fanout-claim-idle`` seconds (default 5).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from feed_svc.config import FeedConfig
from feed_svc.fanout import FanoutPool, FanoutSettings
from feed_svc.records import FeedRecords, open_records
from feed_svc.store import FeedStore
from feedchat_runtime.entry import run_service
from feedchat_runtime.redis_client import connect_any
from feedchat_runtime.server import run_until_signal

logger = logging.getLogger(__name__)


async def run_workers(config: FeedConfig) -> None:
    db = await open_records(config.postgres_url, config.postgres_pool_size)
    redis = connect_any(config.redis_url)
    store = FeedStore.over(redis, FeedRecords(db))
    pool = FanoutPool(
        store,
        FanoutSettings.from_config(config),
        f"{config.instance}-fanout",
        max(1, config.fanout_workers),
    )

    async def start() -> None:
        await pool.start()
        logger.info("fanout workers running", extra={"workers": len(pool.workers)})

    async def stop() -> None:
        await pool.stop()
        await redis.aclose()
        await db.close()

    await run_until_signal(start, stop)


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("feed-worker", FeedConfig, run_workers, argv)


if __name__ == "__main__":
    sys.exit(main())
