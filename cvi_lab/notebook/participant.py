"""A Python participant for a notebook's call: joins over real WebRTC, listens to the greeting, asks a
question from a recording, and measures the reply at its own side of the connection.

Why: with nobody at the microphone (CI, a remote kernel, a quick check) the call should still happen for
real, so the transcript, captions and latency the notebook reads afterwards are a real call's. This wraps
the harness's call measurement (cvi_lab/harness/call.py) for synchronous cells, on a private loop thread.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cvi_lab.notebook.loop import BackgroundLoop

if TYPE_CHECKING:
    from cvi_lab.transport.client import ParticipantClient


@dataclass
class Exchange:
    """One question and what came back, timed at the participant (seconds are time.monotonic())."""

    greeting_heard: bool
    speech_ended_at: float | None
    reply_started_at: float | None
    replica_events: list[str]

    @property
    def response_latency_ms(self) -> float | None:
        if self.speech_ended_at is None or self.reply_started_at is None:
            return None
        return (self.reply_started_at - self.speech_ended_at) * 1000.0


class ScriptedParticipant:
    """`p = ScriptedParticipant(url).join(); p.ask("q.wav"); p.leave()`."""

    def __init__(self, conversation_url: str, receive_video: bool = False) -> None:
        self.conversation_url = conversation_url
        self.receive_video = receive_video
        self._loop = BackgroundLoop("cvi-lab-participant")
        self.client: ParticipantClient | None = None
        self.greeting_heard = False

    def join(self, greeting_timeout: float = 60.0) -> "ScriptedParticipant":
        """Join and wait until the replica's greeting has been played (it cannot be interrupted anyway)."""
        from cvi_lab.harness.call import join, wait_greeting

        async def run() -> None:
            self.client = await join({"conversation_url": self.conversation_url}, receive_video=self.receive_video)
            self.greeting_heard = await wait_greeting(self.client, greeting_timeout)

        self._loop.run(run(), greeting_timeout * 2 + 60)
        return self

    def ask(self, audio: str | pathlib.Path | np.ndarray, sample_rate: int | None = None,
            reply_timeout: float = 90.0) -> Exchange:
        """Speak `audio` in real time, then wait for the replica's answer to start and to end."""
        from cvi_lab.harness.call import spoken_turn

        if self.client is None:
            raise RuntimeError("join() first")
        client = self.client

        async def run() -> Exchange:
            turn = await spoken_turn(client, audio, sample_rate, timeout=reply_timeout)
            kinds = [e.get("event_type", "?") for _, e in client.events(since=turn["sent_at"]) if isinstance(e, dict)]
            return Exchange(self.greeting_heard, turn["speech_end"], turn["first_voiced"], kinds)

        return self._loop.run(run(), reply_timeout * 2 + 60)

    def leave(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            try:
                self._loop.run(client.leave(), 30)
            except Exception:  # noqa: BLE001 - the call may have ended already
                pass
        self._loop.stop()


def question_audio(text: str) -> tuple[np.ndarray, int]:
    """Speech for a scripted question: espeak-ng when installed (a voice unlike the replica's, as the lab's
    participants), else the shipped Piper voice. Returns (float32 mono, sample rate)."""
    import shutil
    import subprocess
    import tempfile

    from cvi_lab.audio import load_audio

    exe = shutil.which("espeak-ng")
    if exe:
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "q.wav"
            proc = subprocess.run([exe, "-v", "en-us+f3", "-s", "160", "-w", str(out), "--stdin"],
                                  input=text.encode(), capture_output=True, timeout=60)
            if proc.returncode == 0 and out.exists():
                return load_audio(out, 16_000)
    from piper import PiperVoice

    from cvi_lab.assets import locate

    voice = PiperVoice.load(str(locate("piper_joe_onnx")), config_path=str(locate("piper_joe_json")))
    chunks = list(voice.synthesize(text))
    return np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), int(chunks[0].sample_rate)
