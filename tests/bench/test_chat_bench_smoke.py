"""The chat bench in CI size: it runs end to end and reports every figure (not timed)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chat_bench.py"


@pytest.mark.timeout(240)
async def test_group_bench_in_ci_size_delivers_to_every_member_and_reports_figures() -> None:
    """2 groups of 6 members over 3 chat servers (and the broadcast baseline), every
    protocol opt-in on: each message reaches all other members, figures are printed."""
    options = "--mode group --groups 2 --members 6 --senders 1 --seconds 1"
    opt_ins = "--batch --no-echo --send-batch"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH),
        *options.split(),
        *opt_ins.split(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 220)
    report = out.decode()
    assert process.returncode == 0, err.decode()[-3000:]
    assert "with batch frames, no own echo, send batches" in report
    delivered = {
        name: float(rate)
        for name, rate in re.findall(r"  (chat|broadcast): delivered (\d+) msg/s", report)
    }
    assert delivered.keys() == {"chat", "broadcast"} and all(delivered.values()), report
    assert "never arrived" not in report and "streams ended early" not in report, report
    assert re.search(r"ratio chat/broadcast delivered \d+\.\d+", report), report
    assert re.search(r"CPU per delivered message at peak \(us\): chat client \d+", report), report
