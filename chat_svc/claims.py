"""Claiming pending fanouts: finishing sends whose inbox appends nobody finished.

Every chat server runs a :class:`FanoutClaims` loop. Every ``interval`` seconds it takes
the pending-fanout records (:meth:`chat_svc.store.ChatStore.claim_fanouts`) that are due
-- still there ``claim`` seconds after their channel step, so their chat server died
between the two steps, or an append failed -- and dispatches each message again: the
appends (idempotent: an inbox that has the message keeps one entry), the removal of the
record, and the pushes. A claimed record becomes due again ``claim`` seconds later, so a
claimer that dies too is covered the same way.
"""

from __future__ import annotations

import asyncio
import logging

from chat_svc.delivery import Delivery
from chat_svc.model import SendOutcome
from chat_svc.store import ChatStore

logger = logging.getLogger(__name__)


class FanoutClaims:
    """The claim loop of one chat server."""

    def __init__(self, store: ChatStore, delivery: Delivery, interval: float) -> None:
        self._store = store
        self._delivery = delivery
        self._interval = interval
        self.claimed = 0
        """Records claimed (and dispatched) so far."""
        self.rounds = 0
        """Claim rounds run so far."""

    async def claim_once(self) -> int:
        """Claim and dispatch the due records; how many."""
        found = await self._store.claim_fanouts()
        self.rounds += 1
        self.claimed += len(found)
        for message, recipients in found:
            self._delivery.dispatch(SendOutcome(message, False, recipients=tuple(recipients)))
        if found:
            logger.info("claimed %s pending fanouts", len(found))
        return len(found)

    async def run(self) -> None:
        """Claim every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.claim_once()
            except Exception as exc:  # Redis down: the health check reports it
                logger.warning("claiming pending fanouts failed: %s", exc)
