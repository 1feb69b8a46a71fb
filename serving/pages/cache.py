"""Rendered pages kept until the data behind them changes.

A class overview renders fifty students' cards; between two publishes of the online store it is
the same page for the same reader. The cache keys a page by everything it shows (reader, role,
scope, language, the key) and keeps it only for the store version and directory it was built
from. Authorization runs before every lookup, and every hit is audited like a fresh read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

DEFAULT_MAX_PAGES = 512


@dataclass(frozen=True)
class CachedPage:
    body: bytes
    audited_keys: tuple[str, ...]  # the keys a read of this page is audited with
    version: Hashable
    source: object  # the directory the page was built from (compared by identity)


class RenderedPages:
    def __init__(self, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        self._max_pages = max_pages
        self._pages: OrderedDict[Hashable, CachedPage] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: Hashable, source: object) -> CachedPage | None:
        if self._max_pages <= 0:
            return None
        with self._lock:
            page = self._pages.get(key)
            if page is None or page.version != version or page.source is not source:
                return None
            self._pages.move_to_end(key)
            return page

    def put(self, key: Hashable, page: CachedPage) -> None:
        if self._max_pages <= 0:
            return
        with self._lock:
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > self._max_pages:
                self._pages.popitem(last=False)
