"""The data-channel protocol's inbound side, applied: what each interaction does to the live conversation.

Why separate from the engine: `interactions` validates an envelope (pure); this applies each event type through
the engine's parts (echo, dialogue, answerer, speaker, listener, the avatar) and returns why a message was
refused, so the data channel and `send-app-message` get the same verdict from the same code. The engine keeps
the decisions about turns (`respond_to`, `interrupt`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvi_lab.engine.interactions import SENSITIVITY_KEYS, parse_interaction, text_prop, tool_result_props
from cvi_lab.engine.pipeline_config import PipelineConfigError
from cvi_lab.stages.avatar.expression import ExpressiveAvatar

if TYPE_CHECKING:
    from cvi_lab.engine.engine import ConversationEngine


class Inbound:
    def __init__(self, engine: "ConversationEngine") -> None:
        self.engine = engine

    async def handle(self, message: object) -> str | None:
        """Apply one envelope; None if applied, else the refusal (also sent as a `conversation.error` event)."""
        eng = self.engine
        try:
            event_type, props = parse_interaction(message, eng.conversation_id)
        except ValueError as exc:
            eng.bus.error(str(exc), "interaction")
            return str(exc)
        try:
            if event_type == "conversation.echo":
                eng.echo.handle(props)
            elif event_type == "conversation.respond":
                eng.respond_to(text_prop(props, "text"), "respond", announce=True)
            elif event_type == "conversation.interrupt":
                eng.interrupt()
            elif event_type == "conversation.overwrite_llm_context":
                eng.dialogue.overwrite_context(text_prop(props, "context", allow_empty=True))
            elif event_type == "conversation.append_llm_context":
                eng.dialogue.append_context(text_prop(props, "context"))
            elif event_type == "conversation.sensitivity":
                self._sensitivity(props)
            elif event_type == "conversation.tool_result":
                self._tool_result(props)
            elif event_type == "conversation.set_emotion":
                self._set_emotion(props)
        except (ValueError, PipelineConfigError) as exc:
            eng.bus.error(str(exc), "interaction", received_event_type=event_type)
            return str(exc)
        return None

    def _tool_result(self, props: dict) -> None:
        """Close a tool call: its result enters the dialogue and the replica answers with it."""
        eng = self.engine
        call_id, name, result = tool_result_props(props)
        if eng.answerer is None:
            raise ValueError("conversation.tool_result is not available in echo pipeline_mode")
        call = eng.answerer.tool_calls.take(call_id, name)
        eng.dialogue.add_tool_result(eng.settings.tool_result_template, call.name, call.arguments, result)
        eng.respond_to(result, "tool_result", announce=False)

    def _set_emotion(self, props: dict) -> None:
        """The avatar's expression (if it is an `ExpressiveAvatar`) and the voice of the next clauses (used where
        the TTS is a `StyledVoice`)."""
        eng = self.engine
        expression, voice = eng.emotions.get(props.get("emotion"))
        if isinstance(eng.stages.avatar, ExpressiveAvatar):
            eng.stages.avatar.set_expression(expression)
        eng.speaker.voice_style = voice

    def _sensitivity(self, props: dict) -> None:
        eng = self.engine
        levels = {SENSITIVITY_KEYS[k]: v for k, v in props.items() if k in SENSITIVITY_KEYS}
        unknown = sorted(set(props) - set(SENSITIVITY_KEYS))
        if unknown or not levels:
            raise ValueError(
                f"conversation.sensitivity: properties {unknown or '{}'} not accepted; use "
                "participant_pause_sensitivity and/or participant_interrupt_sensitivity"
            )
        # VAD min silence is fixed when the VAD is built; the turn threshold, patience and barge-in apply now.
        eng.settings = eng.settings.with_sensitivity(**levels)
        eng.listener.settings = eng.settings
        if eng.answerer is not None:
            eng.answerer.settings = eng.settings
