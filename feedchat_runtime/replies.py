"""Redis replies as Python values: one place for the bytes-or-str question.

Clients here do not decode responses, so a reply value is ``bytes``; typed stubs (and a
client made with ``decode_responses``) say it may be ``str`` too.
"""

from __future__ import annotations


def text(value: object) -> str:
    """A reply value as text: bytes decoded as UTF-8, anything else through ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)
