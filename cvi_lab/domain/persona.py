"""Persona: who the replica is (system prompt, context, per-stage layers). SPEC §2."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from cvi_lab.domain.documents import Names, RetrievalStrategy, Tags, knowledge
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID
from cvi_lab.domain.validation import NOT_BLANK, HttpUrl, Id, Name, OpenSection, RequestModel, Text, not_blank
from cvi_lab.domain.vocabulary import PALS, PERSONA_NAMES, Aliased, renamed_model

Sensitivity = Literal["superlow", "verylow", "low", "medium", "high"]
Level = Literal["low", "medium", "high"]
PipelineMode = Literal["full", "echo"]


# One tool as `_openai_tools` checks it (the schema states the same).
TOOL_SCHEMA = {"type": "object", "required": ["type", "function"], "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}


class LLMLayer(OpenSection):
    model: Name | None = None
    base_url: HttpUrl | None = None  # an OpenAI-compatible streaming /chat/completions endpoint
    api_key: Name | None = None
    tools: list[dict[str, Any]] | None = Field(None, json_schema_extra={"items": TOOL_SCHEMA})

    @field_validator("tools")
    @classmethod
    def _openai_tools(cls, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, tool in enumerate(tools or []):
            fn = tool.get("function")
            if tool.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(
                    f"tool {i} is not in OpenAI function format; accepted: "
                    '{"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}'
                )
        return tools


class TTSLayer(OpenSection):
    tts_engine: Name | None = None
    voice: Name | None = None


class STTLayer(OpenSection):
    stt_engine: Name | None = None
    participant_pause_sensitivity: Sensitivity | None = None
    participant_interrupt_sensitivity: Sensitivity | None = None
    hotwords: Text | list[Name] | None = None
    smart_turn_detection: bool | None = None


class ConversationalFlowLayer(OpenSection):
    turn_detection_model: Name | None = None
    turn_taking_patience: Level | None = None
    replica_interruptibility: Level | None = None


class AvatarLayer(OpenSection):
    """Our own layer: renderer choice and its settings (the avatar config group: cvi_lab/conf/avatar/*)."""


# The transports this server provides (SPEC §5: ours is WebRTC, the meeting page and the data channel).
SERVED_TRANSPORTS = ("webrtc",)


class TransportLayer(RequestModel):
    """How the call is carried. Any transport may be stored (a PAL written for another host keeps its own, e.g.
    `livekit`); a conversation is started only on one of `SERVED_TRANSPORTS`."""

    transport_type: Name = SERVED_TRANSPORTS[0]


class Layers(RequestModel):
    llm: LLMLayer | None = None
    tts: TTSLayer | None = None
    stt: STTLayer | None = None
    conversational_flow: ConversationalFlowLayer | None = None
    avatar: AvatarLayer | None = None
    transport: TransportLayer | None = None


class PersonaCreate(Aliased, RequestModel):
    """POST /v2/personas (and /v2/pals) body; also the document a PATCH edits. Either name of a field is taken."""

    NAMES = PERSONA_NAMES

    persona_name: Name | None = Field(None, description="≡ pal_name")
    system_prompt: Text | None = None
    context: Text | None = None
    default_replica_id: Id | None = Field(None, description="≡ default_face_id")
    pipeline_mode: PipelineMode = "full"
    layers: Layers = Field(default_factory=Layers)
    pal_name: Name | None = Field(None, description="≡ persona_name (today's name)")
    default_face_id: Id | None = Field(None, description="≡ default_replica_id (today's name)")
    SCHEMA_RULES = [{  # full mode (the default) needs a system prompt that is not blank
        "if": {"properties": {"pipeline_mode": {"enum": ["full", None]}}},
        "then": {"required": ["system_prompt"], "properties": {"system_prompt": {"type": "string", "pattern": NOT_BLANK}}},
    }]
    document_ids: Names | None = None  # knowledge base (SPEC §5): these documents,
    document_tags: Tags | None = None  # and every document with one of these tags
    document_retrieval_strategy: RetrievalStrategy | None = None
    memory_stores: Tags | None = None  # memories (SPEC §5): recalled from and added to these tags

    @model_validator(mode="after")
    def _prompt_in_full_mode(self) -> "PersonaCreate":
        if self.pipeline_mode == "full" and not not_blank(self.system_prompt):
            raise ValueError("system_prompt is required when pipeline_mode is 'full' (use 'echo' to go without one)")
        return self

    def document(self) -> dict[str, Any]:
        """The editable fields as stored (layers without unset keys)."""
        return {
            "persona_name": self.persona_name,
            "system_prompt": self.system_prompt,
            "context": self.context,
            "default_replica_id": self.default_replica_id,
            "pipeline_mode": self.pipeline_mode,
            "layers": self.layers.model_dump(exclude_none=True),
            **knowledge(self),
        }


EDITABLE_FIELDS = ("persona_name", "system_prompt", "context", "default_replica_id", "pipeline_mode", "layers")


class Persona(BaseModel):
    """A stored persona as the API returns it."""

    persona_id: str
    persona_name: str | None = None
    system_prompt: str | None = None
    context: str | None = None
    default_replica_id: str | None = None
    pipeline_mode: PipelineMode = "full"
    layers: dict[str, Any] = Field(default_factory=dict)
    document_ids: list[str] | None = None
    document_tags: list[str] | None = None
    document_retrieval_strategy: RetrievalStrategy | None = None
    memory_stores: list[str] | None = None
    created_at: str
    updated_at: str


Pal = renamed_model(Persona, "Pal", PALS, "A stored PAL (a persona under today's name) as /v2/pals returns it.")


def transport_of(persona: dict[str, Any]) -> str:
    """The transport a stored persona's calls need."""
    return str(((persona.get("layers") or {}).get("transport") or {}).get("transport_type") or SERVED_TRANSPORTS[0])


DEFAULT_PERSONA: dict[str, Any] = {
    "persona_id": DEFAULT_PERSONA_ID,
    "persona_name": "Default Assistant",
    # Worded for the embedded 135M model, which is very sensitive to its system prompt: with the earlier, longer
    # prompt ("... talking with someone on a live video call. Keep answers short and conversational ...") 7 of
    # 10 answers of a scripted call drifted into French after "What is the capital of France?"; with this one,
    # 0 of 10 (benchmarks/results/answers.md).
    "system_prompt": (
        "You are a friendly, concise assistant in a live video call. "
        "Answer in one or two short spoken sentences, without lists or markdown."
    ),
    "context": "",
    "default_replica_id": DEFAULT_REPLICA_ID,
    "pipeline_mode": "full",
    "layers": {},
}
