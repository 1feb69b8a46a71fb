"""Failed sign-ins, rate-limited per account and per client address.

After `MAX_FAILURES_PER_ACCOUNT` wrong passwords for one username within `WINDOW_SECONDS`, that
username is refused (HTTP 429, with how long to wait) until the oldest of those failures leaves
the window, whatever the password, so guessing cannot go on and a right guess during the lockout
teaches nothing. One address gets more room (a school's staff may share one NAT address) but is
limited too, so it cannot walk through many usernames. Unknown usernames count like known ones:
the answer never tells which accounts exist.

Kept in the process's memory: with several workers each keeps its own count (the limit is then
per worker; a shared store such as Redis would make it global).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 30
WINDOW_SECONDS = 15 * 60
MAX_TRACKED = 10_000  # accounts + addresses remembered; the least recently failed are forgotten first


class LoginThrottle:
    def __init__(self, *, max_failures_per_account: int = MAX_FAILURES_PER_ACCOUNT,
                 max_failures_per_address: int = MAX_FAILURES_PER_ADDRESS, window_seconds: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = {"account": max_failures_per_account, "address": max_failures_per_address}
        self._window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, username: str, address: str | None) -> int | None:
        """Seconds to wait before this sign-in may be tried, or None when it may be tried now."""
        now = self._clock()
        waits = []
        with self._lock:
            for slot in self._slots(username, address):
                failures = self._recent(slot, now)
                if failures is not None and len(failures) >= self._limits[slot[0]]:
                    waits.append(failures[-self._limits[slot[0]]] + self._window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, username: str, address: str | None) -> None:
        now = self._clock()
        with self._lock:
            for slot in self._slots(username, address):
                failures = self._recent(slot, now) or deque()
                failures.append(now)
                self._failures[slot] = failures
                self._failures.move_to_end(slot)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        """A right password outside a lockout clears the account's failures (not the address's)."""
        with self._lock:
            self._failures.pop(("account", _account(username)), None)

    def _slots(self, username: str, address: str | None) -> list[tuple[str, str]]:
        slots = [("account", _account(username))]
        if address:
            slots.append(("address", address))
        return slots

    def _recent(self, slot: tuple[str, str], now: float) -> deque[float] | None:
        failures = self._failures.get(slot)
        if failures is None:
            return None
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if not failures:
            del self._failures[slot]
            return None
        return failures


def _account(username: str) -> str:
    return username.strip().casefold()
