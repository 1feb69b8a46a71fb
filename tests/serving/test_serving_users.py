import pytest

from serving.users import Role, UserStore


@pytest.fixture
def store(tmp_path) -> UserStore:
    return UserStore(tmp_path / "users.db")


def test_add_authenticate_and_get(store):
    store.add("teacher", "pw", "class_teacher", ["class-1"])
    user = store.authenticate("teacher", "pw")
    assert user is not None
    assert (user.username, user.role, user.scope, user.disabled) == (
        "teacher", Role.CLASS_TEACHER, ("class-1",), False)
    assert store.get("teacher") == user
    assert store.authenticate("teacher", "wrong") is None
    assert store.authenticate("nobody", "pw") is None


def test_add_replaces_an_existing_user(store):
    store.add("teacher", "old", "class_teacher", ["class-1"])
    store.add("teacher", "new", "health_staff", ["school-A"])
    assert store.authenticate("teacher", "old") is None
    assert store.authenticate("teacher", "new").role is Role.HEALTH_STAFF
    assert [user.username for user in store.list()] == ["teacher"]


def test_disabled_user_cannot_authenticate(store):
    store.add("teacher", "pw", "class_teacher", [])
    assert store.disable("teacher")
    assert store.authenticate("teacher", "pw") is None
    assert store.get("teacher").disabled
    assert not store.disable("nobody")


def test_the_service_sees_a_disable_made_elsewhere_at_once(store, tmp_path):
    """The service keeps its connection open; `portrait users disable` runs in another process."""
    store.add("teacher", "pw", "class_teacher", ["class-1"])
    assert not store.get("teacher").disabled
    assert UserStore(tmp_path / "users.db").disable("teacher")
    assert store.get("teacher").disabled


def test_unknown_role_is_refused(store):
    with pytest.raises(ValueError):
        store.add("someone", "pw", "principal", [])


def test_password_is_not_stored_in_clear(store, tmp_path):
    store.add("teacher", "very-distinctive-password", "class_teacher", [])
    assert b"very-distinctive-password" not in (tmp_path / "users.db").read_bytes()
