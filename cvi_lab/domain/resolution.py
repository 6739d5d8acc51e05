"""Which persona and which replica a new conversation uses (SPEC §1 resolution rules)."""

from __future__ import annotations

from typing import Any, Callable

from cvi_lab.domain.errors import Conflict, InvalidInput, NotFound
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID
from cvi_lab.domain.persona import SERVED_TRANSPORTS, transport_of

Lookup = Callable[[str], "dict[str, Any] | None"]


def resolve_persona_replica(
    persona_id: str | None,
    replica_id: str | None,
    get_persona: Lookup,
    get_replica: Lookup,
    default_persona_id: str = DEFAULT_PERSONA_ID,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """replica only -> default persona; persona only -> its default replica; both -> the given replica wins.
    (`pal_id`/`face_id` arrive here as persona_id/replica_id; messages name both.)"""
    if not persona_id and not replica_id:
        raise InvalidInput("persona_id or replica_id is required (give at least one; today's names: pal_id, face_id)",
                           field="persona_id")
    if persona_id:
        persona = get_persona(persona_id)
        if persona is None:
            raise NotFound(f"persona_id (pal_id) {persona_id!r} not found", field="persona_id")
    else:
        persona = get_persona(default_persona_id)
        if persona is None:
            raise NotFound(f"the default persona {default_persona_id!r} is missing; give a persona_id", field="persona_id")
    transport = transport_of(persona)
    if transport not in SERVED_TRANSPORTS:
        raise InvalidInput(
            f"persona (PAL) {persona['persona_id']!r} needs transport {transport!r}, which this server cannot "
            f"provide; supported: {', '.join(SERVED_TRANSPORTS)} (set its layers.transport.transport_type)",
            field="layers.transport.transport_type")
    if not replica_id:
        replica_id = persona.get("default_replica_id")
        if not replica_id:
            raise InvalidInput(
                f"persona (PAL) {persona['persona_id']!r} has no default_replica_id (default_face_id); give a "
                "replica_id (face_id)", field="persona.default_replica_id"
            )
        field = "persona.default_replica_id"
    else:
        field = "replica_id"
    replica = get_replica(replica_id)
    if replica is None:
        raise NotFound(f"replica_id (face_id) {replica_id!r} not found", field=field)
    if replica.get("status") != "completed":
        detail = f": {replica['error_message']}" if replica.get("error_message") else ""
        raise Conflict(  # the replica's build decides, not the request
            f"replica {replica_id!r} is not ready (status {replica.get('status')!r}{detail}); "
            "a replica with status 'completed' is accepted",
            field=field,
        )
    return persona, replica
