"""Student portraits for API clients."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from serving.access import DENIED_MESSAGE, read_portrait
from serving.api.deps import CurrentUser, ReaderDep
from serving.schemas import StudentPortrait

router = APIRouter(prefix="/students", tags=["students"])


@router.get(
    "/{student_key}/portrait",
    response_model=StudentPortrait,
    responses={403: {"description": DENIED_MESSAGE + " (Also the answer for unknown keys.)"}},
)
def get_student_portrait(student_key: str, user: CurrentUser, reader: ReaderDep) -> StudentPortrait:
    record = read_portrait(reader, user, student_key)
    if record is None:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=DENIED_MESSAGE)
    return StudentPortrait.from_record(record)
