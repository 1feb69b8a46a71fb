"""The web pages as HTML: sign-in, landing per role, language, what each page shows, self-contained."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from serving_testdata import directory, feature_reader, sign_in_page
from test_serving_api import write_dp_statistics

from serving.app import STATIC_DIR, create_app


def _page(client, user, path):
    assert sign_in_page(client, user).status_code == 303
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.text


def _charts(html: str) -> list[str]:
    """Each chart's option, or for a chart drawn from a shared template (the class's mini radars) its values."""
    return re.findall(r'data-chart="([^"]*)"', html) + re.findall(r'data-template="[^"]*" data-values="([^"]*)"', html)


def test_login_form_renders_in_chinese_without_scripts(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert '<form class="login" method="post" action="/login">' in response.text
    assert "登录" in response.text and "<script" not in response.text


def test_login_sets_an_httponly_cookie(client):
    response = sign_in_page(client, "teacher")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("portrait_token=") and "HttpOnly" in cookie and "SameSite=lax" in cookie


@pytest.mark.parametrize(("user", "landing"), [("nurse", None), ("center", None), ("officer", "/officer")])
def test_each_role_lands_on_its_page(client, user, landing):
    sign_in_page(client, user)
    response = client.get("/", follow_redirects=False)
    if landing is None:  # two scope entries: a list of links to choose from
        assert response.status_code == 200 and 'href="/schools/school-A/fitness"' in response.text or \
            'href="/centers/center-1"' in response.text
    else:
        assert response.status_code == 303 and response.headers["location"] == landing


def test_one_class_goes_straight_to_it(settings, users):
    users.add("solo", "pw-solo-1234", "class_teacher", ["class-1"])
    client = TestClient(create_app(settings, feature_reader(), directory=directory()))
    sign_in_page(client, "solo", "pw-solo-1234")
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/classes/class-1"


def test_failed_login_rerenders_with_an_actionable_error(client):
    response = sign_in_page(client, "teacher", "wrong")
    assert response.status_code == 401
    assert "用户名或密码不正确" in response.text
    assert "portrait_token" not in response.headers.get("set-cookie", "")


def test_logout_clears_the_cookie(client):
    sign_in_page(client, "teacher")
    response = client.get("/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_language_toggle_switches_to_english_and_back(client):
    html = _page(client, "teacher", "/classes/class-1")
    assert "班级概览" in html and 'href="/lang/en?next=/classes/class-1"' in html
    response = client.get("/lang/en", params={"next": "/classes/class-1"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/classes/class-1"
    english = client.get("/classes/class-1").text
    assert "Class overview" in english and "班级概览" not in english
    assert client.get("/lang/zh", params={"next": "https://evil.example/"}, follow_redirects=False
                      ).headers["location"] == "/"  # never a redirect to another site


def test_class_page_draws_a_mini_radar_per_student(client):
    html = _page(client, "teacher", "/classes/class-1")
    assert len(_charts(html)) == 1 + 2  # the warnings pie and one radar per student
    assert 'data-values="80,72,91,65,70"' in html and "data-chart-template=" in html
    assert 'href="/students/stu-own"' in html and 'href="/students/stu-own-2"' in html
    assert "体测总分不及格" in html and "trend-down" in html and "trend-up" in html
    assert "差分隐私模型 fitness_risk v3，ε=2，δ=1e-05" in html
    assert "school-A" not in html


def test_class_page_shows_the_classs_median_growth_once_scored(client, settings, users):
    html = _page(client, "teacher", "/classes/class-1")
    assert 'data-section="class-growth"' in html and 'data-unavailable="growth"' in html
    assert '<span class="badge risk-red" data-risk-level="red">红色</span>' in html  # stu-own-2's fitness risk
    scored = TestClient(create_app(settings, feature_reader(with_future_models=True), directory=directory()))
    html = _page(scored, "teacher", "/classes/class-1")
    assert len(_charts(html)) == 1 + 1 + 2  # the warnings pie, the growth bars, one radar per student
    assert 'data-unavailable="growth"' not in html
    for text in ('<tr data-subject="math"><td class="left">数学</td><td>62</td><td>45</td></tr>',  # 61.5 rounds to 62
                 '<tr data-subject="chinese"><td class="left">语文</td><td>48</td><td>44</td></tr>',
                 "本班学生在该学科成长百分位的中位数（2025-1）", "差分隐私模型 growth v1，ε=3，δ=1e-06"):
        assert text in html, text
    for other in ("37", "71", "43.8", "52", "66.8"):  # other classes, teachers and schools: nowhere
        assert f"<td>{other}</td>" not in html
    scored.get("/lang/en")
    english = scored.get("/classes/class-1").text
    assert "Median growth percentile by subject" in english and '<td class="left">Math</td>' in english


def test_student_page_shows_the_growth_portrait(client, settings):
    write_dp_statistics(settings)
    html = _page(client, "teacher", "/students/stu-own-2")
    assert len(_charts(html)) == 3  # radar against norms, total fitness by year, items by year
    for text in ("五育发展", "常模中位数", "差分隐私发布 five_domain_norms（2026-01-20），ε=2.6", "50米跑",
                 "体测总分不及格", "与家长沟通", "71%", "依据学校记录精确计算", "不及格"):
        assert text in html, text
    # Strengths (at or above P75) and weaknesses (below P25) named, with the rule.
    assert '<span class="badge strength">德</span> <span class="badge strength">体</span>' in html
    assert "优势：得分不低于同年级同性别常模的 P75" in html
    printed = client.get("/students/stu-own-2/print").text
    assert '<span class="badge strength">体</span>' in printed and "data-weaknesses" in printed
    client.get("/lang/en")
    english = client.get("/students/stu-own-2").text
    assert "Strengths" in english and "To strengthen" in english and '<span class="badge strength">Physical</span>' in english
    # Models still to come: said so, with no numbers.
    assert 'data-unavailable="growth"' in html and 'data-unavailable="academic_risk"' in html
    assert "growth 模型尚未评分写入在线特征库" in html
    assert "school-A" not in html


def test_student_page_shows_models_that_have_been_scored(settings, users):
    client = TestClient(create_app(settings, feature_reader(with_future_models=True), directory=directory()))
    html = _page(client, "teacher", "/students/stu-own")
    assert len(_charts(html)) == 4 and "差分隐私模型 growth v1，ε=3，δ=1e-06" in html
    assert 'data-unavailable="growth"' not in html
    # Academic risk shown as fitness risk is: probability, level, what the model weighed, where it comes from.
    academic = html[html.index('data-section="academic-risk"'):]
    academic = academic[:academic.index("</div>")]
    for text in ("30%", '<span class="badge risk-amber" data-risk-level="amber">黄色</span>', "本学期出勤率 <strong>87%</strong>",
                 "不及格学科数 <strong>1</strong>", "↓ 降低风险", "差分隐私模型 academic_risk v1，ε=3，δ=1e-06"):
        assert text in academic, text
    # The academic model's warning carries the same reasons.
    assert '<tr data-reason="academic_model_risk">' in html
    # The fitness-risk card: green, and what lowers the risk.
    fitness = html[html.index('data-section="fitness-risk"'):]
    assert 'data-risk-level="green"' in fitness and "体测总分 <strong>91.5</strong>" in fitness
    client.get("/lang/en")
    english = client.get("/students/stu-own").text
    assert "Attendance this term <strong>87%</strong>" in english and "↑ raises the risk" in english
    assert "What the model weighed" in english and ">Amber</span>" in english


def test_print_layout_has_a_print_button_and_signature_line(client):
    html = _page(client, "teacher", "/students/stu-own/print")
    assert "data-print" in html and "班主任签名" in html
    css = client.get("/static/portrait.css").text
    assert "@media print" in css and "@page" in css


def test_health_staff_page_ranks_and_filters(client):
    html = _page(client, "nurse", "/schools/school-A/fitness")
    assert html.count('<tr data-student="') == 1 and 'href="/students/stu-own-2/fitness"' in html
    assert '<select name="reason">' in html and len(_charts(html)) == 1
    filtered = client.get("/schools/school-A/fitness", params={"level": "good", "grade": "x", "reason": "bogus"})
    assert filtered.status_code == 200 and filtered.text.count('<tr data-student="') == 0
    fitness = client.get("/students/stu-own-2/fitness").text
    assert "体质健康" in fitness and "五育" not in fitness and len(_charts(fitness)) == 2


def test_health_staff_see_the_models_level_and_the_items_and_trends_behind_each_warning(client):
    html = _page(client, "nurse", "/schools/school-A/fitness")
    row = html[html.index('<tr data-student="stu-own-2">'):]
    row = row[:row.index("</tr>")]
    assert "71%" in row and 'data-risk-level="red"' in row
    model = row[row.index('<li data-reason="fitness_model_risk">'):]
    model = model[:model.index("</li>")]
    for text in ("模型提示下次体测有不及格风险：", "50米跑得分 40", "总分较上次变化 -26.0", '<span class="effect-raises">↑</span>'):
        assert text in model, text
    assert "体测总分不及格" in row and "模型依据：对该生风险影响最大的几项" in html  # the rules' reasons stay beside it
    record = client.get("/students/stu-own-2/fitness").text
    for text in ('<span class="badge risk-red" data-risk-level="red">红色</span>', "50米跑得分 <strong>40</strong>",
                 "↑ 推高风险", "模型依据"):
        assert text in record, text
    client.get("/lang/en")
    english = client.get("/schools/school-A/fitness").text
    assert "50 m sprint score 40" in english and ">Red</span>" in english


def test_training_center_pages(client):
    html = _page(client, "center", "/centers/center-1")
    assert 'href="/courses/course-1"' in html and "75%" in html
    course = client.get("/courses/course-1").text
    assert 'data-unavailable="teacher_training"' in course and 'href="/teachers/tch-own"' in course
    teacher = client.get("/teachers/tch-own").text
    assert len(_charts(teacher)) == 1 and "数字化应用" in teacher and "school-A" not in teacher


def test_officer_pages(client, settings):
    html = _page(client, "officer", "/officer")
    for text in ("隐私预算账本", "模型卡片", "数据导入与隔离", "访问审计日志"):
        assert text in html
    assert "<code>class_growth_score</code>): 暂未提供 · 显示给：班主任</li>" in html
    assert "<code>school_growth_score</code>): 暂未提供 · 显示给：不向任何角色显示" in html
    card = client.get("/officer/models/fitness_risk").text
    assert "<h1>fitness_risk v3</h1>" in card and "<table>" in card
    assert "<script>alert(1)</script>" not in card and "&lt;script&gt;" in card  # the card's HTML is not run


def test_refusals_are_pages_in_the_readers_language(client):
    sign_in_page(client, "nurse")
    response = client.get("/classes/class-1")
    assert response.status_code == 403 and "您的角色（校医/保健人员）无权查看班级画像" in response.text
    client.get("/lang/en")
    assert "Your role (Health staff) cannot open class portraits" in client.get("/classes/class-1").text


def test_every_page_is_self_contained_and_uncached(client, settings):
    write_dp_statistics(settings)
    for user, path in (("teacher", "/classes/class-1"), ("teacher", "/students/stu-own"),
                       ("nurse", "/schools/school-A/fitness"), ("center", "/teachers/tch-own"),
                       ("officer", "/officer")):
        sign_in_page(client, user)
        response = client.get(path)
        assert response.headers["cache-control"] == "no-store"
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert all(s.startswith(("/", "#", "data:")) for s in sources), sources
        assert "http://" not in response.text and "https://" not in response.text


def test_echarts_is_served_by_the_engine_itself(client):
    response = client.get("/static/echarts.min.js")
    assert response.status_code == 200 and len(response.content) > 500_000
    assert 'version="5.6.0"' in response.text
    assert (STATIC_DIR / "ECHARTS-LICENSE.txt").exists() and (STATIC_DIR / "ECHARTS-NOTICE.txt").exists()
    assert "echarts.init" in client.get("/static/portrait.js").text


def test_keys_are_escaped(client):
    sign_in_page(client, "teacher")
    response = client.get("/students/%3Cscript%3Ealert(1)%3C%3Bscript%3E")
    assert response.status_code == 403
    assert "<script>alert" not in response.text and "alert(1)" not in response.text


def test_a_class_page_is_rendered_once_per_publish_and_audited_every_time(client, features, settings):
    from serving.audit import audit_path

    sign_in_page(client, "teacher")
    first = client.get("/classes/class-1").text
    reads = features.reads
    assert client.get("/classes/class-1").text == first and features.reads == reads
    lines = audit_path(settings.home).read_text().splitlines()
    assert sum('"read": "class_portraits"' in line for line in lines) == 4  # two students, two reads
    features.put("fitness_risk_score", "stu-own", {"risk_probability": 0.93, "model_name": "fitness_risk",
                                                   "model_version": 4, "model_epsilon": 2.0, "model_delta": 1e-5})
    assert "93%" in client.get("/classes/class-1").text
    client.get("/lang/en")
    assert "Class overview" in client.get("/classes/class-1").text  # another language, another page
