"""Per-connection token bucket."""

from __future__ import annotations

import time


class TokenBucket:
    """``capacity`` messages, refilled at ``capacity / per_seconds`` per second."""

    def __init__(self, capacity: int, per_seconds: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / per_seconds
        self.tokens = float(capacity)
        self.updated = time.monotonic()

    def take(self) -> float:
        """Spend a token: 0 if allowed, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate
