"""What the control panel's form holds, and its translation into a POST /v2/conversations body.

Why separate from the widgets: the rules (whole seconds, ranges, "persona default" replica) are checked here
with messages a person can act on, and unit-tested without a browser. The server re-validates everything;
this only catches what a form can catch early, in words that name the form's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cvi_lab.domain.conversation import DEFAULT_GREETING

PERSONA_DEFAULT = ""  # replica choice meaning "the persona's default_replica_id"


class FormError(ValueError):
    """A field of the form is not accepted; the message names the field and what is accepted."""


def parse_seconds(label: str, raw: Any, minimum: int) -> int:
    """A timeout typed by a person -> int seconds, or FormError saying what is accepted."""
    text = str(raw).strip() if raw is not None else ""
    if text.endswith("s") and text[:-1].strip():
        text = text[:-1].strip()
    if not text:
        raise FormError(f"{label}: empty; enter whole seconds (an integer >= {minimum})")
    try:
        value = float(text)
    except ValueError:
        raise FormError(f"{label}: {str(raw)[:40]!r} is not a number; enter whole seconds (an integer >= {minimum})") from None
    if value != int(value):
        raise FormError(f"{label}: {text} is not a whole number of seconds; enter an integer >= {minimum}")
    if value < minimum:
        raise FormError(f"{label}: {int(value)} s is not accepted; enter an integer >= {minimum}")
    return int(value)


@dataclass
class CallForm:
    persona_id: str = ""
    replica_id: str = PERSONA_DEFAULT
    language: str = "english"
    custom_greeting: str = DEFAULT_GREETING
    conversational_context: str = ""
    conversation_name: str = ""
    max_call_duration: Any = 600
    participant_left_timeout: Any = 0
    participant_absent_timeout: Any = 300
    apply_greenscreen: bool = False
    enable_closed_captions: bool = True

    def to_request(self) -> dict[str, Any]:
        """The request body, or FormError for the first field that is not accepted."""
        if not str(self.persona_id or "").strip():
            raise FormError("persona: choose a persona (the default persona is always there)")
        language = str(self.language or "").strip().lower()
        if not language:
            raise FormError("language: empty; choose one, e.g. english")
        body: dict[str, Any] = {
            "persona_id": str(self.persona_id).strip(),
            "custom_greeting": str(self.custom_greeting or "").strip() or DEFAULT_GREETING,
            "properties": {
                "max_call_duration": parse_seconds("max call duration", self.max_call_duration, 1),
                "participant_left_timeout": parse_seconds("participant left timeout", self.participant_left_timeout, 0),
                "participant_absent_timeout": parse_seconds("participant absent timeout",
                                                            self.participant_absent_timeout, 1),
                "language": language,
                "apply_greenscreen": bool(self.apply_greenscreen),
                "enable_closed_captions": bool(self.enable_closed_captions),
            },
        }
        if str(self.replica_id or "").strip():
            body["replica_id"] = str(self.replica_id).strip()
        if str(self.conversational_context or "").strip():
            body["conversational_context"] = str(self.conversational_context).strip()
        if str(self.conversation_name or "").strip():
            body["conversation_name"] = str(self.conversation_name).strip()
        return body
