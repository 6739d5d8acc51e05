"""Conversation lifecycle: rooms and presence, timers, concurrency, usage, webhooks, replica builds.

- `manager`       `ConversationManager`: creates, ends and lists calls; timers, usage, the transcript
- `call`          `Call`: one live call; presence goes room first, then the runtime
- `room`          `CallRoom`: who is in a call, the participant cap, presence events (pure state)
- `runtime`       `ConversationRuntime` / `RuntimeFactory`: what runs a call (the engine implements it)
- `endpoint`      `ConversationEndpoint`: the transport's `CallEndpoint`, composed from a call and its runtime
- `replicas`, `replica_build`, `webhooks`, `settings`, `timers`: replica builds (served / in-process),
  webhook delivery, plain views of the config, waiting on the injected clock
"""
