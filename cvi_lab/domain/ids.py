"""Record ids: a letter (c, p, r) plus lowercase hex, like the hosted API's; fixed ids for the seeded defaults."""

from __future__ import annotations

import re
import secrets

CONVERSATION = "c"
PERSONA = "p"
REPLICA = "r"

# Seeded at store initialisation (migration 2); fixed so configs and docs can name them.
DEFAULT_PERSONA_ID = "pdefa0017"
DEFAULT_REPLICA_ID = "rdefa0017"

_ID_RE = re.compile(r"^[cpr][0-9a-f]{4,40}$")


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(5)


def is_id(value: str, prefix: str | None = None) -> bool:
    return bool(_ID_RE.match(value or "")) and (prefix is None or value.startswith(prefix))
