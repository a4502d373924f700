"""Configuration: flags over FEEDCHAT_* variables over defaults; failing early."""

from __future__ import annotations

import pytest

from feedchat_runtime.config import ConfigError, ServiceConfig, load_config

SECRETS = {"FEEDCHAT_AUTH_SECRET": "a" * 32, "FEEDCHAT_SERVICE_SECRET": "b" * 32}


def test_flag_beats_environment_beats_default() -> None:
    env = {**SECRETS, "FEEDCHAT_PORT": "7000", "FEEDCHAT_REDIS_URL": "redis://env:1/0"}
    config = load_config(ServiceConfig, ["--port", "7001"], env=env)
    assert config.port == 7001
    assert config.redis_url == "redis://env:1/0"
    assert config.lease_ttl == 5


def test_missing_secrets_outside_dev_fail_at_startup() -> None:
    with pytest.raises(ConfigError, match="auth_secret"):
        load_config(ServiceConfig, [], env={})
    assert load_config(ServiceConfig, ["--dev"], env={}).dev is True


def test_malformed_values_are_named() -> None:
    with pytest.raises(ConfigError, match="port"):
        load_config(ServiceConfig, [], env={**SECRETS, "FEEDCHAT_PORT": "eighty"})
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load_config(ServiceConfig, ["--tls-cert", "c.pem"], env=SECRETS)
    with pytest.raises(ConfigError, match="boolean"):
        load_config(ServiceConfig, [], env={**SECRETS, "FEEDCHAT_DEV": "maybe"})
