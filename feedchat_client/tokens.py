"""Token pairs and where a :class:`~feedchat_client.auth.Session` keeps them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Tokens:
    """A logged-in user's credentials. Times are Unix seconds."""

    user_id: int
    access_token: str
    refresh_token: str
    access_expires_at: float
    refresh_expires_at: float
    username: str = ""

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["user_id"] = str(self.user_id)  # > 2^53: keep exact in JSON
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Tokens:
        return cls(
            user_id=int(str(data["user_id"])),
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            access_expires_at=float(str(data["access_expires_at"])),
            refresh_expires_at=float(str(data["refresh_expires_at"])),
            username=str(data.get("username", "")),
        )


class TokenStore(Protocol):
    """Where tokens live between calls (and, for files, between processes)."""

    def load(self) -> Tokens | None: ...

    def save(self, tokens: Tokens | None) -> None: ...

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive access while a refresh spends the refresh token."""
        ...


class MemoryTokenStore:
    """Tokens held by this process only."""

    def __init__(self, tokens: Tokens | None = None) -> None:
        self._tokens = tokens

    def load(self) -> Tokens | None:
        return self._tokens

    def save(self, tokens: Tokens | None) -> None:
        self._tokens = tokens

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        yield


class FileTokenStore:
    """Tokens in a JSON file (mode 0600), e.g. ``~/.config/feedchat/session.json``.

    Refresh tokens rotate (each works once), so two processes sharing the file must not
    both spend the same one: :meth:`locked` takes an ``flock`` on ``<file>.lock``, and the
    session re-reads the file inside it, picking up a pair another process just got.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> Tokens | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        try:
            return Tokens.from_json(data)
        except (KeyError, ValueError, TypeError):
            return None

    def save(self, tokens: Tokens | None) -> None:
        if tokens is None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".session-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(tokens.to_json(), out, indent=2)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
