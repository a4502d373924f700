"""Account rules: sign-up, login with brute-force limits, rotating refresh, profiles.

No transport code here: callers pass plain values, errors are feedchat_runtime.errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from account_svc.content import ContentRemover
from account_svc.models import UserRecord
from account_svc.passwords import PasswordHashing
from account_svc.store import AccountStore
from account_svc.store_limits import Scope
from account_svc.validation import (
    GET_USERS_MAX,
    PASSWORD_MAX,
    TOKEN_MAX,
    check_bio,
    check_display_name,
    check_password,
    is_username_shaped,
    normalize_username,
)
from feedchat_runtime.auth import TokenAuthority
from feedchat_runtime.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from feedchat_runtime.snowflake import timestamp_ms

logger = logging.getLogger(__name__)

BAD_CREDENTIALS = "username or password is wrong"
"""One answer for an unknown user and a wrong password: a login reveals no usernames."""


@dataclass(frozen=True)
class Profile:
    """A user's public profile."""

    user_id: int
    username: str
    display_name: str
    bio: str
    created_ms: int

    @classmethod
    def of(cls, record: UserRecord) -> Profile:
        return cls(
            record.user_id, record.username, record.display_name, record.bio, record.created_ms
        )


@dataclass(frozen=True)
class Session:
    """Tokens handed to a user after sign-up, login or refresh."""

    user_id: int
    access_token: str
    access_expires_at: int
    refresh_token: str
    refresh_expires_at: int


@dataclass(frozen=True)
class LoginLimits:
    """Login attempts allowed per ``window`` seconds, per username and per client address;
    sign-up attempts per ``signup_window`` seconds per client address."""

    window: float
    per_username: int
    per_peer: int
    signup_window: float = 3600.0
    signup_per_peer: int = 50


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class Accounts:
    """The account service's rules over an :class:`AccountStore`."""

    def __init__(
        self,
        store: AccountStore,
        authority: TokenAuthority,
        passwords: PasswordHashing,
        next_id: Callable[[], int],
        limits: LoginLimits,
        content: ContentRemover,
        username_hold: float,
    ) -> None:
        self._store = store
        self._authority = authority
        self._passwords = passwords
        self._next_id = next_id
        self._limits = limits
        self._content = content
        self._username_hold = username_hold

    async def _new_session(self, user_id: int) -> Session:
        access = self._authority.issue_access(user_id)
        refresh = self._authority.issue_refresh(user_id)
        await self._store.tokens.issue(user_id, refresh.token_id, _ms(self._authority.refresh_ttl))
        return Session(
            user_id, access.token, int(access.expires_at), refresh.token, int(refresh.expires_at)
        )

    # --- sign-up and login ---------------------------------------------------------------

    async def sign_up(self, username: str, password: str, display_name: str, peer: str) -> Session:
        """Create a user and log it in; ALREADY_EXISTS when the name is taken in any case.
        Every attempt counts against the client address (``peer``); while Redis is out of
        reach sign-ups go on uncounted (the record is in PostgreSQL)."""
        counted = await self._store.limits.hit_if_reachable(
            "signup_peer", peer, self._limits.signup_per_peer, _ms(self._limits.signup_window)
        )
        if counted is not None and not counted[0]:
            raise ResourceExhausted(
                "too many sign-ups from this address; retry later",
                reason="SIGNUP_RATE_LIMITED",
                retry_after=counted[1] / 1000,
            )
        name = normalize_username(username)
        check_password(password)
        check_display_name(display_name)
        password_hash = await self._passwords.hash(password)
        user_id = self._next_id()
        record = UserRecord(user_id, name, display_name, "", timestamp_ms(user_id), password_hash)
        # One transaction writes the user, credential and profile; the unique index on the
        # case-folded name decides between concurrent sign-ups.
        created = await self._store.users.create(record)
        if created == "taken":
            raise AlreadyExists(f"username {name!r} is taken", reason="USERNAME_TAKEN")
        if created == "held":
            raise AlreadyExists(
                f"username {name!r} belonged to a deleted account and is not free yet",
                reason="USERNAME_HELD",
            )
        logger.info("signed up", extra={"user_id": user_id})
        return await self._new_session(user_id)

    async def _hit(self, scope: Scope, subject: str, limit: int) -> None:
        allowed, left_ms = await self._store.limits.hit(
            scope, subject, limit, _ms(self._limits.window)
        )
        if not allowed:
            raise ResourceExhausted(
                "too many login attempts; retry later",
                reason="LOGIN_RATE_LIMITED",
                retry_after=left_ms / 1000,
            )

    async def login(self, username: str, password: str, peer: str) -> Session:
        """Check a password. Each attempt counts against the username and the peer until
        it succeeds, so failures (and concurrent guesses) are limited; success refunds."""
        name = username.lower()
        if len(password) > PASSWORD_MAX or not is_username_shaped(username):
            raise Unauthenticated(BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
        await self._hit("peer", peer, self._limits.per_peer)
        try:
            await self._hit("user", name, self._limits.per_username)
        except ResourceExhausted:
            await self._store.limits.refund("peer", peer)  # refused before trying: no charge
            raise
        user_id = await self._store.users.id_for(name)
        record = await self._store.users.with_password(user_id) if user_id else None
        if record is None:
            await self._passwords.verify_nothing(password)
            raise Unauthenticated(BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
        if not await self._passwords.verify(record.password_hash, password):
            raise Unauthenticated(BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
        await self._store.limits.refund("user", name)
        await self._store.limits.refund("peer", peer)
        if self._passwords.needs_rehash(record.password_hash):
            new_hash = await self._passwords.hash(password)
            await self._store.users.set_password_hash(record.user_id, new_hash)
        return await self._new_session(record.user_id)

    async def refresh(self, refresh_token: str) -> Session:
        """Spend a refresh token for a new session; a spent token again revokes them all."""
        if len(refresh_token) > TOKEN_MAX:
            raise InvalidArgument.field("refresh_token", f"longer than {TOKEN_MAX} characters")
        user_id, claims = self._authority.verify_user(refresh_token, "refresh")
        token_id = claims.get("jti")
        if not isinstance(token_id, str) or not token_id:
            raise Unauthenticated("token is not valid", reason="TOKEN_INVALID")
        replacement = self._authority.issue_refresh(user_id)
        result = await self._store.tokens.rotate(
            user_id, token_id, replacement.token_id, _ms(self._authority.refresh_ttl)
        )
        if result == "reused":
            logger.warning(
                "refresh token reused; revoking the user's refresh tokens",
                extra={"user_id": user_id},
            )
            raise Unauthenticated(
                "refresh token was already used; log in again", reason="REFRESH_TOKEN_REUSED"
            )
        if result != "ok":
            raise Unauthenticated(
                "refresh token is no longer valid; log in again", reason="REFRESH_TOKEN_REVOKED"
            )
        access = self._authority.issue_access(user_id)
        return Session(
            user_id,
            access.token,
            int(access.expires_at),
            replacement.token,
            int(replacement.expires_at),
        )

    # --- profiles ----------------------------------------------------------------------

    async def profile(self, user_id: int) -> Profile:
        records = await self._store.users.get_many([user_id]) if user_id > 0 else [None]
        record = records[0]
        if record is None:
            raise NotFound(f"no user {user_id}", reason="USER_NOT_FOUND")
        return Profile.of(record)

    async def update_profile(
        self, user_id: int, display_name: str | None, bio: str | None
    ) -> Profile:
        """Change the given user's own profile fields (None: leave as is)."""
        fields: dict[str, str] = {}
        if display_name is not None:
            fields["display_name"] = check_display_name(display_name)
        if bio is not None:
            fields["bio"] = check_bio(bio)
        if not await self._store.users.update_profile(user_id, fields):
            raise NotFound(f"no user {user_id}", reason="USER_NOT_FOUND")
        return await self.profile(user_id)

    async def users(self, user_ids: Sequence[int]) -> list[Profile]:
        """Known users among ``user_ids``, in first-mention order, duplicates read once."""
        if len(user_ids) > GET_USERS_MAX:
            raise InvalidArgument.field(
                "user_ids", f"at most {GET_USERS_MAX} ids per call", "TOO_MANY_IDS"
            )
        wanted = [uid for uid in dict.fromkeys(user_ids) if uid > 0]
        if not wanted:
            return []
        records = await self._store.users.get_many(wanted)
        return [Profile.of(r) for r in records if r is not None]

    async def lookup(self, username: str) -> Profile:
        name = normalize_username(username)
        user_id = await self._store.users.id_for(name)
        if user_id is None:
            raise NotFound(f"no user named {name!r}", reason="USER_NOT_FOUND")
        return await self.profile(user_id)

    # --- password change, sign-out everywhere, deletion ---------------------------------

    async def _reauthenticate(self, user_id: int, password: str, field: str) -> UserRecord:
        """The user's record once ``password`` is theirs. Failures count against the
        per-username login limit, so a stolen access token cannot guess the password."""
        if len(password) > PASSWORD_MAX:
            raise InvalidArgument.field(
                field, f"at most {PASSWORD_MAX} characters", "PASSWORD_INVALID"
            )
        record = await self._store.users.with_password(user_id)
        if record is None:
            raise NotFound(f"no user {user_id}", reason="USER_NOT_FOUND")
        await self._hit("user", record.username, self._limits.per_username)
        if not await self._passwords.verify(record.password_hash, password):
            raise Unauthenticated("the password is wrong", reason="WRONG_PASSWORD")
        await self._store.limits.refund("user", record.username)
        return record

    async def change_password(self, user_id: int, current: str, new: str) -> Session:
        """Replace the password, revoke every refresh token, and log this device in."""
        check_password(new, "new_password")
        await self._reauthenticate(user_id, current, "current_password")
        if new == current:
            raise InvalidArgument.field(
                "new_password", "must differ from the current password", "PASSWORD_UNCHANGED"
            )
        revoked = await self._store.tokens.revoke_all(user_id, await self._passwords.hash(new))
        logger.info("password changed", extra={"user_id": user_id, "revoked": revoked})
        return await self._new_session(user_id)

    async def sign_out_everywhere(self, user_id: int) -> int:
        """Revoke every refresh token of the user; how many were live."""
        revoked = await self._store.tokens.revoke_all(user_id)
        logger.info("signed out everywhere", extra={"user_id": user_id, "revoked": revoked})
        return revoked

    async def delete_account(self, user_id: int, password: str) -> datetime:
        """Delete the account (the username held until the returned time), then have the
        feed remove its posts; when the feed cannot be reached now, the removal is retried
        by :meth:`remove_pending_content` until it succeeds."""
        record = await self._reauthenticate(user_id, password, "password")
        free_at = await self._store.deletions.delete(
            user_id, record.username, _ms(self._username_hold)
        )
        if free_at is None:  # a concurrent deletion won
            raise NotFound(f"no user {user_id}", reason="USER_NOT_FOUND")
        logger.info("account deleted", extra={"user_id": user_id})
        await self._remove_content(user_id)
        return free_at

    async def _remove_content(self, user_id: int) -> bool:
        try:
            await self._content.remove(user_id)
        except Unavailable as exc:
            logger.warning("feed removal of user %s deferred: %s", user_id, exc.message)
            return False
        await self._store.deletions.content_removed(user_id)
        return True

    async def remove_pending_content(self, limit: int = 100) -> int:
        """Retry the feed removals still owed for deleted accounts; how many succeeded."""
        done = 0
        for user_id in await self._store.deletions.pending_removals(limit):
            if not await self._remove_content(user_id):
                break  # the feed is still unreachable: try again next round
            done += 1
        return done
