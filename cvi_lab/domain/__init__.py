"""Domain: the spec's records (persona, replica, conversation) with their defaults and rules; no I/O."""
