"""Placeholder meeting page at /meet/{conversation_id}; the WebRTC transport replaces it with the real one."""

from __future__ import annotations

import html

from aiohttp import web

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>cvi-lab meeting {cid}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Conversation {cid}</h1>
<p>Status: <b>{status}</b>.</p>
<p>This server has no WebRTC transport installed yet, so the meeting page cannot join the call.
The conversation record is at <code>GET /v2/conversations/{cid}</code>.</p>
</body></html>
"""


async def meet_placeholder(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    record = request.app["store"].get_conversation(cid)
    status = 404 if record is None else 200
    return web.Response(
        text=PAGE.format(cid=html.escape(cid), status=html.escape(record["status"] if record else "unknown")),
        content_type="text/html", status=status,
    )
