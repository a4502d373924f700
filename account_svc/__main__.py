"""``python -m account_svc``: run the account (API) server; ``--help`` lists flags."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from account_svc.app import serve
from account_svc.config import AccountConfig
from feedchat_runtime.entry import run_service


def main(argv: Sequence[str] | None = None) -> int:
    return run_service("account", AccountConfig, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
