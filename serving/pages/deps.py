"""The signed-in user of a page: like the API's, but a page sends the signed-out to the sign-in form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from serving.access import Resource, require_role
from serving.api.deps import OptionalUser
from serving.users import User


class SignInRequired(Exception):
    """Handled by the app: a redirect to /login."""


async def get_page_user(request: Request, user: OptionalUser) -> User:
    if user is None:
        raise SignInRequired()
    request.state.user = user  # the error pages show who is signed in
    return user


PageUser = Annotated[User, Depends(get_page_user)]


def page_allowed(resource: Resource) -> Callable[[User], User]:
    async def guard(user: PageUser) -> User:
        require_role(user, resource)
        return user

    guard.__name__ = f"page_allowed_{resource.value}"
    return guard


ClassTeacherPage = Annotated[User, Depends(page_allowed(Resource.STUDENT_PORTRAIT))]
FitnessPage = Annotated[User, Depends(page_allowed(Resource.STUDENT_FITNESS))]
ClassPage = Annotated[User, Depends(page_allowed(Resource.CLASS_PORTRAITS))]
SchoolFitnessPage = Annotated[User, Depends(page_allowed(Resource.SCHOOL_FITNESS))]
TeacherPage = Annotated[User, Depends(page_allowed(Resource.TEACHER_PORTRAIT))]
CoursePage = Annotated[User, Depends(page_allowed(Resource.COURSE_INVITES))]
CenterPage = Annotated[User, Depends(page_allowed(Resource.CENTER_OVERVIEW))]
OfficerPage = Annotated[User, Depends(page_allowed(Resource.PRIVACY_LEDGER))]
