"""Schemathesis hooks for tests/api/test_api_fuzz.py (loaded by the fuzzing run's config, not by pytest).

The one place the document cannot be exact: SPEC §1 and §5 make refusals that depend on stored records a 400:
two of `POST /v2/conversations` (a persona without a default replica and no replica given; a persona on a
transport we cannot provide) and one of send-app-message (the conversation is ended or in test mode, where the
hosted API answers 400). A stateful run that feeds stored records into those operations may meet them. The run
lets a 400 of those operations through `positive_data_acceptance` and this check holds each to exactly those.
"""

from __future__ import annotations

import schemathesis

STATE_DECIDED = {  # operation -> the `field`s of its state-decided 400s
    "POST /v2/conversations": {"persona.default_replica_id", "layers.transport.transport_type"},
    "POST /v2/conversations/{conversation_id}/send-app-message": {"conversation.status"},
}


@schemathesis.check
def only_stored_state_refuses_a_valid_conversation(ctx, response, case):
    meta = case.meta
    fields = STATE_DECIDED.get(case.operation.label)
    if fields is None or response.status_code != 400 or meta is None:
        return None
    if not meta.generation.mode.is_positive:
        return None
    body = response.json()
    if body.get("field") not in fields:
        raise AssertionError(f"a schema-valid request to {case.operation.label} was refused for "
                             f"{body.get('field')!r}: {body.get('error')}")
    return None
