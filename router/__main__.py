"""``python -m router``: run the chat router."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from feedchat_runtime.config import load_config
from feedchat_runtime.logs import setup_logging
from router.app import serve
from router.config import RouterConfig


def main(argv: Sequence[str] | None = None) -> None:
    config = load_config(RouterConfig, argv)
    setup_logging("router", config.log_level, config.log_format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
