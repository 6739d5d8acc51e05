"""HTTP API (aiohttp) compatible with the hosted CVI API's /v2 routes."""
