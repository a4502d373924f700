"""What a feedchat id says: every message, post, user and group id is a Snowflake id.

Layout (the servers' ``feedchat_runtime.snowflake``; a test pins that the two agree):
41 bits of milliseconds since 2024-01-01T00:00:00Z, 10 bits of worker id (the issuing
process's claim in etcd), 12 bits of sequence within that millisecond. Ids exceed 2^53:
keep them as 64-bit integers or strings, never as floating-point numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

EPOCH_MS = 1_704_067_200_000
WORKER_BITS = 10
SEQUENCE_BITS = 12


@dataclass(frozen=True)
class SnowflakeParts:
    """The three fields of an id."""

    unix_ms: int
    worker: int
    sequence: int


def decode(snowflake: int) -> SnowflakeParts:
    """Split an id into its time (Unix milliseconds), worker id and sequence."""
    if not 0 < snowflake < 1 << 63:
        raise ValueError(f"{snowflake} is not a feedchat id (1 to 2^63-1)")
    return SnowflakeParts(
        unix_ms=(snowflake >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS,
        worker=(snowflake >> SEQUENCE_BITS) & ((1 << WORKER_BITS) - 1),
        sequence=snowflake & ((1 << SEQUENCE_BITS) - 1),
    )
