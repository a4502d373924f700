"""feedchat's Python client library (asyncio).

Start from :class:`~feedchat_client.client.FeedchatClient`; docs/clients.md has examples.
"""

from feedchat_client.auth import Session
from feedchat_client.backoff import Backoff
from feedchat_client.chat_stream import ChatConnection, ConnectionClosed
from feedchat_client.client import FeedchatClient
from feedchat_client.cursors import FileCursorStore, MemoryCursorStore
from feedchat_client.discovery import EtcdDiscovery, StaticDiscovery
from feedchat_client.errors import (
    ChatSendError,
    FeedchatClientError,
    NotLoggedIn,
    RpcError,
    ServiceNotFound,
)
from feedchat_client.models import (
    Channel,
    ChatMessage,
    FeedPage,
    MessageEvent,
    Post,
    Presence,
    ReactionCount,
    Route,
    SentMessage,
    User,
)
from feedchat_client.tokens import FileTokenStore, MemoryTokenStore, Tokens

__all__ = [
    "Backoff",
    "Channel",
    "ChatConnection",
    "ChatMessage",
    "ChatSendError",
    "ConnectionClosed",
    "EtcdDiscovery",
    "FeedPage",
    "FeedchatClient",
    "FeedchatClientError",
    "FileCursorStore",
    "FileTokenStore",
    "MemoryCursorStore",
    "MemoryTokenStore",
    "MessageEvent",
    "NotLoggedIn",
    "Post",
    "Presence",
    "ReactionCount",
    "Route",
    "RpcError",
    "SentMessage",
    "ServiceNotFound",
    "Session",
    "StaticDiscovery",
    "Tokens",
    "User",
]
