"""The embedded LLM backends (hf_causal, ct2_causal) on the real shipped model: one behaviour, two engines.

Streaming, max tokens, the prompt cache (primed, reused across turns and across a trimmed history, equal to a
cold run), cancellation within a token, the opener guard, and clear errors for bad input.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cvi_lab.stages.base import ChatMessage, LLMStats, ModelMissingError, StageInputError
from cvi_lab.stages.llm.ct2_causal import CT2CausalLLM
from cvi_lab.stages.llm.hf_causal import HFCausalLLM
from tests.stages.conftest import stage_conf

pytestmark = pytest.mark.asyncio(loop_scope="module")

SYSTEM = ChatMessage("system", "Your name is Zorblax. You are a robot from the planet Quix.")
BACKENDS = {"hf_causal": HFCausalLLM, "ct2_causal": CT2CausalLLM}


async def same_as_cold(llm, messages, warm_out: str, n: int) -> None:
    """A cached prompt gives what a cold run gives. transformers: bit for bit. CTranslate2's cached static
    prompt runs its int8 GEMMs over other shapes than a full prefill, so its text may differ from a cold run
    (seen: "The food here is a mix ..." vs "... called Nyx-1"): there, each path must be exactly reproducible."""
    if isinstance(llm, HFCausalLLM):
        llm.reset_cache()
        assert await collect(llm, messages, n) == warm_out
    else:
        await llm.prime(messages[:-1])
        assert await collect(llm, messages, n) == warm_out  # the cached path again: the same text
        llm.reset_cache()
        assert await collect(llm, messages, n) == await collect(llm, messages, n)  # the cold path: the same text


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=sorted(BACKENDS))
async def llm(request):
    # (the prompt cache is what several tests check: on, whatever the file's default)
    model = instantiate(OmegaConf.merge(stage_conf("llm", request.param), {"prefix_cache": True}))
    await model.warmup(system_prompt=SYSTEM.content)
    return model


def build(name: str, **overrides):
    """The stage as cvi_lab/conf/llm/<name>.yaml builds it, with some settings changed."""
    cfg = OmegaConf.to_container(OmegaConf.merge(stage_conf("llm", name), overrides))
    cfg.pop("_target_")
    return BACKENDS[name](**cfg)  # called directly: its own error, not Hydra's wrapper


async def collect(llm, messages, max_tokens=None, stats=None) -> str:
    return "".join([piece async for piece in llm.stream(messages, max_tokens=max_tokens, stats=stats)])


async def test_follows_system_prompt(llm):
    out = await collect(llm, [SYSTEM, ChatMessage("user", "What is your name?")], max_tokens=8)
    assert "zor" in out.lower()  # the name comes from the system prompt (ct2's int8 says "Zor-El")
    pirate = [ChatMessage("system", "You are a pirate. Always say 'Arr' in every answer."), ChatMessage("user", "How are you today?")]
    said = (await collect(llm, pirate, max_tokens=4)).lower()
    assert said.startswith("arr") or "pirate" in said  # ct2's int8: "I'm a pirate"


async def test_honours_max_tokens(llm):
    stats = LLMStats()
    out = await collect(llm, [SYSTEM, ChatMessage("user", "Tell me a long story about your planet.")], 5, stats)
    assert stats.completion_tokens == 5 and out.strip()
    assert stats.prompt_tokens > 20 and stats.first_token_s is not None and stats.total_s >= stats.first_token_s


async def test_second_turn_reuses_prefix_cache_and_matches_cold_run(llm):
    history = [SYSTEM, ChatMessage("user", "Hi! Where are you from?")]
    first_stats = LLMStats()
    first = await collect(llm, history, 10, first_stats)
    assert first_stats.cached_prompt_tokens > 10  # the system prompt was primed by warmup
    history += [ChatMessage("assistant", first)]
    await llm.prime(history)  # as the engine does after each answer
    history += [ChatMessage("user", "What do people eat there?")]
    warm = LLMStats()
    warm_out = await collect(llm, history, 10, warm)
    # everything up to the new user turn came from the cache
    assert warm.cached_prompt_tokens >= first_stats.prompt_tokens
    assert warm.prompt_tokens - warm.cached_prompt_tokens < 20
    await same_as_cold(llm, history, warm_out, 10)
    llm.reset_cache()
    cold = LLMStats()
    await collect(llm, history, 10, cold)
    assert cold.cached_prompt_tokens == 0


async def test_cancellation_is_prompt_and_leaves_a_usable_cache(llm):
    msgs = [SYSTEM, ChatMessage("user", "Describe your planet in great detail.")]
    stats = LLMStats()
    got: list[str] = []

    async def consume():
        async for piece in llm.stream(msgs, max_tokens=200, stats=stats):
            got.append(piece)

    task = asyncio.create_task(consume())
    while len(got) < 3:
        await asyncio.sleep(0.01)
    at_cancel = stats.completion_tokens
    t0 = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - t0 < 2.0
    await asyncio.sleep(1.0)  # the worker would have produced several more tokens by now if not stopped
    assert stats.completion_tokens <= at_cancel + 2

    # aclose() (consumer breaks out of `async for`) stops it as well
    stats2 = LLMStats()
    agen = llm.stream(msgs, max_tokens=200, stats=stats2)
    await agen.__anext__()
    await agen.aclose()
    n = stats2.completion_tokens
    await asyncio.sleep(0.5)
    assert stats2.completion_tokens <= n + 2

    # the cache after a cancelled run still gives the same answer as a cold run
    await same_as_cold(llm, msgs, await collect(llm, msgs, 6), 6)


@pytest.mark.parametrize(
    "messages, max_tokens, words",
    [
        ([], None, "non-empty list"),
        ([ChatMessage("user", "   ")], None, "non-empty turn"),
        ([{"role": "robot", "content": "hi"}], None, "accepted roles"),
        ([ChatMessage("user", "hi")], 0, "positive integer"),
    ],
)
async def test_bad_input_is_a_clear_error(llm, messages, max_tokens, words):
    with pytest.raises(StageInputError, match=words):
        await collect(llm, messages, max_tokens)


@pytest.mark.parametrize("name", sorted(BACKENDS))
async def test_missing_model_file_is_a_clear_error(tmp_path, name):
    with pytest.raises(ModelMissingError, match="does not exist"):
        await build(name, model=str(tmp_path / "nope.gguf")).warmup()
    with pytest.raises(ModelMissingError, match="not a model directory"):
        await build(name, model=str(tmp_path)).warmup()
    with pytest.raises(StageInputError, match="temperature"):
        build(name, temperature=-1)
    with pytest.raises(StageInputError, match="opener_guard_words"):
        build(name, opener_guard_words=-1)


async def test_prefix_reuse_across_a_trimmed_history(llm):
    """The engine trims the oldest turns in blocks and primes the prompt after each answer: the next answer
    prefills only the new user turn, and equals a cold run of the same prompt."""
    turns = [("Hi! Where are you from?", "I am from the planet Quix."), ("Is it far?", "Yes, very far away."),
             ("Do you like it?", "I love my home planet.")]
    history = [m for q, a in turns for m in (ChatMessage("user", q), ChatMessage("assistant", a))]
    trimmed = [SYSTEM] + history[2:]  # the oldest exchange dropped
    await llm.prime(trimmed)
    warm = LLMStats()
    warm_out = await collect(llm, trimmed + [ChatMessage("user", "What do people eat there?")], 10, warm)
    assert warm.prompt_tokens - warm.cached_prompt_tokens < 20  # only the new user turn was prefilled
    await same_as_cold(llm, trimmed + [ChatMessage("user", "What do people eat there?")], warm_out, 10)


async def test_opener_guard_no_answer_opens_like_an_earlier_one(llm):
    question = ChatMessage("user", "What is the capital of France?")
    first = await collect(llm, [SYSTEM, question], 24)
    assert len(first.split()) >= llm.opener_guard_words  # (else the guard has nothing to hold)
    again = await collect(llm, [SYSTEM, question, ChatMessage("assistant", first), question], 24)
    assert again.strip()
    assert again.split()[: llm.opener_guard_words] != first.split()[: llm.opener_guard_words]
