"""The account records the stores hand to the domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RotateResult = Literal["ok", "unknown", "revoked", "reused"]
"""What rotating a refresh token found: spent and replaced, never issued (or expired),
issued before the user's tokens were revoked, or already spent (then all are revoked)."""

CreateResult = Literal["created", "taken", "held"]
"""What a sign-up's insert found: done, the name owned by a user, or the name still held
after its account was deleted."""


@dataclass(frozen=True)
class UserRecord:
    """A stored user. ``password_hash`` is empty when read through the public fields."""

    user_id: int
    username: str
    display_name: str
    bio: str
    created_ms: int
    password_hash: str = ""
