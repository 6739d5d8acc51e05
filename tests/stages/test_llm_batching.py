"""One shared CTranslate2 model for every call (`stages/llm/batching.py`): concurrent answers decode together,
a lone answer decodes as it did alone, barge-in stops one answer only, and the batch respects the prompt skew."""

from __future__ import annotations

import asyncio
import threading

import ctranslate2
import pytest
import pytest_asyncio
from hydra.utils import instantiate

from cvi_lab.stages.base import ChatMessage, LLMStats
from cvi_lab.stages.llm.batching import END, DecodeBatcher, DecodeRequest
from tests.stages.conftest import stage_conf

ASYNC = pytest.mark.asyncio(loop_scope="module")

SYSTEM = ChatMessage("system", "You are a kind helper who answers in one sentence.")
QUESTIONS = ("Tell me about Mars.", "What is the capital of France?", "Describe a cat.", "How do trains work?")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llm():
    model = instantiate(stage_conf("llm", "ct2_causal"))
    await model.warmup()
    return model


async def collect(llm, question: str, max_tokens: int, stats: LLMStats | None = None) -> str:
    return "".join([p async for p in llm.stream([SYSTEM, ChatMessage("user", question)], max_tokens, stats)])


@ASYNC
async def test_a_lone_answer_is_what_ctranslate2_decodes_for_one_prompt(llm):
    """The batcher adds nothing to one call's decoding: same tokens as CTranslate2's own one-prompt stream."""
    said = await collect(llm, QUESTIONS[0], 16)
    ids = llm._prompt_ids([{"role": "system", "content": SYSTEM.content}, {"role": "user", "content": QUESTIONS[0]}], 16)
    steps = llm._gen.generate_tokens(llm._tok.convert_ids_to_tokens(ids), max_length=16, sampling_topk=1,
                                     end_token=sorted(llm._eos), repetition_penalty=llm.repetition_penalty)
    assert said == llm._decode([s.token_id for s in steps if s.token_id not in llm._eos])
    assert await collect(llm, QUESTIONS[0], 16) == said


@ASYNC
async def test_concurrent_answers_share_decode_steps(llm):
    before = len(llm.batch_sizes)
    stats = [LLMStats() for _ in QUESTIONS]
    outs = await asyncio.gather(*[collect(llm, q, 12, s) for q, s in zip(QUESTIONS, stats)])
    assert all(o.strip() for o in outs)
    assert all(0 < s.completion_tokens <= 12 and s.queue_wait_s is not None for s in stats)
    assert max(llm.batch_sizes[before:]) > 1  # several calls' tokens per step


@ASYNC
async def test_barge_in_stops_one_answer_and_not_the_other(llm):
    long_stats, cut_stats = LLMStats(), LLMStats()
    got: list[str] = []

    async def cut():
        async for piece in llm.stream([SYSTEM, ChatMessage("user", QUESTIONS[2])], 60, cut_stats):
            got.append(piece)

    task = asyncio.create_task(cut())
    full = asyncio.create_task(collect(llm, "Tell me a long story about trains.", 30, long_stats))
    while len(got) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await full
    at_cancel = cut_stats.completion_tokens
    assert long_stats.completion_tokens == 30  # the other call's answer went on to its end
    assert cut_stats.completion_tokens <= at_cancel + 2 < 60


class CountingDecoder:
    """Stands in for CTranslate2 (an outside library): every prompt gets token 1 per step until stopped."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []  # prompt lengths per call
        self.first_step = threading.Event()
        self.release = threading.Event()

    def __call__(self, prompts, max_new, banned, on_token):
        self.batches.append([len(p) for p in prompts])
        live = set(range(len(prompts)))
        for step in range(max_new):
            if step == 1:
                self.first_step.set()
                self.release.wait(10)
            for i in sorted(live):
                if on_token(i, 1):
                    live.discard(i)
            if not live:
                return


def test_a_newcomer_joins_a_running_batch_only_within_the_skew():
    decoder = CountingDecoder()
    batcher = DecodeBatcher(decoder, lambda prompt: 0, lambda: set(), max_batch=4, max_prompt_skew=8)
    running = batcher.submit(DecodeRequest([0] * 20, 30, [], threading.Event()))
    assert decoder.first_step.wait(10)
    near = batcher.submit(DecodeRequest([0] * 24, 5, [], threading.Event()))  # joins at once
    far = batcher.submit(DecodeRequest([0] * 200, 5, [], threading.Event()))  # waits for the batch to end
    decoder.release.set()
    for r in (running, near, far):
        tokens = []
        while (t := r.tokens.get(timeout=10)) is not END:
            tokens.append(t)
        assert len(tokens) == r.max_new
    assert decoder.batches[0] == [20] and [22, 24] in decoder.batches and decoder.batches[-1] == [200]
