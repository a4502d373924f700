"""account_svc settings: token lifetimes, password hashing cost, login rate limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedchat_runtime.config import ConfigError, ServiceConfig

MIN_SECRET_CHARS = 32
"""HS256 keys shorter than the hash output (32 bytes) weaken the signature."""


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class AccountConfig(ServiceConfig):
    """Settings of one account_svc process."""

    access_token_ttl: float = _opt(900.0, "Seconds an access token stays valid.")
    refresh_token_ttl: float = _opt(
        30 * 86400.0, "Seconds a refresh token stays valid (each one works once)."
    )
    argon2_time_cost: int = _opt(3, "argon2id passes over memory (time cost).")
    argon2_memory_kib: int = _opt(65536, "argon2id memory per hash, in KiB.")
    argon2_parallelism: int = _opt(4, "argon2id lanes (parallelism).")
    hash_workers: int = _opt(
        2, "Threads hashing passwords at once (each holds --argon2-memory-kib while it runs)."
    )
    login_window: float = _opt(300.0, "Seconds of the login rate-limit window.")
    login_max_per_username: int = _opt(
        10, "Failed or in-flight logins allowed per username per window."
    )
    login_max_per_peer: int = _opt(
        50, "Failed or in-flight logins allowed per client address per window."
    )
    signup_window: float = _opt(3600.0, "Seconds of the sign-up rate-limit window.")
    signup_max_per_peer: int = _opt(50, "Sign-up attempts allowed per client address per window.")
    username_hold: float = _opt(
        30 * 86400.0, "Seconds a deleted account's username stays reserved."
    )
    content_retry_interval: float = _opt(
        30.0, "Seconds between retries of feed removals owed for deleted accounts."
    )

    def validate(self) -> None:
        super().validate()
        if self.access_token_ttl <= 0:
            raise ConfigError("access_token_ttl must be positive")
        if self.refresh_token_ttl <= self.access_token_ttl:
            raise ConfigError("refresh_token_ttl must be longer than access_token_ttl")
        if self.argon2_time_cost < 1 or self.argon2_parallelism < 1:
            raise ConfigError("argon2_time_cost and argon2_parallelism must be at least 1")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ConfigError("argon2_memory_kib must be at least 8 x argon2_parallelism")
        if self.hash_workers < 1:
            raise ConfigError("hash_workers must be at least 1")
        if self.login_window <= 0:
            raise ConfigError("login_window must be positive")
        if self.login_max_per_username < 1 or self.login_max_per_peer < 1:
            raise ConfigError("login limits must be at least 1")
        if self.signup_window <= 0 or self.signup_max_per_peer < 1:
            raise ConfigError("signup_window must be positive and signup_max_per_peer >= 1")
        if self.username_hold < 0:
            raise ConfigError("username_hold must not be negative")
        if self.content_retry_interval <= 0:
            raise ConfigError("content_retry_interval must be positive")
        if not self.dev:
            for name in ("auth_secret", "service_secret"):
                if len(getattr(self, name)) < MIN_SECRET_CHARS:
                    raise ConfigError(f"{name} must be at least {MIN_SECRET_CHARS} characters")
            if self.auth_secret == self.service_secret:
                raise ConfigError("auth_secret and service_secret must differ")
