"""Outbound network access the server makes on a client's behalf (see safe_fetch.py)."""
