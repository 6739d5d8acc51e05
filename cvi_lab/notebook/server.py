"""The cvi-lab server inside the notebook kernel (on its own loop thread), or a handle on a running one.

Why in the kernel: one `start_server()` gives the notebook the same API `cvi-lab serve` gives, bound to
loopback (so the meeting page in an iframe may use the microphone), plus direct reads the REST API does not
offer yet: per-turn latency records from the store and the engine's live events (speaking state). The server
is the harness's `InProcessServer` (cvi_lab/harness/server.py), run on a background loop thread because the
kernel's own loop is busy. `connect(url)` is the other way in: the REST API only.
"""

from __future__ import annotations

import atexit
import os
import pathlib
from typing import Any, Callable, Sequence

from cvi_lab.harness.server import InProcessServer
from cvi_lab.notebook.client import ApiClient, flatten_turn
from cvi_lab.notebook.loop import BackgroundLoop

REPO = pathlib.Path(__file__).resolve().parents[2]
EventCallback = Callable[[dict], None]
PLUGIN_KEYS = ("runtimes", "installers")  # the engine and the WebRTC transport, as `server` config lists them


def default_home() -> pathlib.Path:
    """$CVI_LAB_HOME, else <repo>/var (what `make serve` uses), whatever the notebook's working directory."""
    return pathlib.Path(os.environ.get("CVI_LAB_HOME") or REPO / "var").resolve()


def api_only(cfg: Any) -> Any:
    """The config without the engine runtime and the WebRTC transport: conversations are records and timers."""
    from omegaconf import OmegaConf

    return OmegaConf.merge(cfg, {"server": {key: [] for key in PLUGIN_KEYS}})


class RemoteServer:
    """A server someone else started: the REST API only (no store reads, no live events)."""

    in_process: bool = False  # True: the server runs in this kernel (store reads, live events)

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key

    def client(self, timeout: float = 180.0) -> ApiClient:
        return ApiClient(self.url, self.api_key, timeout)

    def turn_metrics(self, conversation_id: str) -> list[dict[str, Any]] | None:
        return self.client().turn_metrics(conversation_id)

    def subscribe_events(self, conversation_id: str, callback: EventCallback) -> Callable[[], None] | None:
        return None

    def languages(self) -> list[str]:
        return ["english", "multilingual"]

    def stop(self) -> None:  # not ours to stop
        return None


class LocalServer(RemoteServer):
    """The harness's `InProcessServer` on 127.0.0.1 (a free port by default), run from a background loop
    thread; `live=False` serves the API only."""

    in_process: bool = True

    def __init__(self, cfg: Any = None, *, overrides: Sequence[str] = (), home: str | os.PathLike | None = None,
                 port: int = 0, start_timeout: float = 120.0, runtime_factories: Sequence[Any] = (),
                 installers: Sequence[Any] = (), live: bool = True) -> None:
        from omegaconf import OmegaConf

        if cfg is None:
            from cvi_lab.cli import compose_config

            cfg = compose_config([f"server.home={pathlib.Path(home or default_home()).resolve()}", *overrides])
        elif home is not None:
            cfg = OmegaConf.merge(cfg, {"server": {"home": str(pathlib.Path(home).resolve())}})
        cfg = OmegaConf.merge(cfg, {"server": {"host": "127.0.0.1", "port": int(port)}})
        self.cfg = cfg if live else api_only(cfg)
        keys = [str(k) for k in (cfg.server.get("api_keys") or []) if k]
        self._loop = BackgroundLoop("cvi-lab-server")
        self._server = InProcessServer(self.cfg, installers=installers, runtime_factories=runtime_factories)
        try:
            self._loop.run(self._server.start(), start_timeout)
        except BaseException:
            self._loop.stop()
            raise
        super().__init__(self._server.local_url, keys[0] if keys else None)
        atexit.register(self.stop)

    @property
    def running(self) -> bool:
        return self._server.running and self._loop.running

    @property
    def app(self) -> Any:
        return self._server.app

    @property
    def store(self) -> Any:
        return self.app["store"]

    def turn_metrics(self, conversation_id: str) -> list[dict[str, Any]]:
        """Per-turn latency records straight from the store (the REST API has no route for them yet)."""
        rows = self._loop.call(self.store.turn_metrics, conversation_id)
        return [flatten_turn(r) for r in rows]

    def subscribe_events(self, conversation_id: str, callback: EventCallback) -> Callable[[], None] | None:
        """Subscribe `callback(event)` to the live call's engine events (data-channel envelopes, including
        speaking state), when the conversation is live and a runtime serves it (`CallEndpoint.subscribe`).
        Returns the unsubscribe function, None when there is nothing to follow.
        The callback runs on the server's loop thread: keep it short and thread-safe."""

        def find() -> Callable[[], None] | None:
            endpoint = self.app["manager"].endpoint_for(conversation_id)  # a transport CallEndpoint
            return endpoint.subscribe(callback) if endpoint is not None else None

        unsubscribe = self._loop.call(find)
        if unsubscribe is None:
            return None
        return lambda: self._loop.call(unsubscribe) if self.running else None

    def languages(self) -> list[str]:
        supported = list(self.app["manager"].languages.supported())
        return supported + ([] if "multilingual" in supported else ["multilingual"])

    def stop(self) -> None:
        """End live calls (reason server_shutdown), close the store, stop the loop thread. Idempotent."""
        if self.running:
            try:
                self._loop.run(self._server.stop(), 60)
            finally:
                self._loop.stop()
        global _CURRENT
        if _CURRENT is self:
            _CURRENT = None

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalServer({self.url}, {'running' if self.running else 'stopped'})"


_CURRENT: LocalServer | None = None


def start_server(*overrides: str, home: str | os.PathLike | None = None, port: int = 0, cfg: Any = None,
                 live: bool = True) -> LocalServer:
    """The kernel's server, started on first use: re-running the cell returns the same one.

    `overrides` are `cvi-lab serve` Hydra overrides, e.g. `start_server("llm.max_new_tokens=32")`;
    `live=False` serves the API only (no engine, no WebRTC: conversations are records and timers)."""
    global _CURRENT
    if _CURRENT is not None and _CURRENT.running:
        return _CURRENT
    _CURRENT = LocalServer(cfg, overrides=overrides, home=home, port=port, live=live)
    return _CURRENT


def connect(url: str, api_key: str | None = None) -> RemoteServer:
    """A server started elsewhere (`make serve`), checked with GET /health."""
    server = RemoteServer(url, api_key)
    server.client(timeout=10).health()
    return server
