"""The documentation pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), without internet.

FastAPI's own pages load Swagger UI, ReDoc, Google Fonts and a favicon from public hosts:
on a network without internet, like many production networks, both stay white. Here the
scripts, the style sheet and the favicon are the ones the `fastapi-offline` package ships
(Swagger UI's and ReDoc's release bundles), served by the service under `/docs-assets/`;
ReDoc gets no web fonts (its own fallbacks). Each page also carries a
Content-Security-Policy that lets it load nothing from another host: ReDoc's sidebar would
otherwise ask Redocly's CDN for its logo. The pages show what FastAPI's show, from the same
`/openapi.json`. tests/test_docs_pages.py opens both in a headless Chromium that can reach
nothing but the service.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
#: Where the package's files are served.
ASSETS_URL = "/docs-assets"
#: The package, and its folder of Swagger UI's and ReDoc's files.
ASSETS_PACKAGE = ("fastapi_offline", "static")

#: The service's own scripts, styles, images and requests only. Inline scripts and styles:
#: FastAPI's page starts Swagger UI inline, and both UIs style elements as they render;
#: data: images are the UIs' icons, blob: workers ReDoc's search.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'"
)


def install_docs(app: FastAPI) -> None:
    """Serve `/docs`, its OAuth2 redirect page, `/redoc` and their assets. The app is
    built with `docs_url=None, redoc_url=None`: these replace FastAPI's pages."""
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or ""),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        return _confined(page)

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return _confined(get_swagger_ui_oauth2_redirect_html())

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(
            openapi_url=root + (app.openapi_url or ""),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        return _confined(page)

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page
