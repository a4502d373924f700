"""Field rules for usernames, passwords and profile text (the limits the proto states)."""

from __future__ import annotations

import re

from feedchat_runtime.errors import InvalidArgument
from feedchat_runtime.text import TextRule

USERNAME_MIN = 3
USERNAME_MAX = 32
PASSWORD_MIN = 8
PASSWORD_MAX = 128
DISPLAY_NAME_MAX = 64
BIO_MAX = 280
TOKEN_MAX = 4096
GET_USERS_MAX = 500

_USERNAME = re.compile(r"[a-z0-9_.]+")


def normalize_username(raw: str, field: str = "username") -> str:
    """The canonical (lowercase) username, or INVALID_ARGUMENT naming ``field``.

    Only ASCII is accepted before lowercasing: Unicode case folding maps some non-ASCII
    letters (the Kelvin sign) onto ASCII ones, which would let two spellings share a name.
    """
    if not USERNAME_MIN <= len(raw) <= USERNAME_MAX:
        raise InvalidArgument.field(
            field, f"must be {USERNAME_MIN} to {USERNAME_MAX} characters", "USERNAME_INVALID"
        )
    name = raw.lower()
    if not raw.isascii() or _USERNAME.fullmatch(name) is None:
        raise InvalidArgument.field(
            field, "may contain only letters a-z, digits, '_' and '.'", "USERNAME_INVALID"
        )
    return name


def is_username_shaped(raw: str) -> bool:
    """Whether some account could have this name (a login with any other cannot match)."""
    return (
        USERNAME_MIN <= len(raw) <= USERNAME_MAX
        and raw.isascii()
        and (_USERNAME.fullmatch(raw.lower()) is not None)
    )


def check_password(password: str, field: str = "password") -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidArgument.field(
            field, f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters", "PASSWORD_INVALID"
        )


DISPLAY_NAME = TextRule("display_name", DISPLAY_NAME_MAX, "PROFILE", required=False)
BIO = TextRule("bio", BIO_MAX, "PROFILE", multiline=True, required=False)


def check_display_name(value: str) -> str:
    return DISPLAY_NAME.check(value)


def check_bio(value: str) -> str:
    return BIO.check(value)
