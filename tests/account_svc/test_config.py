"""Start-up configuration: secrets are mandatory outside --dev."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from account_svc.config import AccountConfig
from feedchat_runtime.config import ConfigError, load_config

GOOD_AUTH = "a" * 40
GOOD_SERVICE = "s" * 40


def test_missing_secrets_outside_dev_fail_config() -> None:
    with pytest.raises(ConfigError, match="auth_secret"):
        load_config(AccountConfig, [], env={})


def test_secrets_from_environment_are_accepted() -> None:
    config = load_config(
        AccountConfig,
        [],
        env={"FEEDCHAT_AUTH_SECRET": GOOD_AUTH, "FEEDCHAT_SERVICE_SECRET": GOOD_SERVICE},
    )
    assert config.auth_secret == GOOD_AUTH and not config.dev


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"auth_secret": "short", "service_secret": GOOD_SERVICE}, "at least 32"),
        ({"auth_secret": GOOD_AUTH, "service_secret": GOOD_AUTH}, "differ"),
        ({"access_token_ttl": 0.0, "dev": True}, "access_token_ttl"),
        ({"refresh_token_ttl": 10.0, "dev": True}, "refresh_token_ttl"),
        ({"login_max_per_peer": 0, "dev": True}, "login limits"),
    ],
)
def test_unusable_settings_fail_config(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(AccountConfig, [], env={}, **overrides)


def test_dev_mode_needs_no_secrets(make_config: Callable[..., Any]) -> None:
    assert make_config(AccountConfig).dev


async def test_process_without_secrets_exits_at_start_up(
    make_config: Callable[..., Any],
) -> None:
    config = make_config(AccountConfig)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "account_svc",
        "--etcd",
        config.etcd,
        "--redis-url",
        config.redis_url,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"auth_secret" in stderr
