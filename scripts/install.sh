#!/usr/bin/env bash
# Install feedchat into ./.venv (and, with --test, the test tools and buf via npm).
# Idempotent: skips the install when nothing it depends on changed since the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mode=${1:-run}
stamp=.venv/.feedchat-installed-$mode
wanted=$(cat pyproject.toml package-lock.json clients/node/package-lock.json 2>/dev/null \
  | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x .venv/bin/feedchat ] \
   && { [ "$mode" != "--test" ] || [ -d node_modules ] && [ -d clients/node/node_modules ]; }; then
  echo "feedchat: .venv is up to date (pyproject.toml unchanged); not reinstalling" >&2
  exit 0
fi
started=$(date +%s)
echo "feedchat: installing into .venv ($mode)..." >&2
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
if [ "$mode" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -e '.[test]'
  npm ci --no-audit --no-fund --loglevel=error
  npm ci --prefix clients/node --no-audit --no-fund --loglevel=error
else
  .venv/bin/python -m pip install --quiet -e .
fi
echo "$wanted" > "$stamp"
echo "feedchat: installed in $(( $(date +%s) - started ))s" >&2
