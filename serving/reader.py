"""Where portraits come from: the online feature store in production, a dict in tests.

A portrait record is internal data (it carries `school_id`, used only to authorize); the
public shape is `serving.schemas.StudentPortrait`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

PortraitRecord = dict[str, Any]


class PortraitReader(Protocol):
    def portrait(self, student_key: str) -> PortraitRecord | None:
        """The student's record, or None when the key is unknown."""
        ...

    def ready(self) -> bool:
        """True when the reader can answer (store reachable, features materialized)."""
        ...


class InMemoryPortraitReader:
    """Records held in a dict keyed by their own `student_key`."""

    def __init__(self, records: Iterable[PortraitRecord] = ()) -> None:
        self._records = {record["student_key"]: record for record in records}

    def portrait(self, student_key: str) -> PortraitRecord | None:
        return self._records.get(student_key)

    def ready(self) -> bool:
        return True


class LazyPortraitReader:
    """Builds the real reader on first use, so the app starts (and /healthz answers) before
    the feature store is reachable, and importing the app never imports Feast."""

    def __init__(self, build: Callable[[], PortraitReader]) -> None:
        self._build = build
        self._reader: PortraitReader | None = None
        self._lock = threading.Lock()

    def portrait(self, student_key: str) -> PortraitRecord | None:
        return self._get().portrait(student_key)

    def ready(self) -> bool:
        return self._get().ready()

    def _get(self) -> PortraitReader:
        # Requests run on a thread pool: without the lock two could each build a store client.
        with self._lock:
            if self._reader is None:
                self._reader = self._build()
            return self._reader
