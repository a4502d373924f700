"""``python -m chat_svc``: run one chat server. Flags: ``python -m chat_svc --help``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chat_svc.app import serve
from chat_svc.config import ChatConfig
from feedchat_runtime.entry import run_service


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("chat", ChatConfig, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
