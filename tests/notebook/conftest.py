"""A real cvi-lab server in a background thread on loopback (the notebook's own LocalServer), private home."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.config import make_cfg
from tests.helpers.quiet_runtime import QuietRuntime


class EventRuntime(QuietRuntime):
    """A runtime shaped like the engine for the panel: `subscribe(send)` takes live envelopes (the calls
    layer's endpoint hands it to the notebook), and the calls layer's real recorders (`call.add_event`,
    `call.add_turn_metrics`) keep what is stored. It stands in for the engine only; the server, store, API
    and widgets are the real ones."""

    instances: list["EventRuntime"] = []

    def __init__(self, call: Any, room: Any, cfg: Any) -> None:
        self.call = call
        self.conversation_id = call.conversation_id
        self.subscribers: list = []
        EventRuntime.instances.append(self)

    async def start(self) -> None:
        return None

    async def stop(self, reason: str) -> None:
        self.emit("system.shutdown", {"shutdown_reason": reason})

    def subscribe(self, send):
        self.subscribers.append(send)
        return lambda: self.subscribers.remove(send) if send in self.subscribers else None

    def emit(self, event_type: str, properties: dict, turn_idx: int = 0) -> None:
        for send in list(self.subscribers):
            send({"message_type": "conversation", "event_type": event_type, "properties": properties,
                  "conversation_id": self.call.conversation_id, "turn_idx": turn_idx})


@pytest.fixture
def make_server(tmp_path):
    from cvi_lab.notebook.server import LocalServer

    servers = []

    def make(with_runtime: bool = False, **server: Any) -> LocalServer:
        cfg = make_cfg(tmp_path / f"home{len(servers)}", runtimes=[], installers=[], **server)
        srv = LocalServer(cfg, runtime_factories=[EventRuntime] if with_runtime else [], live=False)
        servers.append(srv)
        return srv

    EventRuntime.instances.clear()
    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def event_runtimes() -> list[EventRuntime]:
    """The EventRuntime instances created by servers made with `make_server(with_runtime=True)`."""
    return EventRuntime.instances
