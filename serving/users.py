"""Who may sign in, with which role, over which classes or schools: a small SQLite table.

Every request re-reads its user (so disabling an account takes effect at once), so the store keeps
one connection open: opening SQLite per call cost more than the rest of a request's sign-in check.
The connection is shared by FastAPI's worker threads behind a lock, and a read sees what another
process (`portrait users disable`) committed, since no transaction stays open between calls.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from serving.security import hash_password, verify_password


class Role(StrEnum):
    CLASS_TEACHER = "class_teacher"  # scope: class ids
    HEALTH_STAFF = "health_staff"  # scope: school ids
    TRAINING_CENTER = "training_center"
    DATA_OFFICER = "data_officer"


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    scope: tuple[str, ...]
    disabled: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    scope_json TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
)
"""


class UserStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    def add(self, username: str, password: str, role: Role | str, scope: list[str]) -> User:
        """Create or replace `username` (replacing also re-enables a disabled account)."""
        user = User(username=username, role=Role(role), scope=tuple(scope), disabled=False)
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, 0)",
                (username, hash_password(password), user.role.value, json.dumps(list(scope))),
            )
        return user

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is right and the account enabled, otherwise None."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            # Hash anyway: answering faster for unknown names would tell who has an account.
            verify_password(password, _decoy_hash())
            return None
        if not verify_password(password, row["password_hash"]):
            return None
        user = _user_from_row(row)
        return None if user.disabled else user

    def get(self, username: str) -> User | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else _user_from_row(row)

    def list(self) -> list[User]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM users ORDER BY username").fetchall()
        return [_user_from_row(row) for row in rows]

    def disable(self, username: str) -> bool:
        """Block sign-in and every token already issued; False when there is no such user."""
        with self._connect() as conn:
            cursor = conn.execute("UPDATE users SET disabled = 1 WHERE username = ?", (username,))
        return cursor.rowcount > 0

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # `with conn` commits or rolls back, so no transaction outlives the call.
        with self._lock, self._conn as conn:
            yield conn


def _user_from_row(row: sqlite3.Row) -> User:
    return User(
        username=row["username"],
        role=Role(row["role"]),
        scope=tuple(json.loads(row["scope_json"])),
        disabled=bool(row["disabled"]),
    )


@cache
def _decoy_hash() -> str:
    return hash_password("decoy password for unknown users")
