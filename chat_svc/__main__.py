"""``python -m chat_svc``: run one chat server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chat_svc.app import serve
from chat_svc.config import ChatConfig
from feedchat_runtime.config import load_config
from feedchat_runtime.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> None:
    config = load_config(ChatConfig, argv)
    setup_logging("chat", config.log_level, config.log_format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
