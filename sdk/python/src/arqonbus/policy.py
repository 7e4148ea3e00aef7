"""Pure timing policies: reconnect backoff, the publish pacing bucket, token refresh timing.

No I/O and no clock of their own (time is passed in), so each is tested case by case.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from datetime import datetime


class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(max, initial·2ⁿ⁻¹)).

    The first attempt after a healthy connection (n = 0) waits nothing: the server's closes that
    invite a reconnect (4008, 1001) want it at once; only repeated failures back off.
    """

    def __init__(
        self, initial_s: float = 0.25, max_s: float = 10.0, rng: Callable[[], float] = random.random
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        n = self.attempt
        self.attempt += 1
        if n == 0:
            return 0.0
        cap = min(self.max_s, self.initial_s * (2.0 ** min(n - 1, 62)))
        return self._rng() * cap

    def reset(self) -> None:
        self.attempt = 0


class TokenBucket:
    """Client-side mirror of the server's per-connection bucket (protocol §3.4).

    `take(now)` reserves one token and returns how long to wait before using it, so callers
    that each take a token and sleep are spaced exactly at the refill rate.
    """

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("bucket needs rate > 0 and burst >= 1")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> float:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def pause(self, seconds: float, now: float) -> None:
        """The server said RATE_LIMITED anyway: no token until `seconds` from now."""
        self._at = now
        self._tokens = 1.0 - max(seconds, 0.0) * self.rate


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim (Unix seconds) of a JWT, read without verifying it; None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        body = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(body))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def parse_rfc3339(value: object) -> float | None:
    """`2026-11-26T13:00:00.000Z` → Unix seconds; None for null or anything unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def refresh_delay(expires_at: float, now: float, lead_max_s: float = 60.0) -> float:
    """How long from `now` to refresh a token expiring at `expires_at`.

    A quarter of the remaining life ahead of expiry, at most `lead_max_s` ahead: a one-hour
    token refreshes a minute early, a 4-second token one second early.
    """
    remaining = expires_at - now
    if remaining <= 0:
        return 0.0
    lead = min(lead_max_s, remaining * 0.25)
    return remaining - lead
