"""Fixtures: the in-process feedchat system of tests/feedchat_client."""

from tests.feedchat_client.conftest import system

__all__ = ["system"]
