"""``python -m notify_svc --port P --instance notify-0 --etcd H:P --redis-url URL [--dev]``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from feedchat_runtime.config import ConfigError, load_config
from feedchat_runtime.logs import setup_logging
from notify_svc.app import REGISTRY_NAME, serve
from notify_svc.config import NotifyConfig


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(NotifyConfig, sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"notify_svc: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(REGISTRY_NAME, config.log_level, config.log_format)
    # httpx logs every request at INFO; delivery outcomes are logged by notify_svc itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
