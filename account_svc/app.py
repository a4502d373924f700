"""account_svc process wiring: PostgreSQL (migrated at start), Redis, worker id, hashing
pool, servicer, ServiceHost."""

from __future__ import annotations

import asyncio
import logging

from account_svc.accounts import Accounts, LoginLimits
from account_svc.config import AccountConfig
from account_svc.content import FeedContent
from account_svc.passwords import PasswordHashing
from account_svc.servicer import PUBLIC_METHODS, AccountServicer, add_account_service
from account_svc.store import AccountStore
from feedchat_runtime import redis_client
from feedchat_runtime.auth import TokenAuthority, authority_from_config
from feedchat_runtime.directory import ServiceDirectory
from feedchat_runtime.interceptors import AuthPolicy
from feedchat_runtime.postgres import open_database
from feedchat_runtime.server import ServiceHost
from feedchat_runtime.snowflake import WorkerIdClaim

logger = logging.getLogger(__name__)

REGISTRY_NAME = "account"

# GetProfile, GetUsers and LookupUsername take a user token or a service credential;
# UpdateProfile checks for a user itself. Nothing here is service-only.
POLICY = AuthPolicy(public=PUBLIC_METHODS)


def token_authority(config: AccountConfig) -> TokenAuthority:
    """The issuing authority, with this service's configured token lifetimes."""
    authority = authority_from_config(config.auth_secret, config.service_secret, config.dev)
    authority.access_ttl = config.access_token_ttl
    authority.refresh_ttl = config.refresh_token_ttl
    return authority


async def build(config: AccountConfig) -> ServiceHost:
    """An opened, built (not yet started) host serving AccountService.

    Tests call ``await host.start()`` / ``await host.stop()``; :func:`serve` runs it.
    """
    host = ServiceHost(config, REGISTRY_NAME)
    await host.open()
    try:
        db = await open_database(
            config.postgres_url, REGISTRY_NAME, "account_svc", config.postgres_pool_size
        )
    except BaseException:
        await host.session.close(revoke=True)
        raise
    host.on_stop(db.close)
    host.dependencies.add("postgres", db.ping)
    redis = redis_client.connect_any(config.redis_url)
    host.dependencies.add("redis", redis.ping)
    passwords = PasswordHashing(
        config.argon2_time_cost,
        config.argon2_memory_kib,
        config.argon2_parallelism,
        config.hash_workers,
    )
    host.on_stop(redis.aclose)
    host.on_stop(passwords.close)
    directory = ServiceDirectory(host.session, config, host.authority, REGISTRY_NAME)
    host.on_stop(directory.close)
    try:
        claim = WorkerIdClaim(host.session)
        await claim.acquire()
        accounts = Accounts(
            store=AccountStore.over(db, redis),
            authority=token_authority(config),
            passwords=passwords,
            next_id=claim.generator().next_id,
            limits=LoginLimits(
                config.login_window,
                config.login_max_per_username,
                config.login_max_per_peer,
                config.signup_window,
                config.signup_max_per_peer,
            ),
            content=FeedContent(directory),
            username_hold=config.username_hold,
        )
        servicer = AccountServicer(accounts)
        host.build(lambda server: add_account_service(server, servicer), POLICY)
    except BaseException:
        await redis.aclose()
        await db.close()
        await passwords.close()
        await directory.close()
        await host.session.close(revoke=True)
        raise
    _retry_content_removals(host, accounts, config.content_retry_interval)
    return host


def _retry_content_removals(host: ServiceHost, accounts: Accounts, interval: float) -> None:
    """Retry, every ``interval`` seconds, the feed removals deleted accounts still owe
    (the feed was unreachable when the account was deleted)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await accounts.remove_pending_content()
            except Exception:
                logger.exception("retrying feed removals failed")

    host.background(loop(), "account-content-removals")


async def serve(config: AccountConfig) -> None:
    host = await build(config)
    await host.run()
