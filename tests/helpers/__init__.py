"""Test helpers shared across suites (webhook receiver, config, stand-in replica builder, server process)."""
