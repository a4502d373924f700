"""Temporary folders that another user (the embedded PostgreSQL's, under root) can use."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def outside_pytest_tmp() -> Iterator[Path]:
    """A temporary folder for PostgreSQL data outside pytest's own.

    Under root, PostgreSQL runs as another user, who must traverse the folder's parents;
    every pytest session that starts (another engineer's, CI's) resets pytest's root
    temporary folder to 0700, which would cut a running test's PostgreSQL off its data.
    """
    folder = Path(tempfile.mkdtemp(prefix="feedchat-pg-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
