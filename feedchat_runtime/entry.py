"""The one ``main`` every service's ``python -m <pkg>`` runs."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TypeVar

from feedchat_runtime.config import ConfigError, ServiceConfig, load_config
from feedchat_runtime.logs import setup_logging

C = TypeVar("C", bound=ServiceConfig)


def run_service(
    name: str,
    config_cls: type[C],
    serve: Callable[[C], Coroutine[object, object, None]],
    argv: Sequence[str] | None = None,
) -> int:
    """Load the config (exit 2 with a one-line reason if it is wrong), log, serve."""
    try:
        config = load_config(config_cls, argv)
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(name, config.log_level, config.log_format)
    asyncio.run(serve(config))
    return 0
