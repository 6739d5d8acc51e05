"""What the LLM is given: ONE system message and the windowed history of the call.

Why separate: the system message is built in exactly one place (`system_message`, a pure function), used for
the LLM's prompt, and the engine remembers the one its LLM last received, so the stored transcript
(`application.transcription_ready`) carries what the model actually saw, not a reconstruction of it.
The history window moves in blocks so the LLM's prompt cache keeps holding the earlier turns.
"""

from __future__ import annotations

from typing import Sequence

from cvi_lab.engine.tools import tool_instructions
from cvi_lab.stages.base import ChatMessage


def system_message(prompt: str, persona_context: str, conversational_context: str, tools: Sequence[dict]) -> str:
    """The LLM system message: the persona's system prompt (or the default one), the persona context, the
    call's conversational context, then the tool instructions; empty parts are left out."""
    parts = [prompt, persona_context, conversational_context, tool_instructions(tools)]
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def with_passages(messages: Sequence[ChatMessage], heading: str, passages: Sequence[str]) -> list[ChatMessage]:
    """The prompt with knowledge-base passages ahead of the latest user message. Why there and not in the
    system message: the system message and the history stay byte-identical from turn to turn, so the LLM's
    prompt cache keeps holding them; only this turn's tail carries the passages."""
    out = list(messages)
    if not passages or not out or out[-1].role != "user":
        return out
    facts = "\n".join(f"- {p}" for p in passages)
    out[-1] = ChatMessage("user", f"{heading}\n{facts}\n\n{out[-1].content}")
    return out


class Dialogue:
    """The call as the LLM knows it: prompt, persona context, current conversational context and history."""

    def __init__(self, prompt: str, persona_context: str, conversational_context: str, tools: Sequence[dict],
                 max_messages: int, trim_block: int) -> None:
        self.prompt, self.persona_context, self.tools = prompt, persona_context, list(tools)
        self.context = conversational_context or ""
        self.max_messages, self.trim_block = max_messages, trim_block
        self.history: list[ChatMessage] = []
        self._window_start = 0  # first history message in the prompt (see trim)
        self._sent_system: str | None = None  # the system message of the latest prompt given to the LLM

    def system_message(self) -> str:
        """The system message the LLM would be given now."""
        return system_message(self.prompt, self.persona_context, self.context, self.tools)

    def sent_system_message(self) -> str:
        """The system message of the latest prompt the LLM answered (what it would see now, before any)."""
        return self.system_message() if self._sent_system is None else self._sent_system

    def messages(self) -> list[ChatMessage]:
        """System message (stable, so the LLM's prefix cache holds) + history window."""
        return [ChatMessage("system", self.system_message())] + self.history[self._window_start :]

    def sent(self, messages: Sequence[ChatMessage]) -> None:
        """`messages` went to the LLM for an answer."""
        self._sent_system = messages[0].content

    def overwrite_context(self, context: str) -> None:
        self.context = context

    def append_context(self, extra: str) -> None:
        self.context = f"{self.context} {extra}".strip()

    def add_tool_result(self, template: str, name: str, arguments: str, result: str) -> None:
        """A tool's result, as the participant's side of the dialogue (after the turn that asked for it), so
        the next answer is built on it; `template` (engine.tool_result_template) words it for the LLM."""
        self.add("user", template.format(name=name, arguments=arguments, result=result))

    def add(self, role: str, text: str) -> None:
        """Append to the history, merging consecutive messages of one role (an answer never heard)."""
        if self.history and self.history[-1].role == role:
            self.history[-1] = ChatMessage(role, f"{self.history[-1].content} {text}".strip())
        else:
            self.history.append(ChatMessage(role, text))

    def trim(self) -> None:
        """Move the start of the prompt's history window, in blocks of `trim_block` messages, once the next
        answer's prompt would hold more than `max_messages`. Called only after an answer (before priming), so
        between two trims the prompt only grows at its end and the LLM's prompt cache holds every earlier
        turn; a sliding window would change the prefix right after the system message on every turn and
        force a full prefill (seen as 3x slower answers from turn 20 of a long call)."""
        while len(self.history) + 1 - self._window_start > self.max_messages:
            self._window_start += self.trim_block
            while self._window_start < len(self.history) - 1 and self.history[self._window_start].role != "user":
                self._window_start += 1  # a window opens with a user message
