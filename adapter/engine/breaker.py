"""A circuit breaker per endpoint: after repeated transient failures, stop calling for a
while, then let one probe through; its outcome closes or reopens the circuit.

Backoff alone keeps every exchange retrying on its own clock, so a platform that is down
still gets a steady stream of calls from a large backlog; the breaker makes the whole
endpoint wait instead, and `status` shows it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerView:
    endpoint: str
    state: str  # closed | open | half_open
    failures: int
    opened_for: float  # seconds the circuit has been open, 0 when closed


class CircuitBreaker:
    def __init__(self, endpoint: str, *, threshold: int = 5, open_seconds: float = 30.0,
                 clock=time.monotonic) -> None:
        self.endpoint, self.threshold, self.open_seconds = endpoint, threshold, open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    def allow(self) -> int:
        """How many exchanges may be sent now: 0 (open), 1 (a probe), or -1 (no limit)."""
        with self._lock:
            if self._opened_at is None:
                return -1
            if self._probing or self._clock() - self._opened_at < self.open_seconds:
                return 0
            self._probing = True
            return 1

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._probing = False

    def view(self) -> BreakerView:
        with self._lock:
            if self._opened_at is None:
                return BreakerView(self.endpoint, "closed", self._failures, 0.0)
            age = self._clock() - self._opened_at
            state = "half_open" if self._probing or age >= self.open_seconds else "open"
            return BreakerView(self.endpoint, state, self._failures, age)
