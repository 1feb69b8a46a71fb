"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright.

Each role signs in through the form, lands on its page, sees every chart drawn by the ECharts
the engine serves, and is refused elsewhere. Screenshots (and the portrait's print layout as a
PDF) are kept under `tests/serving/artifacts/` (or $PORTRAIT_TEST_ARTIFACTS) for a person to look at.

Playwright's own browser download is never used: the test set-up installs Debian's `chromium`
(and a CJK font, so the Chinese is drawn, not boxes) when missing, and skips with the reason when
it cannot.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from serving_testdata import PASSWORD, USERS, directory, feature_reader, model_cards
from test_serving_api import write_dp_statistics

from core.config import Settings
from privacy.ledger import PrivacyLedger
from serving.app import create_app
from serving.users import UserStore

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

ARTIFACTS = Path(os.environ.get("PORTRAIT_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
CHROMIUM_NAMES = ("chromium", "chromium-browser")
DEBIAN_PACKAGES = ("chromium", "fonts-wqy-microhei")


def _chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def _install_debian_packages() -> str | None:
    """apt-get the browser and a CJK font; the reason it could not, or None."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "Debian's chromium is missing and this user cannot apt-get install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *DEBIAN_PACKAGES]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"apt-get install {' '.join(DEBIAN_PACKAGES)} failed: {done.stderr[-300:]}"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _chromium()
    has_cjk_font = shutil.which("fc-list") and subprocess.run(["fc-list", ":lang=zh"], capture_output=True, check=False,
                                                              text=True).stdout.strip()
    if path is None or not has_cjk_font:
        reason = _install_debian_packages()
        path = _chromium()
        if path is None:
            pytest.skip(reason or "Debian's chromium could not be found after installing it")
    return path


def _serve(reader):
    """The app over `reader` (the small in-memory city), on a free loopback port, in a thread of this process."""
    import uvicorn

    home = Path(tempfile.mkdtemp(prefix="portrait-browser-"))
    settings = Settings(home=home)
    users = UserStore(settings.users_path)
    for username, (role, scope) in USERS.items():
        users.add(username, PASSWORD, role, scope)
    users.add("solo-teacher", PASSWORD, "class_teacher", ["class-1"])
    users.add("solo-nurse", PASSWORD, "health_staff", ["school-A"])
    users.add("solo-center", PASSWORD, "training_center", ["center-1"])
    write_dp_statistics(settings)
    ledger = PrivacyLedger(settings.ledger_url)
    ledger.open_release("2025", epsilon=10.0, delta=1e-4)
    ledger.spend("2025", what="training: fitness_risk DP-SGD", epsilon=2.0, delta=1e-5, mechanism="DP-SGD",
                 accountant="prv")
    app = create_app(settings, reader, directory=directory(), model_cards=model_cards())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """Only fitness risk scored: the models still to come say so."""
    yield from _serve(feature_reader())


@pytest.fixture(scope="module")
def scored_server():
    """Every model scored, the teacher-training model's invite lists and recommendations included."""
    yield from _serve(feature_reader(with_future_models=True))


@pytest.fixture(scope="module")
def browser(chromium):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    yield page
    context.close()


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def charts_drawn(page) -> int:
    """Waits until every chart of the page is drawn as SVG by ECharts; returns how many."""
    charts = "[data-chart], [data-template]"  # a chart with its own option, or one from a shared template
    total = page.locator(charts).count()
    if total:
        # A selector, not a JS predicate: the pages' CSP forbids eval, and the test keeps the CSP on.
        page.wait_for_selector("html[data-charts-ready]", state="attached", timeout=15_000)
    assert page.locator("[data-rendered='1']").count() == total, "a chart failed to draw"
    for index in range(total):
        assert page.locator(charts).nth(index).locator("svg").count() == 1
    return total


ROLES = [
    # user, landing path, at least this many charts, a text the page must show, a path it must refuse
    ("solo-teacher", "/classes/class-1", 3, "班级概览", "/schools/school-A/fitness"),
    ("solo-nurse", "/schools/school-A/fitness", 1, "学校体质健康预警", "/students/stu-own"),
    ("solo-center", "/centers/center-1", 0, "培训中心概览", "/classes/class-1"),
    ("officer", "/officer", 1, "数据中心", "/teachers/tch-own"),
]


@pytest.mark.parametrize(("user", "landing", "charts", "text", "refused"), ROLES, ids=[r[0] for r in ROLES])
def test_each_role_lands_on_its_page_with_charts_and_is_refused_elsewhere(page, server, user, landing, charts, text,
                                                                         refused):
    sign_in(page, server, user)
    assert page.url == server + landing
    assert page.locator("h1").first.inner_text().startswith(text)
    assert charts_drawn(page) >= charts
    page.screenshot(path=str(ARTIFACTS / f"{user}-landing.png"), full_page=True)
    assert not page.console_errors, page.console_errors
    response = page.goto(server + refused)
    assert response.status == 403
    assert page.locator("h1").inner_text() == "无权查看"
    page.screenshot(path=str(ARTIFACTS / f"{user}-refused.png"))


def test_class_teacher_opens_a_student_from_the_class_and_prints_it(page, server):
    sign_in(page, server, "solo-teacher")
    page.click("a[href='/students/stu-own-2']")
    page.wait_for_load_state("networkidle")
    assert charts_drawn(page) == 3  # five domains against the norms, totals by year, items by year
    assert page.locator("[data-unavailable='growth']").is_visible()
    assert page.locator("[data-reason='fitness_failed']").is_visible()
    # Strengths at or above the norms' P75 (德 80, 体 91 against P75 80), named beside the radar.
    assert page.locator("[data-strengths] .badge.strength").all_inner_texts() == ["德", "体"]
    page.screenshot(path=str(ARTIFACTS / "class-teacher-student.png"), full_page=True)
    page.click("a[href='/students/stu-own-2/print']")
    page.wait_for_load_state("networkidle")
    charts_drawn(page)
    page.emulate_media(media="print")
    assert not page.locator("header.top nav").is_visible()
    assert page.locator(".print-only").is_visible()
    assert page.locator("[data-strengths] .badge.strength").count() == 2  # printed for the parent meeting
    page.screenshot(path=str(ARTIFACTS / "class-teacher-student-print.png"), full_page=True)
    page.pdf(path=str(ARTIFACTS / "class-teacher-student-print.pdf"), format="A4", print_background=True)
    assert (ARTIFACTS / "class-teacher-student-print.pdf").stat().st_size > 10_000
    assert not page.console_errors, page.console_errors


def test_health_staff_filter_warnings_and_open_a_fitness_record(page, server):
    sign_in(page, server, "solo-nurse")
    page.select_option("select[name=level]", "fail")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "level=fail" in page.url and page.locator("tr[data-student]").count() == 1
    # The model's level and the items and trends behind its warning, beside the rules' reasons.
    row = page.locator("tr[data-student='stu-own-2']")
    assert row.locator("[data-risk-level='red']").inner_text() == "红色"
    assert row.locator("li[data-reason='fitness_model_risk'] .model-reason").all_inner_texts()[0] == "50米跑得分 40 ↑"
    assert row.locator("li[data-reason='fitness_failed']").is_visible()
    page.screenshot(path=str(ARTIFACTS / "health-staff-warnings.png"), full_page=True)
    page.click("a[href='/students/stu-own-2/fitness']")
    page.wait_for_load_state("networkidle")
    assert charts_drawn(page) == 2
    assert page.locator("[data-section='warnings'] [data-risk-level='red']").first.is_visible()
    assert page.locator("tr[data-reason='fitness_model_risk'] ul.model-reasons li").count() == 3
    page.screenshot(path=str(ARTIFACTS / "health-staff-student-fitness.png"), full_page=True)


def test_training_center_sees_a_teachers_literacy_radar(page, server):
    sign_in(page, server, "solo-center")
    page.click("a[href='/courses/course-1']")
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-unavailable='teacher_training']").is_visible()
    page.click("a[href='/teachers/tch-own']")
    page.wait_for_load_state("networkidle")
    assert charts_drawn(page) == 1
    page.screenshot(path=str(ARTIFACTS / "training-center-teacher.png"), full_page=True)


def test_english_toggle(page, server):
    sign_in(page, server, "solo-teacher")
    page.click("a.lang")
    page.wait_for_load_state("networkidle")
    assert page.url == server + "/classes/class-1"
    assert page.locator("h1").first.inner_text().startswith("Class overview")
    charts_drawn(page)
    page.screenshot(path=str(ARTIFACTS / "class-teacher-english.png"), full_page=True)


def test_class_teacher_sees_the_classs_median_growth_and_academic_risk_once_scored(page, scored_server):
    sign_in(page, scored_server, "solo-teacher")
    assert charts_drawn(page) == 4  # warnings pie, the class's growth bars, a mini radar per student
    growth = page.locator("[data-section='class-growth']")
    assert growth.locator("tr[data-subject]").count() == 3
    assert growth.locator("tr[data-subject='math']").inner_text().split() == ["数学", "62", "45"]
    page.screenshot(path=str(ARTIFACTS / "class-teacher-class-growth.png"), full_page=True)
    page.click("a[href='/students/stu-own-2']")
    page.wait_for_load_state("networkidle")
    charts_drawn(page)
    academic = page.locator("[data-section='academic-risk']")
    assert academic.locator("[data-risk-level='amber']").inner_text() == "黄色"
    assert academic.locator("ul.model-reasons li").count() == 3
    page.screenshot(path=str(ARTIFACTS / "class-teacher-student-scored.png"), full_page=True)
    assert not page.console_errors, page.console_errors


def test_training_center_sees_the_invite_list_and_opens_an_invited_teacher(page, scored_server):
    sign_in(page, scored_server, "solo-center")
    assert page.locator("tr[data-course='course-1'] a[href='/courses/course-1#invites']").inner_text() == "2"
    page.click("tr[data-course='course-1'] a[href='/courses/course-1']")
    page.wait_for_load_state("networkidle")
    rows = page.locator("[data-section='invites'] tr[data-invite]")
    assert rows.count() == 2
    first = rows.nth(0)
    assert first.get_attribute("data-invite") == "tch-invited"
    assert "+5.2" in first.inner_text() and "数字化应用" in first.inner_text()
    assert "「数字化应用」现 58.0 分：预期 +5.2 分" in first.inner_text()  # the model's reason, in Chinese
    assert "已报名" in rows.nth(1).inner_text()  # tch-own already took the course
    assert "差分隐私模型 teacher_training v1，ε=3，δ=1e-06" in page.locator("[data-section='invites']").inner_text()
    page.screenshot(path=str(ARTIFACTS / "training-center-invites.png"), full_page=True)
    # An invited teacher who never trained at the center: in scope because the list names them.
    page.click("a[href='/teachers/tch-invited']")
    page.wait_for_load_state("networkidle")
    assert page.url == scored_server + "/teachers/tch-invited"
    assert charts_drawn(page) == 1
    assert page.locator("[data-courses='invited'] a").all_inner_texts() == ["course-1"]
    recommendation = page.locator("tr[data-recommendation='course-2']")
    assert "针对该教师最薄弱维度的「数字化应用」（现 58.0 分）：预期 +4.5 分" in recommendation.inner_text()
    assert "school-A" not in page.content() and "class-1" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "training-center-invited-teacher.png"), full_page=True)
    assert not page.console_errors, page.console_errors
    # Another center's invitee stays out of reach.
    assert page.goto(scored_server + "/teachers/tch-invited-elsewhere").status == 403
