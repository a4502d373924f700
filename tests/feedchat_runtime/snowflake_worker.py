"""Claim a worker id in etcd and print N Snowflake ids, one a line (for the tests).

python snowflake_worker.py ETCD PREFIX COUNT
"""

from __future__ import annotations

import asyncio
import sys

from feedchat_runtime.registry import EtcdSession
from feedchat_runtime.snowflake import WorkerIdClaim


async def main(etcd: str, prefix: str, count: int) -> None:
    session = EtcdSession(etcd, prefix, ttl=5)
    await session.start()
    claim = WorkerIdClaim(session)
    await claim.acquire()
    generator = claim.generator()
    ids = [generator.next_id() for _ in range(count)]
    sys.stdout.write("\n".join(map(str, ids)) + "\n")
    sys.stdout.flush()
    await session.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
