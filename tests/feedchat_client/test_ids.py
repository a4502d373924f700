"""`feedchat id` and the client's id decoder agree with the servers' Snowflake layout."""

from __future__ import annotations

import json
import subprocess
import sys

from feedchat_client.ids import decode
from feedchat_runtime.snowflake import compose

WHEN_MS = 1_796_290_000_123  # 2026-12-03T09:26:40.123Z


def test_decoder_reads_back_what_the_servers_compose() -> None:
    for worker, sequence in ((0, 0), (1023, 4095), (7, 42)):
        parts = decode(compose(WHEN_MS, worker, sequence))
        assert (parts.unix_ms, parts.worker, parts.sequence) == (WHEN_MS, worker, sequence)


def test_id_command_prints_time_worker_and_sequence_and_refuses_non_ids() -> None:
    snowflake = compose(WHEN_MS, 5, 9)
    done = subprocess.run(
        [sys.executable, "-m", "feedchat_local.cli", "id", str(snowflake), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [line] = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["time"] == "2026-12-03T09:26:40.123Z"
    assert (line["worker"], line["sequence"], line["id"]) == (5, 9, str(snowflake))
    refused = subprocess.run(
        [sys.executable, "-m", "feedchat_local.cli", "id", "hello"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "not a feedchat id" in refused.stderr and "Traceback" not in refused.stderr
