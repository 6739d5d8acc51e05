"""One writing process for the concurrency test: `python -m tests.store.writer LOCATION TAG N` opens the store
(migrating it if it is new) and writes N conversations, each with an event, and N events to the shared one."""

from __future__ import annotations

import sys

from cvi_lab.store import Store


def main(location: str, tag: str, n: int) -> None:
    store = Store(location)
    try:
        for i in range(n):
            cid = f"c{tag}{i:04d}"
            store.insert_conversation(cid, {"conversation_name": cid, "status": "active", "conversation_url": "u",
                                            "replica_id": "r", "persona_id": "p", "properties": {"i": i}})
            store.add_event(cid, "system.replica_joined", {"writer": tag})
            store.add_event("shared", "conversation.utterance", {"writer": tag, "i": i})
            store.heartbeat_usage("shared", float(i))
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
