"""Reading a bidirectional stream's client frames in a task beside the handler's writing.

A streaming handler that reads client frames in a task of its own must stop that task
when the stream ends, before its status can be sent. Cancelling the task while it waits
for the next frame does not end it: grpc.aio's server-side read gives way only when the
call ends, and the call cannot end while the handler waits for the task. The stream then
hangs, its status unsent, until the client gives up (a feed stream reset while its
client sent nothing: ``test_a_reset_reaches_clients_whether_or_not_they_are_sending``).

:class:`RequestReader` therefore never cancels a pending read. :meth:`RequestReader.stop`
cancels the task only while it is handling a frame; a task waiting for a frame is left to
end with the call, and whatever that read returns or raises is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_detached: set[asyncio.Task[None]] = set()
"""Tasks left to end with their call (held so that they are not garbage collected)."""


class RequestReader(Generic[T]):
    """One handler's client frames, read by ``consume(frames)`` in a task of its own."""

    def __init__(self, requests: AsyncIterator[T]) -> None:
        self._requests = requests
        self._reading = False
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    def start(self, consume: Callable[[AsyncIterator[T]], Coroutine[Any, Any, None]]) -> None:
        """Run ``consume`` over :meth:`frames` in a new task."""
        self._task = asyncio.create_task(consume(self.frames()))

    async def frames(self) -> AsyncIterator[T]:
        """The client's frames until the client half-closes or :meth:`stop` is called
        (after a stop nothing more is yielded, and a failing read raises nothing)."""
        while not self._stopped:
            self._reading = True
            try:
                frame = await anext(self._requests)
            except StopAsyncIteration:
                return
            except Exception:
                if self._stopped:
                    return
                raise
            finally:
                self._reading = False
            if self._stopped:
                return
            yield frame

    async def stop(self) -> None:
        """End the reading task: cancelled while it handles a frame, left to end with the
        call while it waits for one."""
        self._stopped = True
        task = self._task
        if task is None:
            return
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                logger.warning("reading client frames failed", exc_info=task.exception())
            return
        if self._reading:
            _detached.add(task)
            task.add_done_callback(_forget)
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # the stream is ending anyway: its status is already chosen
            logger.warning("reading client frames failed at the stream's end", exc_info=True)


def _forget(task: asyncio.Task[None]) -> None:
    _detached.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the call is over, nobody wants it
