"""The shipped concurrency limit (server.limits.max_concurrent_conversations, set from
benchmarks/results/capacity.md) is what the server enforces: the call beyond it gets the hosted 429 at creation."""

from __future__ import annotations

from cvi_lab.config import load_group
from cvi_lab.domain.ids import DEFAULT_REPLICA_ID


async def test_the_call_beyond_the_configured_capacity_is_refused(make_client):
    limit = int(load_group("server", "default").limits.max_concurrent_conversations)
    api = await make_client(**{"limits.max_concurrent_conversations": limit})  # (test helpers may pin another)
    body = {"replica_id": DEFAULT_REPLICA_ID}
    for _ in range(limit):
        assert (await api.post("/v2/conversations", json=body)).status == 200
    refused = await api.post("/v2/conversations", json=body)
    assert refused.status == 429
    assert "User has reached maximum concurrent conversations" in (await refused.json())["error"]
