"""The audit trail: who read whose portrait, in which role, when.

One JSON line per student read, appended to `<PORTRAIT_HOME>/audit/portrait-reads.jsonl` and sent
to the `portrait.audit` logger. A line holds the username, the role, what was read, the student's
(or teacher's) pseudonymous key and the time; never a name, a raw id or a value of the portrait.
A denied request is logged without its key: a key the caller may not see is caller input, and
could be a raw id typed by mistake.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from serving.users import User

logger = logging.getLogger("portrait.audit")
AUDIT_FILE = "portrait-reads.jsonl"
TAIL_BYTES = 1 << 20  # `recent` reads at most the last MiB of the file


def audit_path(home: Path) -> Path:
    return Path(home) / "audit" / AUDIT_FILE


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def read(self, user: User, what: str, keys: Sequence[str]) -> None:
        """Record that `user` read `what` (e.g. "student_portrait") of each of `keys`."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        lines = [
            {"at": at, "user": user.username, "role": user.role.value, "read": what, "key": key} for key in keys
        ]
        for line in lines:
            logger.info("%s read user=%s role=%s key=%s at=%s", what, user.username, user.role.value, line["key"], at)
        self._append(lines)

    def denied(self, user: User, what: str) -> None:
        at = datetime.now(UTC).isoformat(timespec="seconds")
        logger.warning("%s denied user=%s role=%s at=%s", what, user.username, user.role.value, at)
        self._append([{"at": at, "user": user.username, "role": user.role.value, "denied": what}])

    def recent(self, limit: int = 200) -> list[dict]:
        """The last `limit` lines, newest first."""
        if self.path is None or not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - TAIL_BYTES, 0))
            tail = handle.read().decode("utf-8", errors="replace").splitlines()
        if size > TAIL_BYTES:
            tail = tail[1:]  # the first line may be cut
        lines = []
        for text in reversed(tail[-limit:]):
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        return lines

    def _append(self, lines: list[dict]) -> None:
        if self.path is None or not lines:
            return
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        with self._lock:
            # One write per request: lines of concurrent requests never interleave.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, text.encode("utf-8"))
            finally:
                os.close(fd)
