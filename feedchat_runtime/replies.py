"""Redis replies as Python values: one place for the bytes-or-str question.

Clients here do not decode responses, so a reply value is ``bytes``; typed stubs (and a
client made with ``decode_responses``) say it may be ``str`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text(value: object) -> str:
    """A reply value as text: bytes decoded as UTF-8, anything else through ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash (or stream entry) reply as text names and values."""
    return {text(name): text(value) for name, value in raw.items()}


def text_or(value: object, default: str = "") -> str:
    """Like :func:`text`, but ``default`` for a missing value (None)."""
    return default if value is None else text(value)
