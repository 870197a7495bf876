"""The dashboard at ``/ui``: one static page and its assets from the installed package
(``app/ui/static``, Chart.js vendored by ``scripts/vendor_ui.sh``), so it works with no network.

The page and its assets hold no data and need no token; the page's script reads everything from
the ``/v1`` API with the token the user enters, so ``DCES_API_TOKEN`` guards the data as before.
Its Content-Security-Policy allows scripts, styles and requests to this origin only.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE_URL = "/ui"
ASSETS_URL = "/ui/static"
ASSETS_DIR = files("app").joinpath("ui", "static")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def install_ui(app: FastAPI) -> None:
    """Mount the assets and add the page, whose URLs follow the app's ``root_path``."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="ui-assets")
    template = ASSETS_DIR.joinpath("index.html").read_text(encoding="utf-8")

    @app.get(PAGE_URL, include_in_schema=False)
    async def dashboard(request: Request) -> HTMLResponse:
        root = escape(request.scope.get("root_path", ""), quote=True)
        return HTMLResponse(template.replace("{root}", root), headers={
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})
