"""The cvi-lab server in this process: `cvi-lab serve`, the demo, the lab's live mode, the notebook, the
benchmarks and the e2e tests all start it here, the same way.

Why one: each used to bind its own aiohttp site and read the port from private fields. Here the app is
`create_app(cfg)`, served with public aiohttp API only (`web.AppRunner`, `web.TCPSite`, the bound port read
from `AppRunner.addresses`), and the manager learns the real base URL before the first conversation, so a
`conversation_url` carries the port that was actually bound (port 0 = a free one).

    async with private_server(cfg) as srv:     # = InProcessServer(loopback_config(cfg, a temporary home))
        conv = await srv.api("POST", "/v2/conversations", {...})
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiohttp
from aiohttp import web
from omegaconf import OmegaConf

from cvi_lab.api.app import Installer, base_url, create_app
from cvi_lab.calls.runtime import RuntimeFactory
from cvi_lab.calls.settings import server_settings
from cvi_lab.clock import Clock

LOOPBACK = "127.0.0.1"


def loopback_config(cfg: Any, home: str | Path, **server: Any) -> Any:
    """A copy of `cfg` whose server is private: a free loopback port, no keys, its store and artifacts under
    `home`; `server` keys (dotted ok) are merged last."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    home = Path(home).resolve()
    OmegaConf.update(out, "server", {"host": LOOPBACK, "port": 0, "api_keys": [], "public_url": None,
                                     "home": str(home), "store": {"path": str(home / "cvi-lab.db")},
                                     "artifacts_dir": str(home / "artifacts")}, merge=True)
    for key, value in server.items():
        OmegaConf.update(out, f"server.{key}", value, merge=True)
    return out


class InProcessServer:
    """`create_app(cfg)` listening on `server.host:server.port` of `cfg` until `stop()` (an async context
    manager too). `start()` raises OSError when the address cannot be bound."""

    def __init__(self, cfg: Any, *, clock: Clock | None = None, installers: Iterable[Installer] = (),
                 runtime_factories: Iterable[RuntimeFactory] = (), http_timeout_s: float = 60.0) -> None:
        self.cfg = cfg
        self.settings = server_settings(cfg)["server"]
        self._plugins = {"clock": clock, "installers": list(installers), "runtime_factories": list(runtime_factories)}
        self.app: web.Application | None = None  # built by start(), on the loop that serves it
        self.http_timeout_s = http_timeout_s
        self.port: int | None = None
        self.base: str | None = None  # http://host:port, as conversation_urls carry it
        self.http: aiohttp.ClientSession | None = None  # for `api()`, bound to `base`
        self.runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return str(self.settings["host"])

    @property
    def local_url(self) -> str:
        """Where this process reaches the server (loopback when it listens on every interface)."""
        host = LOOPBACK if self.host in ("0.0.0.0", "") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.runner is not None

    async def start(self) -> "InProcessServer":
        self.app = create_app(self.cfg, **self._plugins)
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, int(self.settings["port"])).start()
        except OSError:
            await runner.cleanup()
            raise
        self.runner = runner
        self.port = int(runner.addresses[0][1])
        self.base = base_url(self.settings, self.port)
        self.app["manager"].base_url = self.base
        self.http = aiohttp.ClientSession(base_url=self.local_url,
                                          timeout=aiohttp.ClientTimeout(total=self.http_timeout_s))
        return self

    async def stop(self) -> None:
        """End live conversations (server_shutdown), close the store and the port. Idempotent."""
        http, self.http = self.http, None
        if http is not None:
            await http.close()
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> "InProcessServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ------------------------------------------------------------------ what the callers read
    async def api(self, method: str, path: str, body: Any = None, ok: bool = True) -> Any:
        """One API request. ok=True: the JSON body, raising on an error status; ok=False: (status, body)."""
        if self.http is None:
            raise RuntimeError("the server is not running; start() it first")
        async with self.http.request(method, path, json=body) as resp:
            data = await resp.json(content_type=None) if resp.status != 204 else None
            if ok and resp.status >= 400:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {(data or {}).get('error')}")
            return data if ok else (resp.status, data)

    async def wait_status(self, conversation_id: str, status: str = "ended", timeout: float = 30.0) -> dict:
        """Poll the record until it has `status` (or the timeout); returns the last record."""
        deadline = time.monotonic() + timeout
        while True:
            rec = await self.api("GET", f"/v2/conversations/{conversation_id}")
            if rec.get("status") == status or time.monotonic() > deadline:
                return rec
            await asyncio.sleep(0.2)

    def turn_metrics(self, conversation_id: str) -> list[dict]:
        """The engine's stored per-turn latency records ({turn_idx, metrics, created_at})."""
        return self.app["store"].turn_metrics(conversation_id)

    def outbound_audio(self, conversation_id: str) -> dict[str, float]:
        """The server's outbound audio counters for a live call (summed over its peers): replica audio dropped
        because the queue overflowed (a producer burst after a stalled loop), cut on barge-in, and underruns
        (the queue ran dry mid-speech). Zeros when the call has no room (ended, or no transport)."""
        from cvi_lab.transport.signaling import TRANSPORT_KEY

        transport = self.app.get(TRANSPORT_KEY)
        room = transport.rooms.get(conversation_id) if transport is not None else None
        peers = list(room.peers.values()) if room is not None else []
        return {"dropped_ms": round(sum(p.audio_out.dropped_samples for p in peers) / 48.0, 1),
                "cut_on_barge_in_ms": round(sum(p.audio_out.cut_samples for p in peers) / 48.0, 1),
                "underruns": sum(p.audio_out.underruns for p in peers)}


@contextlib.asynccontextmanager
async def private_server(cfg: Any, home: str | Path | None = None, **server: Any) -> AsyncIterator[InProcessServer]:
    """A running loopback server (`loopback_config`) whose home is `home`, or a temporary folder removed
    after it stops; `server` keys are merged into its config."""
    with contextlib.ExitStack() as stack:
        if home is None:
            home = stack.enter_context(tempfile.TemporaryDirectory(prefix="cvi-lab-server-"))
        async with InProcessServer(loopback_config(cfg, home, **server)) as srv:
            yield srv
