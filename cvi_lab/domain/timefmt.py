"""ISO 8601 UTC timestamps as the API returns them (millisecond precision, `Z` suffix)."""

from __future__ import annotations

from datetime import datetime, timezone


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
