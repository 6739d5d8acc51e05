"""End to end: memories change what the replica says in a later call (real models, real WebRTC on loopback, the
real server). Call 1 with a memory store: the participant says a fact the model cannot know. Call 2 with the same
store asks for it: the answer has it, and the system message the LLM saw (the stored transcript's first entry)
carries the memory."""

from __future__ import annotations

import time

import pytest

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.harness.call import join, utterances, wait_greeting

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

WAIT = 90.0
FACT = "My dog is called Biscuit."
QUESTION = "What is my dog called?"


async def say(live, persona_id: str, text: str) -> tuple[str, str, str]:
    """One call: greeting, `text` as the participant's turn (conversation.respond), the answer; then the end.
    Returns (conversation_id, the answer, the system message the LLM answered with: the transcript's first)."""
    conv = await live.api("POST", "/v2/conversations", {"persona_id": persona_id, "memory_stores": ["owner"],
                                                         "properties": {"participant_left_timeout": 0}})
    client = await join(conv, timeout=60)
    try:
        assert await wait_greeting(client, WAIT), "no greeting"
        t0 = time.monotonic()
        client.send_interaction({"message_type": "conversation", "event_type": "conversation.respond",
                                 "conversation_id": conv["conversation_id"], "properties": {"text": text}})
        assert await client.wait_for(lambda: bool(utterances(client, "replica", t0)), WAIT), "no answer"
        answer = utterances(client, "replica", t0)[0][1]["properties"]["speech"]
        system = live.app["manager"].call(conv["conversation_id"]).system_message()
    finally:
        await live.api("POST", f"/v2/conversations/{conv['conversation_id']}/end")
        await client.leave()
    return conv["conversation_id"], answer, system


async def test_a_fact_told_in_one_call_is_recalled_in_the_next_with_the_same_memory_store(live):
    persona = (await live.api("POST", "/v2/personas", {
        "system_prompt": "You are a friendly, concise assistant in a live video call. Answer in one or two short "
                         "spoken sentences, without lists or markdown.", "default_replica_id": DEFAULT_REPLICA_ID,
    }))["persona_id"]
    first, _, _ = await say(live, persona, FACT)
    memories = await live.api("GET", "/v2/memories?memory_store=owner")
    assert [(m["text"], m["conversation_id"]) for m in memories["data"]] == [(FACT, first)]

    _, answer, system = await say(live, persona, QUESTION)
    print(f"\nasked {QUESTION!r} in the next call: {answer!r}")
    assert f'"{FACT}"' in system
    assert "biscuit" in answer.lower()
