"""Server-rendered pages, one router per resource, in Chinese with an English toggle.

Jinja2 templates (`serving/templates`), one stylesheet and ECharts served by the engine itself
(`serving/static`): nothing is fetched from elsewhere, so the pages work on a closed school network.
"""

from fastapi import APIRouter

from serving.pages import auth, classes, officer, schools, students, training

page_router = APIRouter(include_in_schema=False)
for module in (auth, classes, students, schools, training, officer):
    page_router.include_router(module.router)
