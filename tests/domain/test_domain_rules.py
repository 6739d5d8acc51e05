"""Domain rules: SPEC §1-2 defaults, the system-message order, persona/replica resolution, persona layers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cvi_lab.domain.conversation import DEFAULT_GREETING, ConversationCreate
from cvi_lab.domain.errors import Conflict, InvalidInput, NotFound
from cvi_lab.domain.ids import CONVERSATION, DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID, is_id, new_id
from cvi_lab.domain.persona import DEFAULT_PERSONA, PersonaCreate
from cvi_lab.domain.resolution import resolve_persona_replica
from cvi_lab.domain.timefmt import iso, parse_iso


def test_conversation_defaults_are_the_spec_defaults():
    c = ConversationCreate.model_validate({"replica_id": "r1234"})
    assert c.custom_greeting == DEFAULT_GREETING == "Hey there, how's it going? What can I do for you today?"
    assert (c.test_mode, c.require_auth, c.max_participants, c.callback_url) == (False, False, None, None)
    p = c.properties
    assert (p.max_call_duration, p.participant_left_timeout, p.participant_absent_timeout) == (3600, 0, 300)
    assert p.language == "english"
    assert (p.apply_greenscreen, p.enable_recording, p.enable_closed_captions) == (False, False, False)


@pytest.mark.parametrize("body", [
    {"properties": {"max_call_duration": 0}},
    {"properties": {"participant_absent_timeout": 0}},
    {"properties": {"participant_left_timeout": -1}},
    {"properties": {"max_call_duration": "3600"}},  # strict: no string-to-int coercion
    {"properties": {"max_call_duration": 10**9}},  # beyond server.limits
    {"max_participants": 1},
    {"test_mode": "yes"},
    {"callback_url": "ftp://example.com/hook"},
    {"surprise": 1},
])
def test_conversation_request_rejects(body):
    with pytest.raises(ValidationError):
        ConversationCreate.model_validate(body)


def test_limits_come_from_the_validation_context():
    body = {"properties": {"max_call_duration": 100}, "conversation_name": "x" * 20}
    ConversationCreate.model_validate(body)
    with pytest.raises(ValidationError, match="at most 10"):
        ConversationCreate.model_validate(body, context={"limits": {"max_name_chars": 10}})
    with pytest.raises(ValidationError, match="more than the 60 s"):
        ConversationCreate.model_validate(body, context={"limits": {"max_call_duration_s": 60}})


PERSONAS = {
    DEFAULT_PERSONA_ID: {"persona_id": DEFAULT_PERSONA_ID, "default_replica_id": DEFAULT_REPLICA_ID},
    "p1": {"persona_id": "p1", "default_replica_id": "r1"},
    "p2": {"persona_id": "p2", "default_replica_id": None},
}
REPLICAS = {DEFAULT_REPLICA_ID: {"replica_id": DEFAULT_REPLICA_ID, "status": "completed"},
            "r1": {"replica_id": "r1", "status": "completed"}, "r2": {"replica_id": "r2", "status": "completed"},
            "r3": {"replica_id": "r3", "status": "error", "error_message": "no face found"}}


def resolve(persona_id, replica_id):
    p, r = resolve_persona_replica(persona_id, replica_id, PERSONAS.get, REPLICAS.get)
    return p["persona_id"], r["replica_id"]


def test_resolution_rules():
    assert resolve(None, "r2") == (DEFAULT_PERSONA_ID, "r2")  # replica only -> default persona
    assert resolve("p1", None) == ("p1", "r1")  # persona only -> its default replica
    assert resolve("p1", "r2") == ("p1", "r2")  # both -> the given replica overrides
    with pytest.raises(InvalidInput, match="persona_id or replica_id is required"):
        resolve(None, None)
    with pytest.raises(InvalidInput, match="'p2' has no default_replica_id"):
        resolve("p2", None)
    with pytest.raises(NotFound, match="'p9'"):
        resolve("p9", "r1")
    with pytest.raises(NotFound, match="'r9'"):
        resolve("p1", "r9")
    with pytest.raises(Conflict, match="not ready.*no face found"):
        resolve("p1", "r3")


def test_persona_layers_and_modes():
    with pytest.raises(ValidationError, match="system_prompt is required"):
        PersonaCreate.model_validate({"persona_name": "x"})
    echo = PersonaCreate.model_validate({"pipeline_mode": "echo"})
    assert echo.system_prompt is None
    full = PersonaCreate.model_validate({
        "system_prompt": "Hi",
        "layers": {
            "llm": {"model": "smollm2", "base_url": "http://127.0.0.1:8000/v1", "tools": [
                {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]},
            "tts": {"tts_engine": "piper", "voice": "joe", "speed": 1.1},  # stage extras pass through
            "stt": {"participant_pause_sensitivity": "superlow", "hotwords": ["cvi"], "smart_turn_detection": True},
            "conversational_flow": {"turn_taking_patience": "high", "replica_interruptibility": "low"},
            "avatar": {"renderer": "portrait"},
        },
    })
    assert full.document()["layers"]["tts"] == {"tts_engine": "piper", "voice": "joe", "speed": 1.1}
    for bad in ({"vision": {}}, {"stt": {"participant_pause_sensitivity": "extreme"}},
                {"llm": {"tools": [{"name": "f"}]}}, {"llm": {"base_url": "localhost:8000"}},
                {"conversational_flow": {"replica_interruptibility": 3}}):
        with pytest.raises(ValidationError):
            PersonaCreate.model_validate({"system_prompt": "Hi", "layers": bad})
    with pytest.raises(ValidationError):
        PersonaCreate.model_validate({"system_prompt": "Hi", "persona_id": "p1"})
    with pytest.raises(ValidationError):
        PersonaCreate.model_validate({"system_prompt": "Hi", "pipeline_mode": "half"})


def test_ids_and_timestamps():
    cid = new_id(CONVERSATION)
    assert is_id(cid, "c") and not is_id(cid, "p")
    assert is_id(DEFAULT_PERSONA_ID, "p") and is_id(DEFAULT_REPLICA_ID, "r")
    assert DEFAULT_PERSONA["default_replica_id"] == DEFAULT_REPLICA_ID
    from datetime import datetime, timezone

    t = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    assert iso(t) == "2026-01-02T03:04:05.678Z" and parse_iso(iso(t)) == t
