"""``python -m presence_svc --port P --instance presence-0 ...``"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from feedchat_runtime.config import load_config
from feedchat_runtime.logs import setup_logging
from presence_svc.app import serve
from presence_svc.config import PresenceConfig


def main(argv: Sequence[str] | None = None) -> None:
    # load_config reads no sys.argv of its own when given None.
    config = load_config(PresenceConfig, sys.argv[1:] if argv is None else argv)
    setup_logging("presence", config.log_level, config.log_format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
