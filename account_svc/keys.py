"""Every Redis key account_svc uses, one function per key family.

Redis holds no account record, only a cache and counters::

    account:{u:<user_id>}:user          hash    cached public fields (GetUsers, GetProfile)
    account:login:user:{<username>}     string  login attempts in the current window
    account:login:peer:{<host>}         string  login attempts from one client address
    account:signup:peer:{<host>}        string  sign-up attempts from one client address
"""

from __future__ import annotations


def user_cache_key(user_id: int) -> str:
    return f"account:{{u:{user_id}}}:user"


def login_user_key(username: str) -> str:
    return f"account:login:user:{{{username}}}"


def login_peer_key(host: str) -> str:
    return f"account:login:peer:{{{host}}}"


def signup_peer_key(host: str) -> str:
    return f"account:signup:peer:{{{host}}}"
