"""``python -m feed_svc``: run a feed server (API plus fanout workers); ``--help`` lists flags."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from feed_svc.app import serve
from feed_svc.config import FeedConfig
from feedchat_runtime.entry import run_service


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("feed", FeedConfig, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
