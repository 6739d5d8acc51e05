"""Installers that plug other layers into the server by conf (`server.installers: [dotted.path]`).

`install_transport` mounts the WebRTC meeting routes (cvi_lab/transport) on the API app: the transport
resolves a conversation to the `CallEndpoint` the calls layer composes for it (`manager.endpoint_for`,
cvi_lab/calls/endpoint.py), and closes its peers when the calls layer ends the conversation.
"""

from __future__ import annotations

from aiohttp import web


def install_transport(app: web.Application) -> None:
    from cvi_lab.transport.signaling import install_routes

    manager = app["manager"]
    transport = install_routes(app, manager.endpoint_for)
    manager.add_end_listener(lambda conversation_id, _reason: transport.close_conversation(conversation_id))
