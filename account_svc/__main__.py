"""``python -m account_svc --port 50051 --etcd 127.0.0.1:2379 --redis-url ... [--dev]``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from account_svc.app import REGISTRY_NAME, serve
from account_svc.config import AccountConfig
from feedchat_runtime.config import ConfigError, load_config
from feedchat_runtime.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(AccountConfig, sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"account_svc: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(REGISTRY_NAME, config.log_level, config.log_format)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
