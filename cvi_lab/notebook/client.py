"""A small synchronous client for the /v2 API, for notebook cells and widget callbacks.

Why synchronous and stdlib-only: notebook code is sequential and widget callbacks are plain functions; a
blocking `urllib` call needs no event loop and works the same against the in-kernel server or a remote one.
Errors become `ApiError` carrying the server's `error` text, which the panel shows as is.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiError(RuntimeError):
    """An HTTP error from the API (or the server could not be reached: status 0)."""

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        self.status, self.message, self.method, self.path = status, message, method, path
        where = f"{method} {path} -> " if method else ""
        super().__init__(f"{where}{'HTTP ' + str(status) if status else 'no answer'}: {message}")


class ApiClient:
    """`ApiClient("http://127.0.0.1:8765", api_key=None)`: one method per route the notebooks use."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 180.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout  # creating a conversation may load models the first time

    # ------------------------------------------------------------ transport
    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("accept", "application/json")
        if data is not None:
            req.add_header("content-type", "application/json")
        if self.api_key:
            req.add_header("x-api-key", self.api_key)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user-given URL
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw or b"{}")
                message = payload.get("error") or payload.get("message") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:300] or exc.reason
            raise ApiError(exc.code, str(message), method, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, f"cannot reach {self.base_url} ({reason}); is the server running?", method, path) from None
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------ routes
    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def create_persona(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v2/personas", body)

    def get_persona(self, persona_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v2/personas/{_q(persona_id)}")

    def list_personas(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.request("GET", "/v2/personas", query={"limit": limit})["data"]

    def delete_persona(self, persona_id: str) -> None:
        self.request("DELETE", f"/v2/personas/{_q(persona_id)}")

    def list_replicas(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.request("GET", "/v2/replicas", query={"limit": limit})["data"]

    def create_replica(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v2/replicas", body)

    def get_replica(self, replica_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v2/replicas/{_q(replica_id)}")

    def create_conversation(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v2/conversations", body)

    def get_conversation(self, conversation_id: str, verbose: bool = False) -> dict[str, Any]:
        return self.request("GET", f"/v2/conversations/{_q(conversation_id)}",
                            query={"verbose": "true"} if verbose else None)

    def list_conversations(self, status: str | None = None, limit: int = 10, page: int = 1) -> dict[str, Any]:
        return self.request("GET", "/v2/conversations", query={"status": status, "limit": limit, "page": page})

    def end_conversation(self, conversation_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v2/conversations/{_q(conversation_id)}/end")

    def delete_conversation(self, conversation_id: str) -> None:
        self.request("DELETE", f"/v2/conversations/{_q(conversation_id)}")

    def turn_metrics(self, conversation_id: str) -> list[dict[str, Any]] | None:
        """Per-turn latency records, or None when the server has no such route (yet)."""
        try:
            body = self.request("GET", f"/v2/conversations/{_q(conversation_id)}/turns")
        except ApiError as exc:
            if exc.status in (404, 405) and "conversation_id" not in exc.message:
                return None
            raise
        rows = body.get("data", body) if isinstance(body, dict) else body
        return [flatten_turn(r) for r in rows]


def flatten_turn(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row {turn_idx, metrics: {...}, created_at} -> the metrics dict with turn_idx."""
    metrics = row.get("metrics")
    if isinstance(metrics, str):
        metrics = json.loads(metrics)
    if isinstance(metrics, dict):
        return {**metrics, "turn_idx": row.get("turn_idx", metrics.get("turn_idx"))}
    return dict(row)


def _q(ident: str) -> str:
    return urllib.parse.quote(str(ident), safe="")
