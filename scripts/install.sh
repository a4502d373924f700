#!/usr/bin/env bash
# Install feedchat into ./.venv (and, with --test, the test tools and buf via npm).
# Idempotent: re-running only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -e '.[test]'
  npm ci --no-audit --no-fund --loglevel=error
  npm ci --prefix clients/node --no-audit --no-fund --loglevel=error
else
  .venv/bin/python -m pip install --quiet -e .
fi
