"""The web console at ``/ui/``: static files shipped in the package, served by the API.

The console is a page and a small ES module app (``statefleet/console/``) that calls
the public ``/v1`` routes with the key a person pasted, exactly as the client does: this
module adds no data route, only the files. Every path under ``/ui/`` that is not an
asset answers the same page, and the app draws the view its path names
(``/ui/instances/{id}``, ``/ui/inbox``, ...), so a link or a reload lands on the view.

Every answer under ``/ui`` carries the headers of :data:`SECURITY_HEADERS`; why each
part of the Content-Security-Policy is there is said in docs/console.md.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONSOLE_DIR", "CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "install_console"]

#: The console's files, inside the installed package (a plain folder in a wheel).
CONSOLE_DIR: Final = Path(str(resources.files("statefleet") / "console"))

#: Scripts only from this origin (no inline script, no eval); styles from this origin
#: plus inline ones, which Mermaid cannot do without (a ``<style>`` theme in every SVG it
#: draws, ``style`` attributes on its shapes); the API on this origin; nothing may frame
#: the console. docs/console.md says why each part is there.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page holds no data, but a cached copy must never outlive a new release's assets.
    "Cache-Control": "no-cache",
}

_RAW_HEADERS: Final = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class _WithHeaders:
    """ASGI wrapper that adds :data:`SECURITY_HEADERS` to every response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_RAW_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _page() -> FileResponse:
    return FileResponse(
        CONSOLE_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS
    )


router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", headers=SECURITY_HEADERS)


@router.get("/ui/")
async def ui_home() -> FileResponse:
    return _page()


@router.get("/ui/{view:path}")
async def ui_view(view: str) -> FileResponse:
    """Any view's path answers the page; the app reads the path and draws the view."""
    return _page()


def install_console(app: FastAPI) -> None:
    """Serves the console on ``app``: assets under ``/ui/assets/``, the page elsewhere."""
    assets = StaticFiles(directory=CONSOLE_DIR / "assets", check_dir=True)
    app.mount("/ui/assets", _WithHeaders(assets), name="console-assets")
    app.include_router(router)
