"""docs/limits.md says the truth: every configurable default it lists is the code's."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from account_svc.config import AccountConfig
from chat_svc.config import ChatConfig
from feed_svc.config import FeedConfig
from feedchat_runtime.config import ServiceConfig
from notify_svc.config import NotifyConfig
from presence_svc.config import PresenceConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "limits.md"
CONFIGS: dict[str, type[ServiceConfig]] = {
    "all": ServiceConfig,
    "account": AccountConfig,
    "feed": FeedConfig,
    "chat": ChatConfig,
    "presence": PresenceConfig,
    "notify": NotifyConfig,
}
ROW = re.compile(r"^\| (\w+) \| [^|]+ \| ([\d.]+) \| `--([\w-]+)` \|", re.M)


def test_every_configurable_limit_in_the_doc_is_the_codes_default() -> None:
    rows = ROW.findall(DOC.read_text())
    assert len(rows) >= 25, "the table's rows were not found"
    wrong = []
    for service, documented, flag in rows:
        fields = {f.name: f for f in dataclasses.fields(CONFIGS[service])}
        name = flag.replace("-", "_")
        assert name in fields, f"{service} has no flag --{flag}"
        default = fields[name].default
        assert isinstance(default, int | float), f"{service} --{flag} has no number default"
        if float(documented) != float(default):
            wrong.append(f"{service} --{flag}: doc {documented}, code {default}")
    assert not wrong, wrong
