"""Signed webhook delivery over one long-lived httpx client.

Each POST carries a JSON body and three headers:

- ``X-Feedchat-Timestamp``: Unix seconds when the request was signed;
- ``X-Feedchat-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>``;
- ``X-Feedchat-Delivery``: ``<notification_id>.<device_id>``, the same on every retry of
  one push, so receivers can drop the rare duplicate (see docs/notify.md).

Only a 2xx answer counts as delivered. Redirects are not followed (a redirect could leave
the allow-list), the response body is never read, and the URL is checked against the
allow-list again right before each POST.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from notify_svc.allowlist import AllowList

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Feedchat-Signature"
TIMESTAMP_HEADER = "X-Feedchat-Timestamp"
DELIVERY_HEADER = "X-Feedchat-Delivery"
USER_AGENT = "feedchat-notify/1"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """A receiver's check: signature matches and the timestamp is fresh (replay guard).

    ``headers`` must be looked up case-insensitively by the caller or carry lower-case
    names; both spellings are tried here.
    """

    def header(name: str) -> str:
        return headers.get(name) or headers.get(name.lower()) or ""

    stamp = header(TIMESTAMP_HEADER)
    if not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    expected = sign(secret, int(stamp), body)
    return hmac.compare_digest(expected, header(SIGNATURE_HEADER))


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one POST. ``permanent`` failures are not retried (URL not allowed)."""

    ok: bool
    status: int | None = None
    error: str = ""
    permanent: bool = False


def make_client(timeout: float, max_connections: int) -> httpx.AsyncClient:
    """The process's one webhook client: pooled, no env proxies, no redirects."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max(1, min(max_connections, 20)),
        ),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


class WebhookSender:
    """Signs and POSTs payloads to allowed URLs."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        allow: AllowList,
        secret: bytes,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._allow = allow
        self._secret = secret
        self._timeout = timeout
        self._clock = clock

    async def deliver(
        self, url: str, payload: Mapping[str, object], delivery_id: str
    ) -> DeliveryResult:
        problem = self._allow.check(url)
        if problem is not None:
            return DeliveryResult(False, error=f"webhook URL refused: {problem}", permanent=True)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        stamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(self._secret, stamp, body),
            DELIVERY_HEADER: delivery_id,
        }
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange.
            async with asyncio.timeout(self._timeout):
                async with self._client.stream("POST", url, content=body, headers=headers) as r:
                    status = r.status_code
        except TimeoutError:
            return DeliveryResult(False, error=f"timed out after {self._timeout}s")
        except httpx.HTTPError as exc:
            return DeliveryResult(False, error=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= status < 300:
            return DeliveryResult(True, status)
        return DeliveryResult(False, status, error=f"HTTP {status}")
