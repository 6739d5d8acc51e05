"""The engine's parts on their own: the event bus, the frame pump and the heard-audio ledger."""

from __future__ import annotations

import asyncio

import numpy as np

from cvi_lab.clock import FakeClock
from cvi_lab.engine.events import EventBus, Sinks
from cvi_lab.engine.frame_pump import QUEUE_FRAMES, FramePump
from cvi_lab.engine.speech import Clause, Speech, SpeechLedger
from cvi_lab.media import VideoFrame
from tests.engine.standins import BlankAvatar

RATE = 16_000


def frame(seconds: float, speaking: bool = True) -> VideoFrame:
    return VideoFrame(np.zeros((2, 2, 3), np.uint8), 0.0, np.zeros(int(seconds * RATE), np.float32), RATE, speaking)


async def test_bus_numbers_events_replays_the_join_survives_a_broken_subscriber_and_records_transcript_events():
    recorded, turns = [], []

    async def record_turn(idx, metrics):  # an async sink is awaited off the caller
        turns.append((idx, metrics))

    tasks = []
    bus = EventBus("c1", FakeClock(), Sinks(record_event=lambda t, p: recorded.append((t, p)), record_turn=record_turn),
                   current_turn=lambda: 7, spawn=lambda coro: tasks.append(asyncio.ensure_future(coro)) or tasks[-1])
    bus.announce_joined("r1")

    def broken(event):
        raise RuntimeError("subscriber down")

    got = []
    bus.subscribe(broken)
    unsubscribe = bus.subscribe(got.append)
    bus.emit("conversation.utterance", {"role": "user", "speech": "hi"}, inference_id="i1")
    bus.emit("conversation.user.started_speaking", {}, turn_idx=3)
    bus.record_turn(7, {"x": 1})
    await asyncio.gather(*tasks)
    unsubscribe()
    bus.emit("conversation.user.stopped_speaking", {})
    assert [e["event_type"] for e in got] == ["system.replica_joined", "conversation.utterance",
                                             "conversation.user.started_speaking"]
    assert [e["seq"] for e in got] == [1, 2, 3] and [e["turn_idx"] for e in got] == [7, 7, 3]
    assert got[1]["inference_id"] == "i1" and got[1]["conversation_id"] == "c1"
    (event_type, props), = recorded  # only transcript events are stored
    assert event_type == "conversation.utterance" and props["seq"] == 2 and props["inference_id"] == "i1"
    assert turns == [(7, {"x": 1})]


async def test_pump_fans_out_drops_a_slow_consumers_oldest_frames_and_ends_every_stream():
    avatar = BlankAvatar()
    seen = []
    pump = FramePump(avatar, seen.append, on_failure=lambda exc: None, render_niceness=0)
    stream = pump.frames()
    first = asyncio.ensure_future(stream.__anext__())  # registers the consumer, takes one frame
    task = asyncio.ensure_future(pump.run())
    await first
    while len(seen) < QUEUE_FRAMES + 6:  # the consumer does not read: its queue fills
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    pump.end()  # a full queue still gets the end of stream
    rest = [f async for f in stream]
    assert len(rest) == QUEUE_FRAMES - 1 and rest[-1] is seen[-1]  # the newest kept, the oldest dropped


def test_ledger_books_frames_fifo_and_tells_start_and_drain():
    events = []
    ledger = SpeechLedger(0.02, lambda sp, now: events.append(("started", sp.kind)),
                          lambda sp: events.append(("drained", sp.kind)))
    a, b = Speech("a", 1), Speech("b", 1)
    ca, cb = Clause("one two"), Clause("three")
    ledger.book(a, ca, 0.05, now=0.0)
    ledger.book(b, cb, 0.04, now=0.0)
    assert ledger.audible() is a and ledger.holds(b)
    ledger.account(frame(0.04), now=0.1)
    assert abs(ca.played - 0.04) < 1e-9 and cb.played == 0.0
    ledger.account(frame(0.04), now=0.12)  # 0.01 s finishes a, 0.03 s goes to b
    assert abs(ca.played - 0.05) < 1e-9 and abs(cb.played - 0.03) < 1e-9 and ledger.audible() is b
    ledger.account(frame(0.02, speaking=False), now=0.2)  # a silent frame: what was pushed has played
    assert not ledger and abs(cb.played - 0.04) < 1e-9
    assert events == [("started", "a"), ("started", "a"), ("drained", "a"), ("started", "b"), ("started", "b"),
                      ("drained", "b")]
    ledger.book(a, ca, 0.05, now=0.3)
    ledger.drop([a])
    assert not ledger and ledger.audible() is None
