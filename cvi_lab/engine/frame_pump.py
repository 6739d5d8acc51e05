"""The replica's outgoing frames: one pump pulls the avatar's paced frames and fans them out to every consumer.

Why separate: the avatar is paced by its own clock and must never wait on a consumer, so each consumer
(transport track, recorder, offline driver) gets a short queue of its own, and a slow one drops old frames.
The owner sees every frame first (`on_frame`), to book its audio as heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Callable

from cvi_lab.media import VideoFrame
from cvi_lab.stages.avatar.streaming import StreamingAvatar
from cvi_lab.stages.base import AvatarRenderer

log = logging.getLogger(__name__)

QUEUE_FRAMES = 8  # frames a consumer may lag behind before its oldest are dropped


class FramePump:
    def __init__(self, avatar: AvatarRenderer, on_frame: Callable[[VideoFrame], None],
                 on_failure: Callable[[Exception], None], render_niceness: int) -> None:
        self.avatar, self._on_frame, self._on_failure = avatar, on_frame, on_failure
        if isinstance(avatar, StreamingAvatar):  # its render thread yields the CPU to the models
            avatar.render_niceness = render_niceness
        self._outputs: list[asyncio.Queue] = []

    async def frames(self) -> AsyncIterator[VideoFrame]:
        """The replica's frames (each with its audio) for one consumer; ends at `end()`."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_FRAMES)
        self._outputs.append(queue)
        try:
            while True:
                frame = await queue.get()
                if frame is None:
                    return
                yield frame
        finally:
            with contextlib.suppress(ValueError):
                self._outputs.remove(queue)

    async def run(self) -> None:
        """Pull the avatar's paced frames, book their audio, fan them out (a slow consumer drops old frames)."""
        try:
            async for frame in self.avatar.frames():
                self._on_frame(frame)
                for q in self._outputs:
                    if q.full():
                        q.get_nowait()
                    q.put_nowait(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the avatar died: say so; audio/video stop, events go on
            log.exception("avatar frames failed")
            self._on_failure(exc)

    def drop_pending(self) -> None:
        """Barge-in: frames already rendered with the cut audio must not go out either."""
        for q in self._outputs:
            while not q.empty():
                q.get_nowait()

    def end(self) -> None:
        """End every consumer's stream."""
        for q in self._outputs:
            if q.full():
                q.get_nowait()
            q.put_nowait(None)
