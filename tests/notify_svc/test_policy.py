"""Pure rules: the allow-list, the signature recipe, retry delays, the queue contract."""

from __future__ import annotations

import asyncio

import pytest

from feedchat_runtime.config import ConfigError, load_config
from feedchat_runtime.notify_queue import MalformedJob, NotificationKind, parse_job
from notify_svc.allowlist import AllowList
from notify_svc.config import NotifyConfig
from notify_svc.events import Overflowed, Subscription
from notify_svc.models import Event, EventKind, Notification
from notify_svc.webhook import sign, verify
from notify_svc.worker import backoff_delay


@pytest.mark.parametrize(
    ("allow", "url", "ok"),
    [
        ("push.example.com", "https://push.example.com/x", True),
        ("push.example.com", "https://PUSH.example.com:443/x?a=1", True),
        ("push.example.com", "https://push.example.com:8443/x", False),
        ("push.example.com:8443", "https://push.example.com:8443/x", True),
        ("push.example.com:8443", "https://push.example.com/x", False),
        ("push.example.com", "https://evil.push.example.com/x", False),
        ("push.example.com", "https://push.example.com.evil.net/x", False),
        ("push.example.com", "http://push.example.com/x", False),  # http not allowed
        ("[::1]:9000", "https://[::1]:9000/x", True),
        ("", "https://push.example.com/x", False),
    ],
)
def test_allow_list_matches_host_and_port_exactly(allow: str, url: str, ok: bool) -> None:
    assert (AllowList.parse(allow).check(url) is None) is ok


def test_http_needs_the_operator_switch() -> None:
    allow = "127.0.0.1:8080"
    assert AllowList.parse(allow, allow_http=True).check("http://127.0.0.1:8080/h") is None
    assert AllowList.parse(allow).check("http://127.0.0.1:8080/h") is not None


@pytest.mark.parametrize("bad", ["http://x.example.com", "a@b", "*.example.com", "h:99999"])
def test_malformed_allow_list_fails_at_start_up(bad: str) -> None:
    with pytest.raises(ConfigError):
        load_config(NotifyConfig, [], env={}, dev=True, webhook_allow=bad)


def test_webhook_secret_is_required_with_an_allow_list_outside_dev() -> None:
    secrets = {"auth_secret": "a" * 32, "service_secret": "b" * 32}
    load_config(NotifyConfig, [], env={}, **secrets)  # no allow-list: no key needed
    with pytest.raises(ConfigError):
        load_config(NotifyConfig, [], env={}, webhook_allow="push.example.com", **secrets)
    load_config(
        NotifyConfig, [], env={}, webhook_allow="push.example.com", webhook_secret="k", **secrets
    )


def test_signature_covers_timestamp_and_body_and_expires() -> None:
    body = b'{"type":"notification"}'
    headers = {
        "X-Feedchat-Timestamp": "1700000000",
        "X-Feedchat-Signature": sign(b"key", 1700000000, body),
    }
    assert verify(b"key", headers, body, now=1700000010)
    assert not verify(b"key", headers, body, now=1700000000 + 301)  # replayed later
    assert not verify(
        b"key", dict(headers, **{"X-Feedchat-Timestamp": "1700000001"}), body, now=1700000010
    )
    assert not verify(b"other", headers, body, now=1700000010)


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    assert [backoff_delay(n, 1.0, 8.0, lambda: 0.0) for n in (1, 2, 3, 4, 5, 6)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
        4.0,
    ]
    assert [backoff_delay(n, 1.0, 8.0, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        8.0,
    ]


def _fields(**values: str) -> dict[bytes, bytes]:
    base = {
        "kind": "chat_message",
        "user_id": "42",
        "channel_id": "5",
        "message_id": "77",
        "sender_id": "9",
        "preview": "hi",
        "created_ms": "1",
    }
    base.update(values)
    return {k.encode(): v.encode() for k, v in base.items()}


def test_queue_contract_parsing() -> None:
    job = parse_job(_fields(preview="é" * 200, message_id=str(2**63 + 5)))
    assert job.kind is NotificationKind.CHAT_MESSAGE and job.message_id == 2**63 + 5
    assert job.preview == "é" * 140
    assert parse_job(_fields(kind="feed_post", channel_id="0")).channel_id == 0
    for bad in (
        _fields(kind="sms"),
        _fields(user_id="-1"),
        _fields(user_id="0"),
        _fields(message_id=str(2**64)),
        _fields(channel_id="0"),
        _fields(user_id="1e3"),
    ):
        with pytest.raises(MalformedJob):
            parse_job(bad)
    missing = _fields()
    del missing[b"sender_id"]
    with pytest.raises(MalformedJob):
        parse_job(missing)


def _event(user_id: int) -> Event:
    note = Notification(1, NotificationKind.CHAT_MESSAGE, 5, 9, 1, 1, 1, "hi", 0, 0, False)
    return Event(EventKind.CREATED, user_id, note)


async def test_gateway_subscription_filters_and_is_cut_off_when_too_far_behind() -> None:
    stop = asyncio.Event()
    sub = Subscription({42}, buffer=2)
    sub.offer(_event(43))  # not one of its users
    sub.offer(_event(42))
    assert (await sub.next(stop)) == _event(42)
    sub.offer(_event(42))
    sub.offer(_event(42))
    sub.offer(_event(42))  # one more than the buffer holds
    with pytest.raises(Overflowed):
        await sub.next(stop)

    idle = Subscription((), buffer=2)
    stop.set()
    assert await idle.next(stop) is None
