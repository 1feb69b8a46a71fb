"""Who may open what: one table of roles per resource, and one scope rule per kind of key.

The JSON API and the web pages both call these, so both enforce the same rule.

Scopes, by role:
- class teacher: the students whose current enrollment row names one of their classes;
- health staff: the students (fitness only) and fitness statistics of their schools;
- training center: its own courses and their invite lists, and two kinds of teachers: those who
  enrolled in one of its courses, and those the teacher-training model puts on the invite list of
  one of its courses. A center told to invite a teacher needs what the invitation rests on (their
  digital literacy, their training so far and their recommendations) to decide; it still sees
  nothing about their school, classes or students, which the teacher views it reads do not hold.
  Another center's invitee is as foreign as another center's trainee. The invite lists come from
  the online store and are indexed once per publish (`model_outputs.courses_inviting`);
- data officer: the engine's oversight (ledger, model cards, ingest, access log), no portraits.

The value-added view (the growth model's medians per subject): who sees which. Each model output's
readers are listed with it (`model_outputs.ModelOutput.shown_to`) and on the data officer's page.
- A class's medians (`class_growth_score`) go to its class teacher, on the class overview and in
  the class portraits JSON, and to nobody else: it is a summary of students the class teacher
  already sees one by one, so it tells them nothing about anyone outside their scope, while to
  anyone else it is data about another class's students.
- A school's medians (`school_growth_score`) are shown to no role. A class teacher would be reading
  the other classes of their school (with two or three classes, a school median beside their own
  class's nearly gives the others' away), and anything beyond one class reaches a class teacher
  from DP releases only: these medians are exact statistics of students' growth percentiles, not a
  DP release (only the model that computes the percentiles is DP). Health staff see fitness only,
  training centers nothing about students or schools, data officers no portraits.
- A teacher's medians (`teacher_growth_score`: the classes they teach a subject in) are shown to no
  role either. They are teacher-level, but made of students' results across classes, often several
  classes: to a class teacher they would reveal other classes. To a training center, the role that
  reads teachers, they are outside what it may read of a teacher (digital literacy and training,
  nothing of their school, classes or students), and an exact value-added score of one named
  teacher is an evaluation of their teaching that a training provider outside the school has no
  need for to choose courses: the teacher-training model may learn from growth, and its
  recommendations carry that, without the center seeing the score itself. Both views stay in the
  online store, reported to the data officer as available (`/api/v1/models`), ready for a role that
  needs them (a school leader scoped to their school would be the natural reader of both).

Answers, and why they cannot be used to enumerate keys:
- a role that may never open a resource gets 403 `role_forbidden` for it, whatever the key;
- a key outside the caller's scope gets 403 with the resource's `out_of_scope` message, and so
  does a key that does not exist, unless the caller's scope itself names it: nobody learns from
  the answer whether someone else's student, teacher or course exists;
- a key the caller's scope names but the engine has no data for (a class of theirs with no
  students yet, a model not registered yet) is 404, which tells them nothing about others.
The message of each answer depends on the role and the resource only, never on the key.
"""

from __future__ import annotations

from enum import StrEnum

from serving import model_outputs
from serving.directory import ClassInfo, Course, Directory
from serving.online import FeatureReader
from serving.users import Role, User


class Resource(StrEnum):
    STUDENT_PORTRAIT = "student_portrait"
    STUDENT_FITNESS = "student_fitness"
    CLASS_PORTRAITS = "class_portraits"
    SCHOOL_FITNESS = "school_fitness"
    TEACHER_PORTRAIT = "teacher_portrait"
    COURSE_INVITES = "course_invites"
    CENTER_OVERVIEW = "center_overview"
    PRIVACY_LEDGER = "privacy_ledger"
    MODEL_CARDS = "model_cards"
    INGEST_REPORT = "ingest_report"
    AUDIT_LOG = "audit_log"


ALLOWED_ROLES: dict[Resource, frozenset[Role]] = {
    Resource.STUDENT_PORTRAIT: frozenset({Role.CLASS_TEACHER}),
    # Health staff see fitness only; a class teacher sees it inside the portrait anyway.
    Resource.STUDENT_FITNESS: frozenset({Role.CLASS_TEACHER, Role.HEALTH_STAFF}),
    Resource.CLASS_PORTRAITS: frozenset({Role.CLASS_TEACHER}),
    Resource.SCHOOL_FITNESS: frozenset({Role.HEALTH_STAFF}),
    Resource.TEACHER_PORTRAIT: frozenset({Role.TRAINING_CENTER}),
    Resource.COURSE_INVITES: frozenset({Role.TRAINING_CENTER}),
    Resource.CENTER_OVERVIEW: frozenset({Role.TRAINING_CENTER}),
    Resource.PRIVACY_LEDGER: frozenset({Role.DATA_OFFICER}),
    Resource.MODEL_CARDS: frozenset({Role.DATA_OFFICER}),
    Resource.INGEST_REPORT: frozenset({Role.DATA_OFFICER}),
    Resource.AUDIT_LOG: frozenset({Role.DATA_OFFICER}),
}

# What each resource is called in a refusal, and what to do about an out-of-scope key.
_RESOURCE_NAMES = {
    Resource.STUDENT_PORTRAIT: "student portraits",
    Resource.STUDENT_FITNESS: "students' fitness records",
    Resource.CLASS_PORTRAITS: "class portraits",
    Resource.SCHOOL_FITNESS: "school fitness warnings and statistics",
    Resource.TEACHER_PORTRAIT: "teacher portraits and recommendations",
    Resource.COURSE_INVITES: "course invite lists",
    Resource.CENTER_OVERVIEW: "training center overviews",
    Resource.PRIVACY_LEDGER: "the privacy ledger",
    Resource.MODEL_CARDS: "model cards and audits",
    Resource.INGEST_REPORT: "ingest reports",
    Resource.AUDIT_LOG: "the access audit log",
}
OUT_OF_SCOPE = {
    "student": "No student with this key is in your classes or schools. Check the key; if the student "
               "joined recently, ask the data officer to update your scope.",
    "class": "This class is not one of yours. Check the class id; if you took over a class, ask the data "
             "officer to add it to your account.",
    "school": "This school is not one of yours. Check the school id; ask the data officer if your schools changed.",
    "center": "This training center is not yours. Check the center id; ask the data officer to fix your account.",
    "course": "No course with this id belongs to your training center. Check the course id in your center's "
              "overview.",
    "teacher": "No teacher with this key has enrolled in or been invited to one of your center's courses. Check "
               "the key in a course's invite list or list of enrolled teachers.",
}
NOT_FOUND = {
    "class": "Your class has no students in the feature store yet. If the class is new, the next data "
             "publish (portrait features) adds it; otherwise check the class id.",
    "school": "Your school has no students in the feature store yet. The next data publish (portrait "
              "features) adds them; otherwise check the school id.",
    "center": "Your center has no courses in the catalog yet. Ask the data officer to ingest the training "
              "catalog (training_courses).",
    "model": "No registered model has this name. The list of models is at /api/v1/models.",
}


class AccessError(Exception):
    status_code = 403

    def __init__(self, code: str, message: str, *, resource: Resource | None = None, role: Role | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource = resource  # for a role refusal: what was refused, and to whom (pages translate it)
        self.role = role


class Forbidden(AccessError):
    status_code = 403


class NotFound(AccessError):
    status_code = 404


def role_message(role: Role, resource: Resource) -> str:
    roles = ", ".join(sorted(r.value for r in ALLOWED_ROLES[resource]))
    return (f"Your role ({role.value}) cannot open {_RESOURCE_NAMES[resource]}; they are for: {roles}. "
            f"If you need them, ask the data officer for an account with that role.")


def require_role(user: User, resource: Resource) -> None:
    if user.role not in ALLOWED_ROLES[resource]:
        raise Forbidden("role_forbidden", role_message(user.role, resource), resource=resource, role=user.role)


def out_of_scope(kind: str) -> Forbidden:
    return Forbidden(f"out_of_scope.{kind}", OUT_OF_SCOPE[kind])


def not_found(kind: str) -> NotFound:
    return NotFound(f"not_found.{kind}", NOT_FOUND[kind])


def may_read_student(user: User, resource: Resource, enrollment: dict | None) -> bool:
    """Decided on the student's enrollment row from the online store (None: unknown key)."""
    if enrollment is None or user.role not in ALLOWED_ROLES[resource]:
        return False
    if user.role is Role.CLASS_TEACHER:
        return enrollment.get("class_id") in user.scope
    if user.role is Role.HEALTH_STAFF:
        return enrollment.get("school_id") in user.scope
    return False


def class_in_scope(user: User, class_id: str, directory: Directory) -> ClassInfo:
    require_role(user, Resource.CLASS_PORTRAITS)
    if class_id not in user.scope:
        raise out_of_scope("class")
    info = directory.class_info(class_id)
    if info is None:
        raise not_found("class")
    return info


def school_in_scope(user: User, school_id: str, directory: Directory) -> list[ClassInfo]:
    require_role(user, Resource.SCHOOL_FITNESS)
    if school_id not in user.scope:
        raise out_of_scope("school")
    classes = directory.classes_of_school(school_id)
    if not classes:
        raise not_found("school")
    return classes


def center_in_scope(user: User, center_id: str, directory: Directory) -> list[Course]:
    require_role(user, Resource.CENTER_OVERVIEW)
    if center_id not in user.scope:
        raise out_of_scope("center")
    courses = directory.courses_of_center(center_id)
    if not courses:
        raise not_found("center")
    return courses


def course_in_scope(user: User, course_id: str, directory: Directory) -> Course:
    require_role(user, Resource.COURSE_INVITES)
    course = directory.courses.get(course_id)
    if course is None or course.center_id not in user.scope:
        raise out_of_scope("course")
    return course


def teacher_in_scope(user: User, teacher_key: str, directory: Directory, reader: FeatureReader) -> None:
    """A training center sees the teachers who enrolled in one of its courses, and the teachers the
    teacher-training model puts on the invite list of one of its courses: a center told to invite a
    teacher may open what it needs to decide (digital literacy, training, recommendations; never
    their school, classes or students, which `serving.training_centers` does not read at all)."""
    require_role(user, Resource.TEACHER_PORTRAIT)
    if directory.centers_of_teacher(teacher_key) & set(user.scope):
        return
    if not invited_here(user, teacher_key, directory, reader):
        raise out_of_scope("teacher")


def invited_here(user: User, teacher_key: str, directory: Directory, reader: FeatureReader) -> list[str]:
    """The caller's centers' courses whose invite list names the teacher, sorted."""
    courses = model_outputs.courses_inviting(reader, directory.courses, teacher_key)
    return sorted(course for course in courses if directory.courses[course].center_id in user.scope)
