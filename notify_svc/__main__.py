"""``python -m notify_svc --port P --instance notify-0 --etcd H:P --redis-url URL --dev``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from feedchat_runtime.config import load_config
from feedchat_runtime.logs import setup_logging
from notify_svc.app import REGISTRY_NAME, serve
from notify_svc.config import NotifyConfig


def main(argv: Sequence[str] | None = None) -> None:
    config = load_config(NotifyConfig, argv)
    setup_logging(REGISTRY_NAME, config.log_level, config.log_format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
