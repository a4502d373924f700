"""``python -m presence_svc``: run a presence server; ``--help`` lists flags."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from feedchat_runtime.entry import run_service
from presence_svc.app import serve
from presence_svc.config import PresenceConfig


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("presence", PresenceConfig, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
