"""Who may read which portrait, and the audit trail of every read.

Shared by the JSON API and the web pages so both enforce the same rule and both leave an
audit line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from serving.reader import PortraitReader, PortraitRecord
from serving.users import Role, User

# One message for "no such student" and "not yours": different answers would let anyone
# with an account probe which pseudonyms exist.
DENIED_MESSAGE = "You may not read this student's portrait."

audit_log = logging.getLogger("portrait.audit")


def may_read(user: User, record: PortraitRecord) -> bool:
    if user.role is Role.CLASS_TEACHER:
        return record.get("class_id") is not None and record["class_id"] in user.scope
    if user.role is Role.HEALTH_STAFF:
        # The portrait is fitness-only for now, which health staff may see school-wide.
        return record.get("school_id") is not None and record["school_id"] in user.scope
    return False


def read_portrait(reader: PortraitReader, user: User, student_key: str) -> PortraitRecord | None:
    """The record when `user` may read it (and the read is audited); None otherwise."""
    record = reader.portrait(student_key)
    if record is None or not may_read(user, record):
        # No key here: a denied key is caller input and may be a raw id typed by mistake.
        audit_log.warning("portrait denied user=%s role=%s", user.username, user.role.value)
        return None
    # The key is a pseudonym, safe to log; names and raw ids never reach this module.
    audit_log.info(
        "portrait read user=%s role=%s student_key=%s at=%s",
        user.username,
        user.role.value,
        student_key,
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return record
