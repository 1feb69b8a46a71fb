"""Who belongs where: the listings the online store cannot answer.

The online store reads by key; it cannot list the students of a class or the courses of a
training center. The directory holds those memberships, loaded from files the pipeline already
writes, and reloads them when the files change:

- students of a class and of a school: the indicators' `student_enrollment.parquet`, each
  student's current row by the same rule the online store is published with (the latest row
  within the view's TTL of the view's newest row, see `features.feature_repo.publish`);
- the training catalog (`training_courses`) and who enrolled in which course
  (`teacher_trainings`, teacher ids already pseudonyms) from the lake.

The directory only proposes whom to read. Whether a user may see a student is decided on the
student's enrollment row read from the online store (`serving.access`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.indicators.enrollment import FAMILIES as ENROLLMENT_FAMILIES

ENROLLMENT_TTL = ENROLLMENT_FAMILIES[0].ttl
# Files are checked for changes at most this often (a stat per file).
RELOAD_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class ClassInfo:
    class_id: str
    school_id: str
    grade: int | None
    school_year: int | None
    students: tuple[str, ...]


@dataclass(frozen=True)
class Course:
    course_id: str
    center_id: str
    title: str
    subject: str | None
    level: str | None
    hours: float | None
    dimensions: tuple[str, ...]


@dataclass(frozen=True)
class Directory:
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    schools: dict[str, tuple[str, ...]] = field(default_factory=dict)  # school → class ids
    courses: dict[str, Course] = field(default_factory=dict)
    course_teachers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # course → enrolled teacher keys
    teacher_centers: dict[str, frozenset[str]] = field(default_factory=dict)  # teacher → centers trained at

    @classmethod
    def from_frames(cls, *, enrollment: pd.DataFrame | None = None, courses: pd.DataFrame | None = None,
                    trainings: pd.DataFrame | None = None) -> Directory:
        """enrollment: student_key, class_id, school_id, grade, school_year (current rows only);
        courses: the contract's training_courses; trainings: teacher_key (or teacher_id), course_id."""
        classes: dict[str, ClassInfo] = {}
        schools: dict[str, list[str]] = {}
        if enrollment is not None and len(enrollment):
            ordered = enrollment.sort_values(["class_id", "student_key"], kind="stable")
            for class_id, group in ordered.groupby("class_id", sort=True):
                first = group.iloc[0]
                classes[str(class_id)] = ClassInfo(
                    class_id=str(class_id), school_id=str(first["school_id"]), grade=_int(first.get("grade")),
                    school_year=_int(first.get("school_year")), students=tuple(group["student_key"].astype(str)))
                schools.setdefault(str(first["school_id"]), []).append(str(class_id))
        catalog: dict[str, Course] = {}
        if courses is not None:
            for row in courses.to_dict("records"):
                catalog[str(row["course_id"])] = Course(
                    course_id=str(row["course_id"]), center_id=str(row["center_id"]),
                    title=str(row.get("title") or row["course_id"]), subject=row.get("subject"),
                    level=row.get("level"), hours=_float(row.get("hours")),
                    dimensions=tuple(d for d in str(row.get("dimensions") or "").split(";") if d))
        enrolled: dict[str, list[str]] = {}
        if trainings is not None and len(trainings):
            teacher = "teacher_key" if "teacher_key" in trainings else "teacher_id"
            for course_id, group in trainings.groupby("course_id", sort=True):
                enrolled[str(course_id)] = sorted(set(group[teacher].astype(str)))
        centers: dict[str, set[str]] = {}
        for course_id, keys in enrolled.items():
            if course_id in catalog:
                for key in keys:
                    centers.setdefault(key, set()).add(catalog[course_id].center_id)
        return cls(classes=classes, schools={school: tuple(ids) for school, ids in schools.items()},
                   courses=catalog, course_teachers={course: tuple(keys) for course, keys in enrolled.items()},
                   teacher_centers={key: frozenset(ids) for key, ids in centers.items()})

    # --- students ---
    def class_info(self, class_id: str) -> ClassInfo | None:
        return self.classes.get(class_id)

    def classes_of_school(self, school_id: str) -> list[ClassInfo]:
        return [self.classes[class_id] for class_id in self.schools.get(school_id, ())]

    def students_of_school(self, school_id: str) -> list[str]:
        return [key for info in self.classes_of_school(school_id) for key in info.students]

    # --- training ---
    def courses_of_center(self, center_id: str) -> list[Course]:
        return sorted((c for c in self.courses.values() if c.center_id == center_id), key=lambda c: c.course_id)

    def centers_of_teacher(self, teacher_key: str) -> frozenset[str]:
        return self.teacher_centers.get(teacher_key, frozenset())

    def teachers_of_center(self, center_id: str) -> list[str]:
        keys = {key for course in self.courses_of_center(center_id)
                for key in self.course_teachers.get(course.course_id, ())}
        return sorted(keys)


def load_directory(indicators_dir: Path, lake_dir: Path) -> Directory:
    """The directory from the pipeline's files; what is missing (no ingest yet) stays empty."""
    enrollment_path = Path(indicators_dir) / "student_enrollment.parquet"
    courses_path = Path(lake_dir) / "training_courses.parquet"
    trainings_path = Path(lake_dir) / "teacher_trainings.parquet"
    return Directory.from_frames(
        enrollment=current_enrollment(enrollment_path) if enrollment_path.exists() else None,
        courses=pd.read_parquet(courses_path) if courses_path.exists() else None,
        trainings=(pd.read_parquet(trainings_path, columns=["teacher_id", "course_id"])
                   if trainings_path.exists() else None),
    )


def current_enrollment(path: Path) -> pd.DataFrame:
    """Each student's latest enrollment within the view's TTL of its newest row (the online rule)."""
    import duckdb

    ttl_seconds = int(ENROLLMENT_TTL.total_seconds())
    with duckdb.connect() as db:
        return db.execute(f"""
            WITH rows AS (SELECT student_key, CAST(event_timestamp AS TIMESTAMPTZ) AS event_timestamp,
                                 class_id, school_id, grade, school_year
                          FROM read_parquet(?)),
                 newest AS (SELECT max(event_timestamp) + INTERVAL 1 SECOND AS end_ts FROM rows)
            SELECT student_key, class_id, school_id, grade, school_year
            FROM rows, newest
            WHERE event_timestamp >= end_ts - to_seconds({ttl_seconds}) AND event_timestamp < end_ts
            QUALIFY row_number() OVER (PARTITION BY student_key ORDER BY event_timestamp DESC) = 1
        """, [str(path)]).df()


class ReloadingDirectory:
    """The current directory, rebuilt when one of its files changes (checked every few seconds)."""

    def __init__(self, build: Callable[[], Directory], files: Iterable[Path]) -> None:
        self._build = build
        self._files = [Path(path) for path in files]
        self._directory: Directory | None = None
        self._signature: tuple | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> Directory:
        with self._lock:
            now = time.monotonic()
            if self._directory is None or now - self._checked_at > RELOAD_CHECK_SECONDS:
                self._checked_at = now
                signature = tuple(_stat(path) for path in self._files)
                if self._directory is None or signature != self._signature:
                    self._directory = self._build()
                    self._signature = signature
            return self._directory


def directory_source(indicators_dir: Path, lake_dir: Path) -> ReloadingDirectory:
    files = [Path(indicators_dir) / "student_enrollment.parquet", Path(lake_dir) / "training_courses.parquet",
             Path(lake_dir) / "teacher_trainings.parquet"]
    return ReloadingDirectory(lambda: load_directory(indicators_dir, lake_dir), files)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()  # follows the lake's symbolic link: a new lake version is a change
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_ino


def _int(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _float(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
