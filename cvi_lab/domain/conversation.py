"""Conversation: the request that starts a call, the stored record and shutdown reasons.

SPEC §1. Defaults are the hosted API's; upper bounds on timeouts come from `server.limits` (validation context).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from cvi_lab.domain.validation import HttpUrl, Id, Int, Name, RequestModel, Text, limit, limit_ref
from cvi_lab.domain.vocabulary import CONVERSATION_NAMES, Aliased, both_id_names
from cvi_lab.domain.documents import Names, RetrievalStrategy, Tags

DEFAULT_GREETING = "Hey there, how's it going? What can I do for you today?"

ConversationStatus = Literal["active", "ended"]
MIN_PARTICIPANTS = 2  # the replica and one person


class ShutdownReason:
    """`shutdown_reason` strings: the hosted API's wording, then our own."""

    MAX_CALL_DURATION = "max_call_duration reached"
    PARTICIPANT_LEFT = "participant_left_timeout reached"
    PARTICIPANT_ABSENT = "participant_absent_timeout reached"
    END_ENDPOINT = "end_conversation_endpoint_hit"
    SERVER_RESTART = "server_restart"
    SERVER_SHUTDOWN = "server_shutdown"
    DELETED = "conversation_deleted"
    STARTUP_FAILED = "exception_encountered_during_conversation_startup"
    RUNTIME_ERROR = "exception_encountered_during_conversation"


# The languages `properties.language` accepts: the language table's names (filled in by the OpenAPI document).
LANGUAGES_REF = "$languages"


class ConversationProperties(RequestModel):
    max_call_duration: Int = Field(3600, gt=0, json_schema_extra={"maximum": limit_ref("max_call_duration_s")})
    participant_left_timeout: Int = Field(0, ge=0, json_schema_extra={"maximum": limit_ref("max_timeout_s")})
    participant_absent_timeout: Int = Field(300, gt=0, json_schema_extra={"maximum": limit_ref("max_timeout_s")})
    language: Name = Field("english", json_schema_extra={"enum": LANGUAGES_REF})
    apply_greenscreen: bool = False
    enable_recording: bool = False
    enable_closed_captions: bool = False
    audio_only: bool = False  # SPEC §5: no video track is offered and no frames are rendered

    @field_validator("max_call_duration")
    @classmethod
    def _duration_cap(cls, value: int, info: ValidationInfo) -> int:
        cap = limit(info, "max_call_duration_s")
        if value > cap:
            raise ValueError(f"{value} s is more than the {cap} s accepted (seconds, 1..{cap})")
        return value

    @field_validator("participant_left_timeout", "participant_absent_timeout")
    @classmethod
    def _timeout_cap(cls, value: int, info: ValidationInfo) -> int:
        cap = limit(info, "max_timeout_s")
        if value > cap:
            raise ValueError(f"{value} s is more than the {cap} s accepted")
        return value


class ConversationCreate(Aliased, RequestModel):
    """POST /v2/conversations body; `pal_id`/`face_id` are today's names of `persona_id`/`replica_id`."""

    NAMES = CONVERSATION_NAMES

    replica_id: Id | None = Field(None, description="≡ face_id")
    persona_id: Id | None = Field(None, description="≡ pal_id")
    face_id: Id | None = Field(None, description="≡ replica_id (today's name)")
    pal_id: Id | None = Field(None, description="≡ persona_id (today's name)")
    callback_url: HttpUrl | None = None
    conversation_name: Name | None = None
    conversational_context: Text | None = None
    custom_greeting: Text = DEFAULT_GREETING
    test_mode: bool = False
    require_auth: bool = False
    max_participants: Int | None = Field(None, json_schema_extra={"minimum": MIN_PARTICIPANTS,
                                                                  "maximum": limit_ref("max_participants")})
    properties: ConversationProperties = Field(default_factory=ConversationProperties)
    # the resolution rules (domain/resolution.py) need at least one of them
    SCHEMA_RULES = [{"anyOf": [{"required": [k], "properties": {k: {"type": "string"}}}
                               for k in ("persona_id", "replica_id", "pal_id", "face_id")]}]
    document_ids: Names | None = None  # knowledge base (SPEC §5): these documents,
    document_tags: Tags | None = None  # and every document with one of these tags
    document_retrieval_strategy: RetrievalStrategy | None = None
    memory_stores: Tags | None = None  # memories (SPEC §5): recalled from and added to these tags

    @field_validator("max_participants")
    @classmethod
    def _participants_cap(cls, value: int | None, info: ValidationInfo) -> int | None:
        cap = limit(info, "max_participants")
        if value is not None and value < MIN_PARTICIPANTS:
            raise ValueError(f"{value} is not accepted: it must be greater than or equal to {MIN_PARTICIPANTS} (the replica counts as one)")
        if value is not None and value > cap:
            raise ValueError(f"{value} is more than the {cap} accepted (2..{cap}, the replica counts as one)")
        return value


class ConversationEvent(BaseModel):
    event_type: str
    message_type: str
    timestamp: str
    properties: dict[str, Any] = Field(default_factory=dict)  # a replica_id also as face_id (SPEC §5)

    @field_validator("properties")
    @classmethod
    def _both_id_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return both_id_names(value)


class BothIdPairs(BaseModel):
    """A conversation record names its persona and replica in both vocabularies (SPEC §5)."""

    replica_id: str
    persona_id: str
    face_id: str = Field(description="= replica_id")
    pal_id: str = Field(description="= persona_id")

    @model_validator(mode="before")
    @classmethod
    def _today_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {**data, "face_id": data.get("replica_id"), "pal_id": data.get("persona_id")}
        return data


class Conversation(BothIdPairs):
    """A stored conversation as GET returns it (`events` only with verbose=true)."""

    conversation_id: str
    conversation_name: str
    status: ConversationStatus
    conversation_url: str
    callback_url: str | None = None
    conversational_context: str | None = None
    custom_greeting: str = DEFAULT_GREETING
    test_mode: bool = False
    require_auth: bool = False
    max_participants: int | None = None
    properties: ConversationProperties
    shutdown_reason: str | None = None
    usage_seconds: float = 0.0
    created_at: str
    updated_at: str
    ended_at: str | None = None
    document_ids: list[str] | None = None
    document_tags: list[str] | None = None
    document_retrieval_strategy: RetrievalStrategy | None = None
    memory_stores: list[str] | None = None
    recording_path: str | None = None  # with enable_recording, once the MP4 is written (after the end)
    events: list[ConversationEvent] | None = None


class TurnRecord(BaseModel):
    """One replica answer's per-turn metrics (latency marks in ms, stage durations, LLM/TTS figures)."""

    turn_idx: int
    metrics: dict[str, Any]
    created_at: str


class ConversationCreated(BothIdPairs):
    """POST /v2/conversations response (the hosted fields, plus `meeting_token` with require_auth)."""

    conversation_id: str
    conversation_name: str
    status: ConversationStatus
    conversation_url: str
    callback_url: str | None = None
    created_at: str
    meeting_token: str | None = None
