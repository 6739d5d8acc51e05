"""One decoding thread for every call of a shared embedded LLM: concurrent answers decode together in a batch.

Why: on CPU a decode step of a small model costs about the same for 1 or 4 sequences (the weights are read
once per step), so several calls' tokens per step multiply the model's throughput (measured in
benchmarks/results/capacity.md: SmolLM2-135M int8, 1 -> 4 sequences per step). Serving calls one after
another instead made the fourth call wait for three whole answers.

How: requests queue here; the thread takes the oldest and every other waiting request whose prompt length is
within `max_prompt_skew` tokens of it (CTranslate2 forwards the shortest prompt's length at once and the
longer prompts' remaining tokens one step at a time, so a large skew would delay the longer prompt), and
decodes them with one `generate_batch` whose per-step callback hands each token to its request. A request
that arrives while a batch runs does not wait for the whole batch: as soon as every running answer's length
so far (prompt + generated) is within the skew of the newcomer's prompt, the batch is stopped after the
current step and restarted with the newcomer beside the running answers, each continued from its text so
far (a re-prefill, once). A request alone in its batch is decoded exactly as before (no preemption ever
happens to a single call), so offline runs stay reproducible for one config and seed.

Per request: `stop` (barge-in) ends its decoding at the next step, its own `max_new`, its queue wait
(submit -> first step of its batch) for the per-hop latency record. Control jobs (priming a prompt cache,
dropping it) run on the same thread between batches, so the backend's state is touched by one thread only.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import queue
import threading
import time
from typing import Callable, Protocol, Sequence

END = None  # what a request's token queue receives after its last token


@dataclasses.dataclass(eq=False)
class DecodeRequest:
    """One answer to decode. `tokens` receives token ids, then END (or an exception)."""

    prompt: list[int]
    max_new: int
    banned: list[list[int]]
    stop: threading.Event
    submitted: float = dataclasses.field(default_factory=time.perf_counter)
    generated: list[int] = dataclasses.field(default_factory=list)
    tokens: queue.Queue = dataclasses.field(default_factory=queue.Queue)
    started: float | None = None  # first batch that carried it
    cached_prompt_tokens: int = 0
    done: bool = False

    @property
    def length(self) -> int:
        """Tokens the decoder holds for this answer so far (prompt + generated)."""
        return len(self.prompt) + len(self.generated)

    @property
    def queue_wait_s(self) -> float | None:
        return None if self.started is None else self.started - self.submitted


class BatchDecoder(Protocol):
    """What a backend provides: decode `prompts` together, calling `on_token(index, token_id) -> stop?` per
    step and item, until every item stopped (callback True, end token or `max_new`)."""

    def __call__(self, prompts: Sequence[list[int]], max_new: int, banned: list[list[int]],
                 on_token: Callable[[int, int], bool]) -> None: ...


class DecodeBatcher:
    """Schedules `DecodeRequest`s onto one thread running `decode` (see the module docstring)."""

    def __init__(self, decode: BatchDecoder, cached_prefix: Callable[[list[int]], int], end_tokens: Callable[[], set[int]],
                 max_batch: int, max_prompt_skew: int, name: str = "cvi-llm-batch") -> None:
        self._decode = decode
        self._cached_prefix = cached_prefix  # leading tokens of a prompt decoded alone served from a cache
        self._end_tokens = end_tokens
        self.max_batch = max_batch
        self.max_prompt_skew = max_prompt_skew
        self._pending: collections.deque[DecodeRequest] = collections.deque()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._cv = threading.Condition()
        self._name = name
        self._thread: threading.Thread | None = None
        self.batch_sizes: list[int] = []  # size of every batch run (read by tests and the benchmark)
        self._closing = False
        # A daemon thread still inside CTranslate2 when the interpreter exits aborts the process: stop first.
        atexit.register(self.close)

    # ------------------------------------------------------------ callers (any thread)
    def submit(self, request: DecodeRequest) -> DecodeRequest:
        with self._cv:
            self._pending.append(request)
            self._start()
            self._cv.notify()
        return request

    def call(self, job: Callable[[], None], wait: bool) -> None:
        """Run `job` on the decoding thread between batches (`wait`: block until it ran, re-raising its error)."""
        done = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                error.append(exc)
            finally:
                done.set()

        with self._cv:
            self._jobs.append(run)
            self._start()
            self._cv.notify()
        if wait:
            done.wait()
            if error:
                raise error[0]

    def close(self) -> None:
        """Stop decoding (every answer ends at its next step) and let the thread leave CTranslate2."""
        with self._cv:
            self._closing = True
            for r in self._pending:
                r.stop.set()
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ the decoding thread
    def _fits(self, batch: Sequence[DecodeRequest], newcomer: DecodeRequest) -> bool:
        return all(abs(r.length - newcomer.length) <= self.max_prompt_skew for r in batch)

    def _take_batch(self) -> list[DecodeRequest]:
        """The oldest waiting request and the others that fit beside it (caller holds the lock)."""
        batch: list[DecodeRequest] = []
        rest: collections.deque[DecodeRequest] = collections.deque()
        while self._pending:
            r = self._pending.popleft()
            if r.stop.is_set():
                self._finish(r)
            elif len(batch) < self.max_batch and (not batch or self._fits(batch, r)):
                batch.append(r)
            else:
                rest.append(r)
        self._pending = rest
        return batch

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._jobs and not self._closing:
                    self._cv.wait()
                if self._closing:
                    for r in self._pending:
                        self._finish(r)
                    return
                jobs = list(self._jobs)
                self._jobs.clear()
                batch = [] if jobs else self._take_batch()
            for job in jobs:
                job()
            if batch:
                self._run(batch)

    def _run(self, batch: list[DecodeRequest]) -> None:
        ends = self._end_tokens()
        preempt = threading.Event()
        now = time.perf_counter()
        for r in batch:
            if r.started is None:
                r.started = now
        self.batch_sizes.append(len(batch))
        stopped = [False] * len(batch)

        def on_token(i: int, token: int) -> bool:
            r = batch[i]
            if stopped[i] or self._closing:
                return True
            r.generated.append(token)
            r.tokens.put(token)
            if token in ends or len(r.generated) >= r.max_new or r.stop.is_set():
                r.done = True
            elif not preempt.is_set() and self._should_preempt(batch):
                preempt.set()
            stopped[i] = r.done or preempt.is_set()
            return stopped[i]

        banned = list({tuple(s): None for r in batch for s in r.banned})
        if len(batch) == 1 and not batch[0].generated:
            batch[0].cached_prompt_tokens = self._cached_prefix(batch[0].prompt)
        try:
            self._decode([r.prompt + r.generated for r in batch], max(r.max_new - len(r.generated) for r in batch),
                                  [list(s) for s in banned], on_token)
        except BaseException as exc:  # noqa: BLE001 - every consumer of the batch sees the failure
            for r in batch:
                r.tokens.put(exc)
            return
        resumed = []
        for i, r in enumerate(batch):
            if r.done or r.stop.is_set() or not stopped[i] or (r.generated and r.generated[-1] in ends):
                self._finish(r)
            else:
                resumed.append(r)
        if resumed:
            with self._cv:
                self._pending.extendleft(reversed(resumed))  # first in the next batch, beside the newcomers

    def _should_preempt(self, batch: Sequence[DecodeRequest]) -> bool:
        """A waiting request can join now: the batch has room and every running answer fits beside it."""
        with self._cv:
            if len(batch) >= self.max_batch:
                return False
            running = [r for r in batch if not r.done]
            return any(not w.stop.is_set() and self._fits(running, w) for w in self._pending)

    @staticmethod
    def _finish(r: DecodeRequest) -> None:
        if r.started is None:
            r.started = time.perf_counter()
        r.tokens.put(END)
