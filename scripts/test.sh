#!/usr/bin/env bash
# Install feedchat with its test tools into ./.venv, then lint and run every test.
# Tests start their own etcd and Redis (pip binaries) on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy feedchat_runtime feedchat_local feedchat_client account_svc feed_svc notify_svc chat_svc router presence_svc tests
.venv/bin/python -m pytest "$@"
