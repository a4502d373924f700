#!/usr/bin/env bash
# Install feedchat into ./.venv, then start the whole system (`feedchat up`).
# Extra arguments go to `feedchat up` (see `.venv/bin/feedchat up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/feedchat up "$@"
