"""``python -m feed_svc``: run a feed_svc process (API plus fanout workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from feed_svc.app import serve
from feed_svc.config import FeedConfig
from feedchat_runtime.config import load_config
from feedchat_runtime.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> None:
    config = load_config(FeedConfig, argv)
    setup_logging("feed", config.log_level, config.log_format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
