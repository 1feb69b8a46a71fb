"""Where a student is enrolled each school year: the scope every role check reads."""

from __future__ import annotations

import pandas as pd

# A school year's enrollment becomes true on September 1st of that year.
SCHOOL_YEAR_START = "-09-01"


def enrollment_indicators(memberships: pd.DataFrame, classes: pd.DataFrame) -> pd.DataFrame:
    frame = memberships.merge(classes[["class_id", "school_id", "grade"]], on="class_id", how="inner")
    frame = frame.rename(columns={"student_id": "student_key"})
    frame["event_timestamp"] = pd.to_datetime(frame["school_year"].astype(str) + SCHOOL_YEAR_START, utc=True)
    frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    return frame[["student_key", "event_timestamp", "school_year", "class_id", "school_id", "grade"]]
