"""Memories over HTTP (SPEC §5 `memory_stores`): a call with tags that ends leaves the participant's facts and
decisions for each tag (the rule extractor of cvi_lab/conf/memory/rules.yaml); a later call with a tag gets them
in its runtime's persona context; /v2/memories lists, gets and deletes them, /v2/memory_stores/{tag} forgets a tag.
The call here has no runtime (API tests): its utterances are stored as the engine stores them."""

from __future__ import annotations

from cvi_lab.domain.ids import DEFAULT_REPLICA_ID

SAID = [("user", "Hi there! Well, my name is Ada and I live in Lyon."), ("replica", "Nice to meet you, Ada."),
        ("user", "I'm fine, thanks. What time is it?"), ("user", "Let's meet again on Friday at noon."),
        ("replica", "My favourite colour is blue.")]


async def body(resp, status: int = 200):
    out = await resp.json() if resp.status != 204 else None
    assert resp.status == status, out
    return out


async def call(api, utterances, **fields) -> str:
    conv = await body(await api.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID, **fields}))
    cid = conv["conversation_id"]
    for role, speech in utterances:
        api.app["store"].add_event(cid, "conversation.utterance", {"role": role, "speech": speech})
    await body(await api.post(f"/v2/conversations/{cid}/end"))
    return cid


async def test_an_ended_call_leaves_its_facts_and_decisions_for_each_tag_and_the_next_call_recalls_them(api):
    pal = await body(await api.post("/v2/pals", json={"system_prompt": "Be brief.", "memory_stores": ["ada"],
                                                      "default_face_id": DEFAULT_REPLICA_ID}))
    assert pal["memory_stores"] == ["ada"]
    first = await call(api, SAID, pal_id=pal["pal_id"], memory_stores=["team"])
    record = await body(await api.get(f"/v2/conversations/{first}"))
    assert record["memory_stores"] == ["team"]
    for tag in ("ada", "team"):
        listed = await body(await api.get(f"/v2/memories?memory_store={tag}"))
        texts = {(m["kind"], m["text"]) for m in listed["data"]}
        # the participant's self-statements and decision; not small talk, questions or the replica's words
        assert texts == {("fact", "My name is Ada and I live in Lyon."),
                         ("decision", "Let's meet again on Friday at noon.")}, listed
        assert listed["total_count"] == 2 and {m["conversation_id"] for m in listed["data"]} == {first}
    await call(api, [("user", "My name is Ada and I live in Lyon.")], pal_id=pal["pal_id"])
    assert (await body(await api.get("/v2/memories?memory_store=ada")))["total_count"] == 2  # nothing twice

    conv = await body(await api.post("/v2/conversations", json={"pal_id": pal["pal_id"]}))
    context = api.app["manager"].live[conv["conversation_id"]].persona["context"]
    assert "My name is Ada and I live in Lyon." in context and "Friday at noon" in context
    assert (await body(await api.get(f"/v2/pals/{pal['pal_id']}")))["context"] is None  # the stored PAL is as it was


async def test_memories_are_got_and_forgotten_one_by_one_or_by_tag(api):
    await call(api, SAID, replica_id=DEFAULT_REPLICA_ID, memory_stores=["one", "two"])
    [first, *_] = (await body(await api.get("/v2/memories?memory_store=one&limit=1")))["data"]
    assert (await body(await api.get(f"/v2/memories/{first['memory_id']}"))) == first
    await body(await api.delete(f"/v2/memories/{first['memory_id']}"), 204)
    err = await body(await api.get(f"/v2/memories/{first['memory_id']}"), 404)
    assert err["field"] == "memory_id"
    assert (await body(await api.get("/v2/memories")))["total_count"] == 3
    await body(await api.delete("/v2/memory_stores/two"), 204)
    err = await body(await api.delete("/v2/memory_stores/two"), 404)
    assert "no memories" in err["error"]
    assert (await body(await api.get("/v2/memories")))["total_count"] == 1


async def test_bad_memory_store_tags_are_a_400_naming_the_field(api):
    for query in ("memory_store=", "memory_store=%20a", "memory_store=a,b", "memory_store=a&memory_store=b"):
        err = await body(await api.get(f"/v2/memories?{query}"), 400)
        assert err["field"] == "memory_store", (query, err)
    err = await body(await api.delete("/v2/memory_stores/a,b"), 400)
    assert err["field"] == "memory_store"
    for tags in ([""], ["a,b"], [" a"], ["x"] * 33):
        err = await body(await api.post("/v2/conversations", json={"replica_id": DEFAULT_REPLICA_ID,
                                                                  "test_mode": True, "memory_stores": tags}), 400)
        assert err["field"].startswith("memory_stores"), err
