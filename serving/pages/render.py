"""Rendering a page: templates, the language, the headers every page carries, the error pages."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from serving.access import AccessError
from serving.i18n import language_of, translator
from serving.labels import feature_value, label

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
templates = Jinja2Templates(directory=TEMPLATES_DIR)

# Pages hold personal data: shared school computers must not cache them. Scripts, styles and
# images may come from this engine only (ECharts included), so nothing leaves a closed network.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _number(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def _percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _when(value) -> str:
    """An ISO timestamp as "2026-12-03 07:24 UTC" (to the minute, in UTC); anything else as it is."""
    from datetime import UTC, datetime

    if not value:
        return "—"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.tzinfo is not None else "")


def _chart_json(option: dict) -> str:
    # Escaped for an HTML attribute by the template (autoescape); compact to keep pages small.
    return json.dumps(option, ensure_ascii=False, separators=(",", ":"))


def _markdown(text: str) -> Markup:
    from markdown_it import MarkdownIt

    # html=False: raw HTML in a card is shown as text, never run; links are checked by markdown-it.
    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(text or ""))


templates.env.filters["number"] = _number
templates.env.filters["percent"] = _percent
templates.env.filters["chart_json"] = _chart_json
templates.env.filters["when"] = _when
templates.env.filters["markdown"] = _markdown
templates.env.filters["feature_value"] = feature_value
templates.env.filters["dimension_label"] = lambda code, lang: label("dimension", code, lang)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    lang = language_of(request)
    base = {"user": getattr(request.state, "user", None), "lang": lang, "t": translator(lang),
            "label": partial(label, lang=lang), "path": request.url.path}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code,
                                      headers=PAGE_HEADERS)


def error_page(request: Request, error: AccessError) -> Response:
    t = translator(language_of(request))
    if error.code == "role_forbidden" and error.resource is not None and error.role is not None:
        message = t("role_forbidden", role=label("role", error.role.value, language_of(request)),
                    resource=t(f"resource.{error.resource.value}"))
    else:
        message = t(error.code)
    title = t("not_found_title") if error.status_code == 404 else t("forbidden_title")
    # `path` "/": the page must not echo the key it refuses (an unknown and a forbidden key look the same).
    return render(request, "error.html", {"title": title, "message": message, "path": "/"},
                  status_code=error.status_code)


def to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
