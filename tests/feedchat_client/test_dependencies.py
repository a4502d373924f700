"""The client library installs and imports without the servers' storage clients."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_client_loads_no_redis_or_etcd_client() -> None:
    probe = (
        "import sys, feedchat_client, feedchat_client.cli; "
        "loaded = sorted(m for m in ('redis', 'aetcd', 'asyncpg', 'feedchat_runtime') "
        "if m in sys.modules); print(','.join(loaded))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
