"""Persona: who the replica is (system prompt, context, per-stage layers). SPEC §2."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from cvi_lab.domain.documents import Names, RetrievalStrategy, knowledge
from cvi_lab.domain.ids import DEFAULT_PERSONA_ID, DEFAULT_REPLICA_ID
from cvi_lab.domain.validation import HttpUrl, Name, OpenSection, RequestModel, Text

Sensitivity = Literal["superlow", "verylow", "low", "medium", "high"]
Level = Literal["low", "medium", "high"]
PipelineMode = Literal["full", "echo"]


class LLMLayer(OpenSection):
    model: Name | None = None
    base_url: HttpUrl | None = None  # an OpenAI-compatible streaming /chat/completions endpoint
    api_key: Name | None = None
    tools: list[dict[str, Any]] | None = None

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


class Layers(RequestModel):
    llm: LLMLayer | None = None
    tts: TTSLayer | None = None
    stt: STTLayer | None = None
    conversational_flow: ConversationalFlowLayer | None = None
    avatar: AvatarLayer | None = None


class PersonaCreate(RequestModel):
    """POST /v2/personas body; also the document a PATCH edits."""

    persona_name: Name | None = None
    system_prompt: Text | None = None
    context: Text | None = None
    default_replica_id: Name | None = None
    pipeline_mode: PipelineMode = "full"
    layers: Layers = Field(default_factory=Layers)
    document_ids: Names | None = None  # knowledge base (SPEC §5): these documents,
    document_tags: Names | None = None  # and every document with one of these tags
    document_retrieval_strategy: RetrievalStrategy | None = None

    @model_validator(mode="after")
    def _prompt_in_full_mode(self) -> "PersonaCreate":
        if self.pipeline_mode == "full" and not (self.system_prompt or "").strip():
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


EDITABLE_FIELDS = tuple(PersonaCreate.model_fields)


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
    created_at: str
    updated_at: str


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
