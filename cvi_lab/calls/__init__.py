"""Conversation lifecycle: rooms and presence, timers, concurrency, usage, webhooks, replica builds."""
