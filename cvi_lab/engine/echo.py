"""Echo streams (`conversation.echo`, SPEC §3): the application speaks through the replica, text or audio.

Why separate: an echo is a stream keyed by `inference_id` that may arrive in many messages, ends with `done`
or after a quiet spell, and mixes TTS'd text clauses with raw audio pushed straight to the avatar; none of that
touches the LLM or the turn taking.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Callable

import numpy as np

from cvi_lab.audio import resample
from cvi_lab.clock import Clock
from cvi_lab.engine.chunker import ChunkerSettings, ClauseChunker
from cvi_lab.engine.interactions import text_prop
from cvi_lab.engine.speaker import Speaker, drain
from cvi_lab.engine.speech import Clause, Speech
from cvi_lab.engine.turns import clock_sleep
from cvi_lab.media import TTSChunk

ECHO_AUDIO_RATE = 24_000  # `sample_rate` of conversation.echo audio when the message gives none


class EchoStreams:
    def __init__(self, speaker: Speaker, chunker: ChunkerSettings, idle_flush_ms: float, tts_rate: int,
                 clock: Clock, spawn: Callable, turn_idx: Callable[[], int]) -> None:
        self.speaker, self.chunker, self.idle_flush_ms, self.tts_rate = speaker, chunker, idle_flush_ms, tts_rate
        self.clock, self._spawn, self._turn_idx = clock, spawn, turn_idx
        self._streams: dict[str, tuple[Speech, asyncio.Queue, ClauseChunker]] = {}

    def handle(self, props: dict) -> None:
        """One conversation.echo message; ValueError saying what is accepted."""
        modality = props.get("modality", "text")
        inference_id = str(props.get("inference_id") or uuid.uuid4().hex[:12])
        done = bool(props.get("done", True if modality == "text" and "inference_id" not in props else False))
        if modality == "text":
            text = text_prop(props, "text", allow_empty=done)
            speech, queue, chunker = self._stream(inference_id)
            for clause in chunker.push(text):
                queue.put_nowait(clause)
        elif modality == "audio":
            pcm, rate = _echo_audio(props)
            speech, queue, chunker = self._stream(inference_id)
            if len(pcm):
                queue.put_nowait(TTSChunk(resample(pcm, rate, self.tts_rate), self.tts_rate))
        else:
            raise ValueError(f"conversation.echo: modality {modality!r} is not accepted; use 'text' or 'audio'")
        if done:
            self.close(inference_id)
        else:
            self._spawn(self._idle(inference_id, speech))

    def forget(self, speeches: list[Speech]) -> None:
        """These speeches were interrupted: later messages of their streams start new ones."""
        ids = {id(sp) for sp in speeches}
        for key, (sp, _, _) in list(self._streams.items()):
            if id(sp) in ids:
                del self._streams[key]

    def close(self, inference_id: str) -> None:
        entry = self._streams.pop(inference_id, None)
        if entry is not None:
            _, queue, chunker = entry
            for clause in chunker.flush():
                queue.put_nowait(clause)
            queue.put_nowait(None)

    def _stream(self, inference_id: str) -> tuple[Speech, asyncio.Queue, ClauseChunker]:
        if inference_id not in self._streams:
            speech = self.speaker.new_speech("echo", self._turn_idx(), inference_id=inference_id)
            queue: asyncio.Queue = asyncio.Queue()
            self._streams[inference_id] = (speech, queue, ClauseChunker(self.chunker))
            self.speaker.run(speech, lambda: self._speak(speech, queue))
        speech, queue, chunker = self._streams[inference_id]
        speech.last_input = self.clock.monotonic()
        return speech, queue, chunker

    async def _speak(self, speech: Speech, queue: asyncio.Queue) -> None:
        """Echo items: text clauses go through the TTS, audio chunks straight to the avatar."""
        async for item in drain(queue):
            if isinstance(item, TTSChunk):
                clause = Clause("")
                speech.clauses.append(clause)
                self.speaker.push(speech, clause, item)
            else:
                await self.speaker.speak(speech, [item])

    async def _idle(self, inference_id: str, speech: Speech) -> None:
        """Echo text sent without `done`: speak the rest (and end the utterance) after a quiet spell."""
        wait = self.idle_flush_ms / 1000.0
        while inference_id in self._streams and self._streams[inference_id][0] is speech:
            idle = self.clock.monotonic() - speech.last_input
            if idle >= wait:
                self.close(inference_id)
                return
            await clock_sleep(self.clock, wait - idle)


def _echo_audio(props: dict) -> tuple[np.ndarray, int]:
    """The 16-bit PCM and its rate of an audio echo message; ValueError saying what is accepted."""
    audio = props.get("audio")
    if not isinstance(audio, str):
        raise ValueError("conversation.echo (audio): 'audio' must be base64 of 16-bit PCM")
    try:
        raw = base64.b64decode(audio, validate=True)
    except ValueError:
        raise ValueError("conversation.echo (audio): 'audio' is not valid base64") from None
    rate = props.get("sample_rate", ECHO_AUDIO_RATE)
    if not isinstance(rate, int) or not 8_000 <= rate <= 48_000:
        raise ValueError("conversation.echo (audio): sample_rate must be an integer in 8000..48000")
    return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2"), rate
