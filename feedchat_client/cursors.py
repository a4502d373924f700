"""Where a chat device keeps its inbox cursor between streams (and runs).

The cursor is the inbox position of the last message the device took; reconnecting with it
makes the chat server replay exactly what came after. Memory is enough to survive
reconnects; a file also survives restarts (the CLI uses one).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Protocol


def cursor_key(cursor: str) -> tuple[int, int]:
    """Order of inbox cursors ("<ms>-<seq>"); "" sorts first."""
    if not cursor:
        return (-1, -1)
    ms, _, seq = cursor.partition("-")
    return (int(ms), int(seq or 0))


class CursorStore(Protocol):
    def load(self, user_id: int, device_id: str) -> str:
        """The saved cursor, or "" when none."""
        ...

    def save(self, user_id: int, device_id: str, cursor: str) -> None: ...


class MemoryCursorStore:
    def __init__(self) -> None:
        self._cursors: dict[tuple[int, str], str] = {}

    def load(self, user_id: int, device_id: str) -> str:
        return self._cursors.get((user_id, device_id), "")

    def save(self, user_id: int, device_id: str, cursor: str) -> None:
        self._cursors[(user_id, device_id)] = cursor


class FileCursorStore:
    """Cursors in one JSON file, ``{"<user_id>/<device_id>": cursor}``, replaced atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._cursors: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self._cursors = {str(k): str(v) for k, v in loaded.items()}

    def load(self, user_id: int, device_id: str) -> str:
        return self._cursors.get(f"{user_id}/{device_id}", "")

    def save(self, user_id: int, device_id: str, cursor: str) -> None:
        # Merge with the file as it is now: another process may keep its cursors here too.
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self._cursors = {**{str(k): str(v) for k, v in loaded.items()}, **self._cursors}
        self._cursors[f"{user_id}/{device_id}"] = cursor
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".cursors-")
        with os.fdopen(fd, "w") as out:
            json.dump(self._cursors, out)
        os.replace(tmp, self.path)
