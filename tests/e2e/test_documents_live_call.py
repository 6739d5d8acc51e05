"""End to end: a knowledge-base document changes what the replica says in a real call (real models, real
WebRTC on loopback, the real server). The same question is asked with and without the document; only the call
whose persona carries it answers with the fact, which the model cannot know otherwise."""

from __future__ import annotations

import asyncio
import time

import pytest

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from cvi_lab.harness.call import join, utterances, wait_greeting

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

WAIT = 90.0
FACT = "The lab's espresso machine is called Marvin and lives on the third floor."
QUESTION = "What is the name of the lab's espresso machine?"


async def ask(live, persona_id: str) -> tuple[str, list[dict]]:
    conv = await live.api("POST", "/v2/conversations", {"persona_id": persona_id,
                                                         "properties": {"participant_left_timeout": 0}})
    client = await join(conv, timeout=60)
    try:
        assert await wait_greeting(client, WAIT), "no greeting"
        t0 = time.monotonic()
        client.send_interaction({"message_type": "conversation", "event_type": "conversation.respond",
                                 "conversation_id": conv["conversation_id"], "properties": {"text": QUESTION}})
        assert await client.wait_for(lambda: bool(utterances(client, "replica", t0)), WAIT), "no answer"
        answer = utterances(client, "replica", t0)[0][1]["properties"]["speech"]
    finally:
        await live.api("POST", f"/v2/conversations/{conv['conversation_id']}/end")
        await client.leave()
    return answer, live.turn_metrics(conv["conversation_id"])


async def test_the_replica_answers_with_a_fact_only_in_the_document(live, tmp_path):
    path = tmp_path / "lab-facts.md"
    path.write_text(f"# Lab facts\n\n{FACT}\n\nLunch is served at noon in the atrium on weekdays.\n")
    doc = await live.api("POST", "/v2/documents", {"document_url": str(path), "tags": ["lab"]})
    deadline = time.monotonic() + 30
    while doc["status"] not in ("ready", "error") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        doc = await live.api("GET", f"/v2/documents/{doc['document_id']}")
    assert doc["status"] == "ready", doc
    base = {"system_prompt": "You are a friendly, concise assistant in a live video call. Answer in one or two "
            "short spoken sentences, without lists or markdown.", "default_replica_id": DEFAULT_REPLICA_ID}
    with_kb = (await live.api("POST", "/v2/personas", {**base, "document_tags": ["lab"]}))["persona_id"]
    without = (await live.api("POST", "/v2/personas", base))["persona_id"]

    informed, metrics = await ask(live, with_kb)
    uninformed, _ = await ask(live, without)
    print(f"\nwith the document: {informed!r}\nwithout: {uninformed!r}")
    assert "marvin" in informed.lower()
    assert "marvin" not in uninformed.lower()
    [turn] = [m["metrics"] for m in metrics if m["metrics"].get("source") == "respond"]
    assert turn["retrieval_passages"] >= 1 and turn["retrieval_ms"] is not None
