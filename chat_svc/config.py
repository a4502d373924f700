"""Chat server settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedchat_runtime.config import ConfigError, ServiceConfig


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ChatConfig(ServiceConfig):
    """Settings of one chat server."""

    max_group_members: int = _opt(500, "Most members a group may have.")
    max_message_chars: int = _opt(4000, "Longest message text, in characters.")
    edit_window: float = _opt(
        172_800.0,
        "Seconds after sending during which a message may be edited (EditMessage); "
        "later edits are refused FAILED_PRECONDITION EDIT_WINDOW_CLOSED.",
    )
    max_reactions: int = _opt(20, "Most distinct reactions (emoji) one message may carry.")
    max_user_reactions: int = _opt(5, "Most reactions one user may add to one message.")
    max_edits: int = _opt(
        100,
        "Most edits of one message; later ones are refused FAILED_PRECONDITION TOO_MANY_EDITS.",
    )
    inbox_cap: int = _opt(
        10_000, "Entries kept per user inbox stream (approximate MAXLEN; older ones trimmed)."
    )
    history_cap: int = _opt(100_000, "Messages kept per channel history (approximate MAXLEN).")
    dedup_ttl: int = _opt(86_400, "Seconds a client_msg_id de-duplication record is kept.")
    send_rate: float = _opt(20.0, "Sustained sends per second allowed per user.")
    send_burst: int = _opt(40, "Sends a user may burst above the sustained rate.")
    max_streams_per_user: int = _opt(
        16, "Connect streams one user may have open at once (on its owning server)."
    )
    outbound_queue: int = _opt(
        1024, "Frames buffered per stream before a slow consumer is cut off."
    )
    poll_wait: float = _opt(
        25.0, "Seconds a PollInbox call is held when it names no wait (nothing to answer)."
    )
    poll_max_wait: float = _opt(60.0, "Longest a PollInbox call is held; longer waits are cut.")
    stats_days: int = _opt(
        90, "Days a channel's per-minute/hour/day message counts are kept (GetMessageStats)."
    )
    redis_timeout: float = _opt(2.0, "Seconds a Redis command may take before it counts as failed.")
    peer_timeout: float = _opt(
        2.0,
        "Seconds a delivery RPC to another chat server may take (also how long a stopping "
        "server lets the dispatches of what it acked finish).",
    )
    ring_settle: float = _opt(
        2.0,
        "Seconds a chat server waits for its ring to reach the ring version a client "
        "was sent with (hello.ring_version) before redirecting it.",
    )
    push_retry_window: float = _opt(
        15.0,
        "Seconds a failed push to a user's owner is retried (fresh channel, owner "
        "re-resolved from the ring) before the user counts as offline.",
    )
    fanout_claim_idle: float = _opt(
        5.0,
        "Seconds after its channel step a send's unfinished inbox fanout may be claimed "
        "and finished by any chat server.",
    )
    fanout_claim_interval: float = _opt(
        1.0, "Seconds between two claims of unfinished fanouts on each chat server."
    )

    def validate(self) -> None:
        super().validate()
        if not 2 <= self.max_group_members <= 100_000:
            raise ConfigError("max_group_members must be between 2 and 100000")
        if not 1 <= self.max_message_chars <= 65_536:
            raise ConfigError("max_message_chars must be between 1 and 65536")
        if not 0 < self.edit_window <= 366 * 86_400:
            raise ConfigError("edit_window must be between 0 and 366 days (in seconds)")
        if not 1 <= self.max_reactions <= 1000 or not 1 <= self.max_user_reactions <= 100:
            raise ConfigError("max_reactions must be 1..1000 and max_user_reactions 1..100")
        if not 1 <= self.max_edits <= 1000:
            raise ConfigError("max_edits must be between 1 and 1000")
        if self.inbox_cap < 100 or self.history_cap < 100:
            raise ConfigError("inbox_cap and history_cap must be at least 100")
        if self.dedup_ttl < 60:
            raise ConfigError("dedup_ttl must be at least 60 seconds")
        if self.send_rate <= 0 or self.send_burst < 1:
            raise ConfigError("send_rate must be positive and send_burst at least 1")
        if not 0 < self.poll_wait <= self.poll_max_wait <= 300:
            raise ConfigError("need 0 < poll_wait <= poll_max_wait <= 300 seconds")
        if not 1 <= self.stats_days <= 3660:
            raise ConfigError("stats_days must be between 1 and 3660")
        if self.max_streams_per_user < 1:
            raise ConfigError("max_streams_per_user must be at least 1")
        if self.outbound_queue < 8:
            raise ConfigError("outbound_queue must be at least 8")
        if (
            min(
                self.redis_timeout,
                self.peer_timeout,
                self.push_retry_window,
                self.ring_settle,
                self.fanout_claim_idle,
                self.fanout_claim_interval,
            )
            <= 0
        ):
            raise ConfigError(
                "redis_timeout, peer_timeout, push_retry_window, ring_settle, "
                "fanout_claim_idle and fanout_claim_interval must be positive"
            )
