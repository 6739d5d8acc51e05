"""Webhooks: SPEC §3 payloads, retries with backoff against a loopback receiver, never blocking the call."""

from __future__ import annotations

import asyncio
import socket

import pytest

from cvi_lab.api.app import create_app
from cvi_lab.clock import SystemClock
from cvi_lab.domain.conversation import ConversationCreate, ShutdownReason
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID
from tests.helpers.config import make_cfg
from tests.helpers.webhook_receiver import WebhookReceiver

FAST = {"webhooks.initial_backoff_s": 0.02, "webhooks.backoff_factor": 2.0, "webhooks.max_attempts": 4,
        "webhooks.timeout_s": 5.0}


@pytest.fixture
async def real_app(tmp_path):
    """Real clock: retries here really wait (tens of milliseconds)."""
    apps = []

    async def make(**server):
        app = create_app(make_cfg(tmp_path / f"h{len(apps)}", **{**FAST, **server}), clock=SystemClock())
        await app["manager"].start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app["manager"].close()
        await app["webhooks"].close()
        app["store"].close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create(url: str, **kw) -> ConversationCreate:
    return ConversationCreate.model_validate({"replica_id": DEFAULT_REPLICA_ID, "callback_url": url, **kw})


async def test_lifecycle_webhooks_have_the_spec_shape(real_app):
    app = await real_app()
    m = app["manager"]
    async with WebhookReceiver() as hooks:
        cid = (await m.create(create(hooks.url, conversational_context="Facts.")))["conversation_id"]
        m.call(cid).add_event("conversation.utterance", {"role": "user", "speech": "hi"})
        m.call(cid).add_event("conversation.utterance", {"role": "replica", "speech": "hello"})
        await m.end(cid)
        await hooks.wait_for(lambda h: len(h.received) >= 3)
    joined, = hooks.of_type("system.replica_joined")
    shutdown, = hooks.of_type("system.shutdown")
    ready, = hooks.of_type("application.transcription_ready")
    for payload in (joined, shutdown, ready):
        assert set(payload) == {"conversation_id", "event_type", "message_type", "webhook_url", "timestamp",
                                "properties"}
        assert payload["conversation_id"] == cid and payload["webhook_url"] == hooks.url
        assert payload["timestamp"].endswith("Z")
    assert joined["message_type"] == "system" and joined["properties"] == {"replica_id": DEFAULT_REPLICA_ID, "face_id": DEFAULT_REPLICA_ID}
    assert shutdown["properties"]["shutdown_reason"] == ShutdownReason.END_ENDPOINT
    assert ready["message_type"] == "application"
    # no runtime ran this call, so no LLM saw a system message: the transcript is the utterances alone
    # (with a runtime it starts with what the LLM saw: tests/calls/test_calls_lifecycle.py)
    assert ready["properties"]["transcript"] == [{"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": "hello"}]


async def test_retries_with_backoff_until_delivered_and_records_attempts(real_app):
    app = await real_app()
    async with WebhookReceiver(fail_first=2, fail_status=503) as hooks:
        delivery = app["webhooks"].send("c00000001", hooks.url, "system.shutdown", {"shutdown_reason": "x"})
        await hooks.wait_for(lambda h: len(h.received) == 1)
        await app["webhooks"].drain(10)
    assert len(hooks.attempts) == 3
    row, = app["store"].deliveries("c00000001")
    assert row["id"] == delivery and row["status"] == "delivered" and row["attempts"] == 3
    assert row["last_status_code"] == 200 and row["last_error"] is None


async def test_client_errors_are_not_retried(real_app):
    app = await real_app()
    async with WebhookReceiver(fail_first=10, fail_status=404) as hooks:
        app["webhooks"].send("c00000002", hooks.url, "system.shutdown", {})
        await app["webhooks"].drain(10)
    row, = app["store"].deliveries("c00000002")
    assert row["status"] == "failed" and row["attempts"] == 1 and row["last_error"] == "HTTP 404"


async def test_a_dead_callback_url_never_blocks_or_breaks_the_call(real_app):
    app = await real_app(**{"webhooks.max_attempts": 3})
    m = app["manager"]
    dead = f"http://127.0.0.1:{free_port()}/hook"
    cid = (await m.create(create(dead)))["conversation_id"]
    ended = await asyncio.wait_for(m.end(cid), 5)  # returns without waiting for any delivery
    assert ended["status"] == "ended"
    await app["webhooks"].drain(20)
    rows = app["store"].deliveries(cid)
    assert {r["event_type"] for r in rows} == {"system.replica_joined", "system.shutdown",
                                               "application.transcription_ready"}
    assert all(r["status"] == "failed" and r["attempts"] == 3 and r["last_error"] for r in rows)


async def test_pending_deliveries_resume_at_next_start(real_app):
    app = await real_app()
    store = app["store"]
    async with WebhookReceiver() as hooks:
        payload = app["webhooks"].payload("c00000003", hooks.url, "system.shutdown", {})
        store.add_delivery("c00000003", "system.shutdown", hooks.url, payload)  # left by a killed run
        assert app["webhooks"].resume_pending() == 1
        await hooks.wait_for(lambda h: len(h.received) == 1)
        await app["webhooks"].drain(10)
    assert store.deliveries("c00000003")[0]["status"] == "delivered"
