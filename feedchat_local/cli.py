"""The `feedchat` command: `feedchat up` runs the local system, `feedchat status` lists it;
the client commands (signup, login, post, feed, chat, ...) come from feedchat_client.cli."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from feedchat_local.cluster import Cluster, ClusterConfig, StartupError, render_table
from feedchat_local.embedded import FSYNC_POLICIES
from feedchat_local.services import SERVICES
from feedchat_local.topology import topology_lines
from feedchat_runtime.logs import setup_logging
from feedchat_runtime.registry import EtcdSession, list_members


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FEEDCHAT_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedchat", description=__doc__)
    parser.add_argument(
        "--json",
        dest="json_first",
        action="store_true",
        help="JSON lines output (also accepted after the command)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", help="start etcd, Redis, PostgreSQL and every service, supervised"
    )
    up.add_argument(
        "--data-dir",
        default=_env("DATA_DIR", ".feedchat-data"),
        help="data, logs and secrets folder, kept between runs [FEEDCHAT_DATA_DIR]",
    )
    up.add_argument("--host", default="127.0.0.1", help="interface every server listens on")
    # No FEEDCHAT_ETCD default here: that variable tells the client commands where a
    # cluster is; `up` starts its own etcd unless --etcd names an external one.
    up.add_argument(
        "--etcd", default="", help="external etcd host:port instead of the embedded one"
    )
    up.add_argument(
        "--etcd-members",
        type=int,
        default=1,
        help="members of the embedded etcd (3: a local etcd cluster on "
        "consecutive ports from --etcd-port)",
    )
    up.add_argument(
        "--etcd-port",
        type=int,
        default=None,
        help="embedded etcd's client port (default 2379 + --port-offset)",
    )
    up.add_argument(
        "--redis-url",
        default=_env("REDIS_URL", ""),
        help="external Redis URL instead of the embedded one [FEEDCHAT_REDIS_URL]",
    )
    up.add_argument(
        "--redis-port",
        type=int,
        default=None,
        help="embedded Redis's port (default 6379 + --port-offset)",
    )
    up.add_argument(
        "--redis-cluster",
        type=int,
        default=0,
        metavar="N",
        help="start a local Redis Cluster instead: N masters with one replica "
        "each on 2N consecutive ports from --redis-port; only the "
        "services that run on a cluster are started",
    )
    up.add_argument(
        "--postgres-url",
        default=_env("POSTGRES_URL", ""),
        help="external PostgreSQL URL instead of the embedded one [FEEDCHAT_POSTGRES_URL]",
    )
    up.add_argument(
        "--postgres-port",
        type=int,
        default=None,
        help="embedded PostgreSQL's port (default 5432 + --port-offset)",
    )
    up.add_argument(
        "--fsync",
        choices=FSYNC_POLICIES,
        default="everysec",
        help="embedded Redis appendfsync: everysec (default; a power cut can lose "
        "about the last second of acked messages) or always (none, slower; "
        "see docs/operations.md)",
    )
    up.add_argument("--etcd-prefix", default=_env("ETCD_PREFIX", "/feedchat"))
    up.add_argument("--chat-servers", type=int, default=3, help="number of chat servers")
    up.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="added to every port: services (account 50051, feed 50052, ...) and "
        "the embedded etcd and Redis; a second cluster on one machine needs "
        "only this and its own --data-dir",
    )
    up.add_argument(
        "--only",
        default="",
        help="comma-separated services to start (account,feed,...); default all",
    )

    status = commands.add_parser("status", help="list the instances registered in etcd")
    status.add_argument("--etcd", default=_env("ETCD", "127.0.0.1:2379"))
    status.add_argument("--etcd-prefix", default=_env("ETCD_PREFIX", "/feedchat"))
    status.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per instance (address, metrics URL, ...)",
    )
    # signup, login, post, follow, feed, chat, presence, ...: feedchat_client's commands.
    from feedchat_client import cli as client_cli

    client_cli.add_commands(commands)
    return parser


async def _status(etcd: str, prefix: str, as_json: bool) -> int:
    session = EtcdSession(etcd, prefix)
    try:
        members = await asyncio.wait_for(list_members(session.client, prefix), 5)
        topology = (
            [] if as_json else await asyncio.wait_for(topology_lines(session.client, prefix), 5)
        )
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not trace
        print(f"cannot read the registry at {etcd}: {exc}", file=sys.stderr)
        return 1
    finally:
        await session.client.close()
    if as_json:
        for member in members:
            print(json.dumps(dataclasses.asdict(member), sort_keys=True))
    else:
        print("\n".join([*topology, "", render_table(members, etcd, "")]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "json"):
        args.json = args.json or args.json_first
    if args.command not in ("up", "status"):
        from feedchat_client import cli as client_cli

        return client_cli.run(args)
    setup_logging("feedchat", "INFO", "text")
    if args.command == "up":
        if args.chat_servers < 1:
            raise SystemExit("--chat-servers must be at least 1")
        if args.etcd_members not in (1, 3, 5):
            raise SystemExit("--etcd-members must be 1, 3 or 5")
        lowest = min(s.base_port for s in SERVICES) + args.port_offset
        highest = max(s.base_port for s in SERVICES) + args.chat_servers + args.port_offset
        if lowest < 1024 or highest > 65535:
            raise SystemExit("--port-offset puts service ports outside 1024-65535")
        if args.etcd and args.etcd_port is not None:
            raise SystemExit(
                "--etcd-port is the embedded etcd's port; --etcd names an "
                "external one: give one of them"
            )
        if args.redis_cluster and args.redis_url:
            raise SystemExit(
                "--redis-cluster starts a local Redis Cluster; --redis-url names "
                "an external Redis: give one of them"
            )
        if args.redis_cluster < 0 or args.redis_cluster in (1, 2):
            raise SystemExit(
                "--redis-cluster needs at least 3 masters (a cluster elects a "
                "failed master's replica by a majority of masters)"
            )
        if args.redis_url and args.redis_port is not None:
            raise SystemExit(
                "--redis-port is the embedded Redis's port; --redis-url names "
                "an external one: give one of them"
            )
        if args.postgres_url and args.postgres_port is not None:
            raise SystemExit(
                "--postgres-port is the embedded PostgreSQL's port; --postgres-url "
                "names an external one: give one of them"
            )
        etcd_port = 2379 + args.port_offset if args.etcd_port is None else args.etcd_port
        redis_port = 6379 + args.port_offset if args.redis_port is None else args.redis_port
        postgres_port = (
            5432 + args.port_offset if args.postgres_port is None else args.postgres_port
        )
        for name, port in (("etcd", etcd_port), ("redis", redis_port), ("postgres", postgres_port)):
            if not 1024 <= port <= 65535:
                raise SystemExit(f"the embedded {name} port {port} is outside 1024-65535")
        if args.redis_cluster and redis_port + 2 * args.redis_cluster - 1 + 10000 > 65535:
            raise SystemExit(
                "--redis-cluster's cluster bus ports (Redis port + 10000) would "
                "pass 65535: give a lower --redis-port"
            )
        config = ClusterConfig(
            data_dir=Path(args.data_dir).resolve(),
            host=args.host,
            etcd=args.etcd,
            etcd_port=etcd_port,
            redis_url=args.redis_url,
            redis_port=redis_port,
            postgres_url=args.postgres_url,
            postgres_port=postgres_port,
            etcd_prefix=args.etcd_prefix,
            chat_servers=args.chat_servers,
            only=tuple(s for s in args.only.split(",") if s),
            port_offset=args.port_offset,
            etcd_members=args.etcd_members,
            fsync=args.fsync,
            redis_cluster=args.redis_cluster,
        )
        try:
            return asyncio.run(Cluster(config, dict(os.environ)).run())
        except StartupError as exc:
            print(f"feedchat up: {exc}", file=sys.stderr)
            return 1
    return asyncio.run(_status(args.etcd, args.etcd_prefix, args.json))


if __name__ == "__main__":
    sys.exit(main())
