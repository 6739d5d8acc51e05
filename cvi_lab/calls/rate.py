"""`RateWindow`: at most N requests in any window of W seconds (a sliding log), on the manager's clock.

Why a log and not a token bucket: the hosted limit is stated as "120 requests per 60 s per conversation", and a
log of request times enforces exactly that statement (and says when the next request is allowed again).
"""

from __future__ import annotations

import collections
from typing import Callable


class RateWindow:
    def __init__(self, max_requests: int, window_s: float, now: Callable[[], float]) -> None:
        if max_requests < 1 or window_s <= 0:
            raise ValueError(f"a rate window needs max_requests >= 1 and window_s > 0, got {max_requests}, {window_s}")
        self.max_requests, self.window_s, self._now = int(max_requests), float(window_s), now
        self._times: collections.deque[float] = collections.deque()

    def admit(self) -> float | None:
        """Count a request: None if it is within the limit, else the seconds until one would be."""
        now = self._now()
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if len(self._times) >= self.max_requests:
            return self._times[0] + self.window_s - now
        self._times.append(now)
        return None
