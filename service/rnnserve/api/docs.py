"""The OpenAPI schema and its viewers, served offline: `GET /openapi.json` (`rnnserve.api.openapi`), Swagger UI at
`/docs` and ReDoc at `/redoc`, their scripts and styles under `/docs/assets/` from the package (`static/`: Swagger
UI 5 from npm's `swagger-ui-dist`, ReDoc 2 from npm's `redoc`, each with its licence), never from a CDN.

Pages link the schema and the assets by absolute paths under the app's root path, so they work behind a proxy
that strips a prefix (uvicorn's `--root-path`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from rnnserve.api.edge import dumps
from rnnserve.api.openapi import openapi_schema

STATIC = Path(__file__).resolve().parent / "static"
OPENAPI = "/openapi.json"
ASSETS = "/docs/assets"

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{assets}/swagger-ui/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/swagger-ui/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{openapi}", dom_id: "#swagger-ui", deepLinking: true,
  oauth2RedirectUrl: window.location.origin + "{root}/docs/oauth2-redirect",
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}});
</script></body></html>
"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc/redoc.standalone.js"></script></body></html>
"""


def _page(template: str, request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    title = html.escape(request.app.title)
    return HTMLResponse(template.format(title=title, root=root, openapi=root + OPENAPI, assets=root + ASSETS))


async def swagger_ui(request: Request) -> Response:
    return _page(_SWAGGER, request)


async def redoc(request: Request) -> Response:
    return _page(_REDOC, request)


async def oauth2_redirect(request: Request) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    page = (STATIC / "swagger-ui" / "oauth2-redirect.html").read_text()
    return HTMLResponse(page.replace('src="oauth2-redirect.js"', f'src="{root}{ASSETS}/swagger-ui/oauth2-redirect.js"'))


async def openapi_json(request: Request) -> Response:
    return Response(dumps(current_schema(request.app)), media_type="application/json")


def current_schema(app: FastAPI) -> dict[str, Any]:
    """The schema, with `{model}` limited to the models loaded now (rebuilt when they change)."""
    service = serving_of(app)
    models = sorted(m.name for m in service.models() if m.status == "ready") if service is not None else []
    cached = getattr(app, "_openapi_for", None)
    if cached is None or cached[0] != models:
        settings = getattr(getattr(app, "serving", None), "settings", None)
        cached = (models, openapi_schema(app, app.hot.routes, models, settings))  # type: ignore[attr-defined]
        app._openapi_for = cached  # type: ignore[attr-defined]
    return cached[1]


def serving_of(app: FastAPI) -> Any:
    return getattr(getattr(app, "serving", None), "service", None)


def mount_docs(app: FastAPI) -> None:
    """Add the schema and viewer routes (none of them in the schema). The app must be built with `openapi_url`,
    `docs_url` and `redoc_url` None, so FastAPI adds none of its own (which load their assets from a CDN)."""
    app.add_route(OPENAPI, openapi_json, ["GET"], include_in_schema=False)
    app.add_route("/docs", swagger_ui, ["GET"], include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", oauth2_redirect, ["GET"], include_in_schema=False)
    app.add_route("/redoc", redoc, ["GET"], include_in_schema=False)
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")
    app.openapi = lambda: current_schema(app)  # type: ignore[method-assign]
