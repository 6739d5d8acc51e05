"""Answering a turn: the LLM's stream cut into clauses that the speaker voices while the LLM goes on.

Why separate: the LLM and the TTS overlap through a queue (the first clause is spoken while the rest is still
being decoded), a reply that opens a tool call is diverted to an event instead of being spoken, and the LLM's
prompt cache is primed off the critical path. That is the whole "think" side of a turn; the engine only says
when to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

from cvi_lab.clock import Clock
from cvi_lab.engine.chunker import ClauseChunker
from cvi_lab.engine.events import EventBus
from cvi_lab.engine.pipeline_config import EngineSettings
from cvi_lab.engine.prompt import Dialogue, with_passages
from cvi_lab.engine.speaker import Speaker, StageFailure, drain
from cvi_lab.engine.speech import Speech
from cvi_lab.engine.tools import PendingToolCalls, opens_tool_call, parse_tool_call
from cvi_lab.stages.base import LLM, ChatMessage, LLMStats
from cvi_lab.stages.retrieval import Knowledge

log = logging.getLogger(__name__)


class Answerer:
    def __init__(self, llm: LLM, settings: EngineSettings, dialogue: Dialogue, speaker: Speaker, bus: EventBus,
                 clock: Clock, spawn: Callable, knowledge: Knowledge | None = None) -> None:
        self.llm, self.settings, self.dialogue, self.speaker = llm, settings, dialogue, speaker
        self.bus, self.clock, self._spawn = bus, clock, spawn
        self.knowledge = knowledge  # None: the call has no documents (or the pipeline no retriever)
        self.tool_calls = PendingToolCalls()  # made, not yet answered by a conversation.tool_result

    async def prime(self, messages: list[ChatMessage] | None = None) -> None:
        """Pre-fill the LLM's prompt cache with the prompt so far (system message + history, or `messages`), off
        the critical path, so the next answer only prefills the new user turn (`LLM.prime`)."""
        try:
            await self.llm.prime(messages or self.dialogue.messages())
        except Exception as exc:  # noqa: BLE001 - a failing prime shows up again (and is reported) on use
            log.warning("LLM prefix priming failed: %s", exc)

    async def respond(self, speech: Speech, pending_user: str | None = None) -> None:
        """LLM → chunker → queue → TTS → avatar. The LLM runs ahead in its own task while clauses are spoken.
        `pending_user`: the user's words not yet in the history (a speculative answer)."""
        lat = speech.latency
        queue: asyncio.Queue = asyncio.Queue()
        stats = LLMStats()
        messages = self.dialogue.messages()
        if pending_user:
            if messages[-1].role == "user":
                messages[-1] = ChatMessage("user", f"{messages[-1].content} {pending_user}")
            else:
                messages.append(ChatMessage("user", pending_user))
        plain = messages  # without passages: what the next turn's prompt starts with (priming)
        if self.knowledge is not None and messages[-1].role == "user":
            messages = await self._with_knowledge(messages, speech)
        producer = asyncio.ensure_future(self._llm_clauses(speech, queue, stats, messages, plain))
        try:
            await self.speaker.speak(speech, drain(queue))
            await producer
        finally:
            producer.cancel()
            if lat is not None:
                lat.extra.update(prompt_tokens=stats.prompt_tokens, cached_prompt_tokens=stats.cached_prompt_tokens,
                                 completion_tokens=stats.completion_tokens, llm_tokens=stats.completion_tokens,
                                 llm_s=None if stats.total_s is None else round(stats.total_s, 4),
                                 llm_wait_ms=None if stats.queue_wait_s is None else round(stats.queue_wait_s * 1000.0, 1),
                                 llm_compute_ms=None if stats.total_s is None or stats.queue_wait_s is None
                                 else round((stats.total_s - stats.queue_wait_s) * 1000.0, 1))

    async def _with_knowledge(self, messages: list[ChatMessage], speech: Speech) -> list[ChatMessage]:
        """The prompt with the passages that best match the user's turn; the search time goes to the turn's
        record (`retrieval_s`, with how many passages were added)."""
        start = self.clock.monotonic()
        found = await self.knowledge.lookup(messages[-1].content)
        if speech.latency is not None:
            speech.latency.retrieval_s = self.clock.monotonic() - start
            speech.latency.extra["retrieval_passages"] = len(found)
        return with_passages(messages, self.knowledge.heading, [p.text for p in found])

    async def _llm_clauses(self, speech: Speech, queue: asyncio.Queue, stats: LLMStats,
                           messages: list[ChatMessage], plain: list[ChatMessage]) -> None:
        """Stream the LLM, cut clauses, hand them to the speaker; a tool call (JSON reply) becomes an event."""
        lat, s = speech.latency, self.settings
        chunker = ClauseChunker(s.chunker)
        said: list[str] = []
        first_sent = False
        tool_buffer: str | None = None
        head = ""
        try:
            # aclosing: a cancelled answer stops the LLM's decoding now, not when the generator is collected
            async with contextlib.aclosing(self.llm.stream(messages, s.max_tokens, stats)) as pieces:
                self.dialogue.sent(messages)
                async for piece in pieces:
                    if lat is not None:
                        lat.mark("llm_first_token", self.clock.monotonic())
                    if tool_buffer is not None:
                        tool_buffer += piece
                        continue
                    if s.tools and not first_sent and not head.strip():
                        head += piece
                        if opens_tool_call(head):
                            tool_buffer = head
                            continue
                    for clause in chunker.push(piece):
                        if lat is not None:
                            lat.mark("first_clause", self.clock.monotonic())
                        said.append(clause)
                        await queue.put(clause)
                        if not first_sent and s.pause_llm_until_first_audio:
                            # 2 cores: let the TTS have them until the first audio exists
                            first_sent = True
                            await speech.first_audio.wait()
                        first_sent = True
            if tool_buffer is not None:
                self._tool_call(tool_buffer, speech)
            for clause in chunker.flush():
                if lat is not None:
                    lat.mark("first_clause", self.clock.monotonic())
                said.append(clause)
                await queue.put(clause)
            if said and tool_buffer is None and (speech.hold is None or speech.hold.is_set()):
                # The answer is decoded while most of it is still to be spoken: prime the next prompt now, on
                # a CPU that would idle, not while the participant speaks (when the ASR needs it).
                self._spawn(self.prime(plain + [ChatMessage("assistant", " ".join(said))]))
        except (asyncio.CancelledError, StageFailure):
            raise
        except Exception as exc:  # noqa: BLE001
            raise StageFailure("llm", exc) from exc
        finally:
            queue.put_nowait(None)

    def _tool_call(self, text: str, speech: Speech) -> None:
        try:
            call = parse_tool_call(text)
        except ValueError as exc:
            self.bus.error(str(exc), "llm", stage="llm")
            return
        self.tool_calls.add(call)
        self.bus.emit("conversation.tool_call",
                      {"name": call.name, "arguments": call.arguments, "tool_call_id": call.tool_call_id},
                      speech.turn_idx, inference_id=speech.inference_id)

