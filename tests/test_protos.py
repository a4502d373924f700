"""The protos are the product's face: generated code is fresh and `buf lint` passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_matches_protos() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_buf_lint_passes() -> None:
    buf = ROOT / "node_modules" / ".bin" / "buf"
    assert buf.exists(), "buf missing: run `npm ci` in the repository root"
    result = subprocess.run(
        [str(buf), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_protos_stay_wire_compatible_with_the_baseline() -> None:
    """`buf breaking` against the commit named in protos/BREAKING_BASELINE.

    That commit is the last released shape of the v1 APIs. A deliberate break means a new
    version package (v2), not an edit of v1; the baseline moves forward only on release.
    """
    buf = ROOT / "node_modules" / ".bin" / "buf"
    assert buf.exists(), "buf missing: run `npm ci` in the repository root"
    lines = (ROOT / "protos" / "BREAKING_BASELINE").read_text().splitlines()
    baseline = next(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    result = subprocess.run(
        [str(buf), "breaking", "--against", f".git#ref={baseline}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
