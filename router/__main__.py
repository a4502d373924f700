"""``python -m router``: run the chat router. Flags: ``python -m router --help``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from feedchat_runtime.entry import run_service
from router.app import serve
from router.config import RouterConfig


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("router", RouterConfig, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
