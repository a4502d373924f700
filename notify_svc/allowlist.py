"""Which webhook URLs notify_svc may call: the operator's allow-list of hosts and ports.

A URL passes when its scheme is https (or http with ``--webhook-allow-http``), it carries
no user info and no fragment, and its host with its effective port (explicit, or 443/80 by
scheme) matches an entry: ``host`` allows the scheme's default port only, ``host:port``
that exact port. Hosts compare case-insensitively and exactly (no wildcards, no suffix
matching); IPv6 literals are written ``[::1]:8080``. The check runs at registration and
again before every delivery, so shrinking the allow-list takes effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class AllowList:
    """Allowed ``(host, port)`` pairs; port None means the scheme's default port."""

    entries: frozenset[tuple[str, int | None]]
    allow_http: bool = False

    @classmethod
    def parse(cls, text: str, allow_http: bool = False) -> AllowList:
        """Parse ``"a.example.com, 127.0.0.1:8080, [::1]:9000"``; ValueError when malformed."""
        entries: set[tuple[str, int | None]] = set()
        for raw in text.split(","):
            item = raw.strip().lower()
            if not item:
                continue
            if "/" in item or "@" in item or "*" in item:
                raise ValueError(f"{raw.strip()!r} is not host or host:port")
            try:
                parts = urlsplit("//" + item)
                host, port = parts.hostname, parts.port
            except ValueError as exc:
                raise ValueError(f"{raw.strip()!r} is not host or host:port") from exc
            if not host:
                raise ValueError(f"{raw.strip()!r} has no host")
            entries.add((host, port))
        return cls(frozenset(entries), allow_http)

    def check(self, url: str) -> str | None:
        """None when ``url`` may be called, else the reason it may not."""
        if not url:
            return "is required"
        if len(url) > MAX_URL_LENGTH:
            return f"is longer than {MAX_URL_LENGTH} characters"
        if any(ch.isspace() or ord(ch) < 32 for ch in url):
            return "contains whitespace or control characters"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "is not a valid URL"
        scheme = parts.scheme.lower()
        allowed_schemes = ("https", "http") if self.allow_http else ("https",)
        if scheme not in allowed_schemes:
            return f"scheme must be {' or '.join(allowed_schemes)}"
        if parts.username is not None or parts.password is not None:
            return "must not carry user info"
        if parts.fragment:
            return "must not have a fragment"
        host = parts.hostname
        if not host:
            return "has no host"
        effective = port if port is not None else DEFAULT_PORTS[scheme]
        if (host, effective) in self.entries:
            return None
        if effective == DEFAULT_PORTS[scheme] and (host, None) in self.entries:
            return None
        return f"host {host}:{effective} is not in the operator's webhook allow-list"
