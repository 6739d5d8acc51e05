"""hf_causal LLM on the real shipped SmolLM2-135M-Instruct (greedy, so outputs are deterministic)."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cvi_lab.stages.base import ChatMessage, LLMStats, ModelMissingError, StageInputError
from cvi_lab.stages.llm.hf_causal import HFCausalLLM

pytestmark = pytest.mark.asyncio(loop_scope="module")

SYSTEM = ChatMessage("system", "Your name is Zorblax. You are a robot from the planet Quix.")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llm():
    cfg = OmegaConf.load("conf/llm/hf_causal.yaml")
    model = instantiate(cfg)
    await model.warmup(system_prompt=SYSTEM.content)
    return model


async def collect(llm, messages, max_tokens=None, stats=None) -> str:
    return "".join([piece async for piece in llm.stream(messages, max_tokens=max_tokens, stats=stats)])


async def test_follows_system_prompt(llm):
    out = await collect(llm, [SYSTEM, ChatMessage("user", "What is your name?")], max_tokens=8)
    assert "Zorblax" in out
    pirate = [ChatMessage("system", "You are a pirate. Always say 'Arr' in every answer."), ChatMessage("user", "How are you today?")]
    assert (await collect(llm, pirate, max_tokens=4)).lower().startswith("arr")


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
    history += [ChatMessage("assistant", first), ChatMessage("user", "What do people eat there?")]
    warm = LLMStats()
    warm_out = await collect(llm, history, 10, warm)
    # everything up to the new user turn came from the cache
    assert warm.cached_prompt_tokens >= first_stats.prompt_tokens
    assert warm.prompt_tokens - warm.cached_prompt_tokens < 20
    llm.reset_cache()
    cold = LLMStats()
    cold_out = await collect(llm, history, 10, cold)
    assert cold.cached_prompt_tokens == 0
    assert cold_out == warm_out


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
    after = await collect(llm, msgs, 6)
    llm.reset_cache()
    assert after == await collect(llm, msgs, 6)


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


async def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelMissingError, match="does not exist"):
        await HFCausalLLM(model=str(tmp_path / "nope.gguf")).warmup()
    with pytest.raises(ModelMissingError, match="not a model directory"):
        await HFCausalLLM(model=str(tmp_path)).warmup()
    with pytest.raises(StageInputError, match="temperature"):
        HFCausalLLM(temperature=-1)
