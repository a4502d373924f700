"""Refresh-token families in PostgreSQL: every issued refresh token, whether it was spent,
and each user's refresh epoch (``credentials.refresh_epoch``).

A token is live while unspent, unexpired and issued under the user's current epoch.
Presenting a spent one again means it leaked: the epoch is bumped, which revokes every
refresh token of that user at once. Rotation locks the presented token's row, so of
concurrent rotations of one token exactly one wins and the others see it spent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from account_svc.models import RotateResult
from feedchat_runtime.postgres import Database


def _expiry(ttl_ms: int) -> datetime:
    return datetime.now(UTC) + timedelta(milliseconds=ttl_ms)


_INSERT = """
INSERT INTO refresh_tokens (token_id, user_id, epoch, expires_at)
SELECT $1, $2, refresh_epoch, $3 FROM credentials WHERE user_id = $2
"""


_LIVE = """
SELECT count(*) FROM refresh_tokens r JOIN credentials c USING (user_id)
WHERE r.user_id = $1 AND NOT r.used AND r.expires_at > now() AND r.epoch = c.refresh_epoch
"""


class RefreshTokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(self, user_id: int, token_id: str, ttl_ms: int) -> None:
        """Record a new live token under the user's current epoch (and forget the user's
        expired ones, which can no longer be presented)."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < now()", user_id
            )
            await conn.execute(_INSERT, token_id, user_id, _expiry(ttl_ms))

    async def rotate(
        self, user_id: int, token_id: str, new_token_id: str, ttl_ms: int
    ) -> RotateResult:
        """Spend ``token_id`` and issue ``new_token_id`` in its place, atomically."""
        async with self._db.transaction() as conn:
            token = await conn.fetchrow(
                "SELECT epoch, used FROM refresh_tokens "
                "WHERE token_id = $1 AND user_id = $2 AND expires_at > now() FOR UPDATE",
                token_id,
                user_id,
            )
            if token is None:
                return "unknown"
            if token["used"]:
                await conn.execute(
                    "UPDATE credentials SET refresh_epoch = refresh_epoch + 1 WHERE user_id = $1",
                    user_id,
                )
                return "reused"
            epoch = await conn.fetchval(
                "SELECT refresh_epoch FROM credentials WHERE user_id = $1", user_id
            )
            if token["epoch"] != epoch:
                return "revoked"
            await conn.execute(
                "UPDATE refresh_tokens SET used = true WHERE token_id = $1", token_id
            )
            await conn.execute(_INSERT, new_token_id, user_id, _expiry(ttl_ms))
            return "ok"

    async def revoke_all(self, user_id: int, password_hash: str | None = None) -> int:
        """Revoke every refresh token of the user (bump the epoch, forget the rows) and,
        when given, set a new password hash in the same transaction. Returns how many
        tokens were live. A rotation racing this one issues its token under the old
        epoch, so that token is refused too."""
        async with self._db.transaction() as conn:
            live = int(await conn.fetchval(_LIVE, user_id))
            if password_hash is not None:
                await conn.execute(
                    "UPDATE credentials SET password_hash = $2 WHERE user_id = $1",
                    user_id,
                    password_hash,
                )
            await conn.execute(
                "UPDATE credentials SET refresh_epoch = refresh_epoch + 1 WHERE user_id = $1",
                user_id,
            )
            await conn.execute("DELETE FROM refresh_tokens WHERE user_id = $1", user_id)
        return live
