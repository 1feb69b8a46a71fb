"""Failed sign-ins, rate-limited per account and per client address.

After `MAX_FAILURES_PER_ACCOUNT` wrong passwords for one username within `WINDOW_SECONDS`, that
username is refused (HTTP 429, with how long to wait) until the oldest of those failures leaves
the window, whatever the password, so guessing cannot go on and a right guess during the lockout
teaches nothing. One address gets more room (a school's staff may share one NAT address) but is
limited too, so it cannot walk through many usernames. Unknown usernames count like known ones:
the answer never tells which accounts exist.

The failures live in a small SQLite file shared by the service's worker processes (`portrait
serve` runs one per core): kept in each process's memory, the limit would be per worker and
a guesser would get one lockout's worth of tries from each. Times are wall-clock seconds, the one
clock the processes share. Usernames and addresses are stored as keyed hashes, never as given:
the file is about attacks, not a record of who signed in from where.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 30
WINDOW_SECONDS = 15 * 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sign_in_failures (slot TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sign_in_failures_by_slot ON sign_in_failures (slot, at);
"""


class LoginThrottle:
    """`path=None` keeps the failures in this process only (tests, a single worker)."""

    def __init__(self, path: Path | None = None, *, key: bytes | None = None,
                 max_failures_per_account: int = MAX_FAILURES_PER_ACCOUNT,
                 max_failures_per_address: int = MAX_FAILURES_PER_ADDRESS, window_seconds: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._limits = {"account": max_failures_per_account, "address": max_failures_per_address}
        self._window = window_seconds
        self._clock = clock
        self._key = key if key is not None else secrets.token_bytes(32)
        # A busy timeout: another worker may be writing its failure at the same moment.
        self._conn = sqlite3.connect(":memory:" if path is None else Path(path), timeout=10,
                                     check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._conn as conn:
            conn.executescript(_SCHEMA)

    def retry_after(self, username: str, address: str | None) -> int | None:
        """Seconds to wait before this sign-in may be tried, or None when it may be tried now."""
        now = self._clock()
        waits = []
        with self._lock, self._conn as conn:
            for kind, slot in self._slots(username, address):
                limit = self._limits[kind]
                # The limit-th most recent failure in the window: the lockout ends when it leaves.
                row = conn.execute("SELECT at FROM sign_in_failures WHERE slot = ? AND at > ? "
                                   "ORDER BY at DESC LIMIT 1 OFFSET ?", (slot, now - self._window, limit - 1)).fetchone()
                if row is not None:
                    waits.append(row[0] + self._window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, username: str, address: str | None) -> None:
        now = self._clock()
        with self._lock, self._conn as conn:
            conn.executemany("INSERT INTO sign_in_failures VALUES (?, ?)",
                             [(slot, now) for _, slot in self._slots(username, address)])
            # Failures older than the window count for nothing: the table holds one window at most.
            conn.execute("DELETE FROM sign_in_failures WHERE at <= ?", (now - self._window,))

    def succeeded(self, username: str) -> None:
        """A right password outside a lockout clears the account's failures (not the address's)."""
        [(_, slot)] = self._slots(username, None)
        with self._lock, self._conn as conn:
            conn.execute("DELETE FROM sign_in_failures WHERE slot = ?", (slot,))

    def _slots(self, username: str, address: str | None) -> list[tuple[str, str]]:
        slots = [("account", username.strip().casefold())]
        if address:
            slots.append(("address", address))
        return [(kind, hashlib.blake2b(f"{kind}:{value}".encode(), key=self._key, digest_size=16).hexdigest())
                for kind, value in slots]
