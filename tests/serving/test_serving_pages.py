import re

from serving_testdata import PASSWORD


def _login(client, username="teacher", password=PASSWORD):
    return client.post("/login", data={"username": username, "password": password}, follow_redirects=False)


def test_pages_redirect_to_login_when_signed_out(client):
    for path in ("/", "/students/stu-own"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login"


def test_login_form_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert '<form class="login" method="post" action="/login">' in response.text
    assert "<script" not in response.text


def test_login_sets_an_httponly_cookie_and_redirects_home(client):
    response = _login(client)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("portrait_token=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    home = client.get("/")
    assert home.status_code == 200
    assert "您的班级" in home.text and "class-1" in home.text


def test_failed_login_rerenders_with_error(client):
    response = _login(client, password="wrong")
    assert response.status_code == 401
    assert "用户名或密码不正确" in response.text
    assert "portrait_token" not in response.headers.get("set-cookie", "")


def test_student_page_draws_the_history_chart(client):
    _login(client)
    response = client.get("/students/stu-own")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    [svg] = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    [points] = re.findall(r'<polyline points="([^"]*)"', svg)
    assert len(points.split()) == 3  # one point per history year
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for text in ("肺活量", "优秀 (excellent)", "正常 (normal)", "12%", "model fitness_risk v3, ε=2, δ=1e-05"):
        assert text in html
    assert "school-A" not in html


def test_student_page_out_of_scope_and_unknown_look_the_same(client):
    _login(client)
    other = client.get("/students/stu-other-class")
    unknown = client.get("/students/no-such-student")
    assert other.status_code == unknown.status_code == 403
    assert other.text == unknown.text
    assert "You may not read this student&#39;s portrait." in other.text


def test_logout_clears_the_cookie(client):
    _login(client)
    response = client.get("/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_student_key_is_escaped(client):
    _login(client)
    response = client.get("/students/%3Cscript%3Ealert(1)%3C%3Bscript%3E")
    assert response.status_code == 403
    assert "<script>" not in response.text and "alert(1)" not in response.text
