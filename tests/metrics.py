"""Reading a server's Prometheus endpoint from tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as client:
        reply = await client.get(url, timeout=5)
    reply.raise_for_status()
    return reply.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` carrying ``labels``, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


async def value(url: str, name: str, **labels: str) -> float:
    """One sample scraped now (0 when the series does not exist yet)."""
    return sample(await scrape(url), name, **labels) or 0.0
