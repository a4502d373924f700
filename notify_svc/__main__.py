"""``python -m notify_svc``: run a notification server. Flags: ``python -m notify_svc --help``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from feedchat_runtime.entry import run_service
from notify_svc.app import serve
from notify_svc.config import NotifyConfig


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("notify", NotifyConfig, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
