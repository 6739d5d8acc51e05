"""`make demo` until the live pipeline lands: start a server, walk the API like a hosted-API client would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from omegaconf import OmegaConf

from cvi_lab.api.app import serve
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID


def _show(title: str, body: Any) -> None:
    print(f"\n== {title}\n{json.dumps(body, indent=2)}", flush=True)


async def walk(base: str, api_key: str | None, hold_s: float = 1.0) -> dict[str, Any]:
    """Persona -> conversation -> end, printing what a client sees. Returns the ended record."""
    headers = {"x-api-key": api_key} if api_key else {}
    async with aiohttp.ClientSession(base_url=base, headers=headers) as http:
        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, path, json=body) as resp:
                data = await resp.json()
                if resp.status >= 400:
                    raise RuntimeError(f"{method} {path} -> {resp.status}: {data.get('error')}")
                return data

        persona = await call("POST", "/v2/personas", {
            "persona_name": "Demo guide",
            "system_prompt": "You are a concise guide to the cvi-lab toolkit.",
            "context": "The user is trying cvi-lab for the first time.",
            "default_replica_id": DEFAULT_REPLICA_ID,
        })
        _show("persona created", persona)
        created = await call("POST", "/v2/conversations", {
            "persona_id": persona["persona_id"],
            "conversation_name": "cvi-lab demo",
            "conversational_context": "Greet the user and explain what a replica is.",
            "properties": {"max_call_duration": 600, "participant_absent_timeout": 120},
        })
        print(f"\nconversation_url: {created['conversation_url']}", flush=True)
        _show("conversation record", await call("GET", f"/v2/conversations/{created['conversation_id']}"))
        await asyncio.sleep(hold_s)  # usage accrues while the replica waits in the room
        ended = await call("POST", f"/v2/conversations/{created['conversation_id']}/end")
        print(f"\nshutdown_reason: {ended['shutdown_reason']}\nusage_seconds: {ended['usage_seconds']}", flush=True)
        return ended


async def _main(cfg: Any) -> int:
    cfg = OmegaConf.merge(cfg, {"server": {"port": 0}}) if OmegaConf.is_config(cfg) else cfg
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(cfg, ready=ready.set_result, stop=stop))
    done, _ = await asyncio.wait({server, ready}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        return server.result()
    keys = list(cfg.server.api_keys or [])
    try:
        await walk(ready.result(), keys[0] if keys else None)
    except (RuntimeError, aiohttp.ClientError) as exc:
        print(f"[cvi-lab] demo failed: {exc}", flush=True)
        return 1
    finally:
        stop.set()
        await server
    return 0


def main(cfg: Any) -> int:
    return asyncio.run(_main(cfg))
