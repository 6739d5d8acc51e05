"""Schemathesis hooks for tests/api/test_api_fuzz.py (loaded by the fuzzing run's config, not by pytest).

The one place the document cannot be exact: SPEC §1 and §5 make two refusals of `POST /v2/conversations`
that depend on stored records a 400 (a persona without a default replica and no replica given; a persona on a
transport we cannot provide). A stateful run that feeds a stored PAL into a conversation may meet them. The run
lets a 400 of that operation through `positive_data_acceptance` and this check holds it to exactly those two.
"""

from __future__ import annotations

import schemathesis

STATE_DECIDED = {"persona.default_replica_id", "layers.transport.transport_type"}
OPERATION = "POST /v2/conversations"


@schemathesis.check
def only_stored_state_refuses_a_valid_conversation(ctx, response, case):
    meta = case.meta
    if case.operation.label != OPERATION or response.status_code != 400 or meta is None:
        return None
    if not meta.generation.mode.is_positive:
        return None
    body = response.json()
    if body.get("field") not in STATE_DECIDED:
        raise AssertionError(f"a schema-valid conversation was refused for {body.get('field')!r}: {body.get('error')}")
    return None
