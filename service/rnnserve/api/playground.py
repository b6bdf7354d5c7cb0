"""The browser playground (`rnnserve.playground`): `GET /` serves its page, `GET /playground/{path}` its CSS and
JavaScript modules and, at `/playground/vocab/{model}`, a model's vocabulary file (`NAME.vocab.json` next to the
model, as the bundled `chargru` has; behind the API key like the model list) for pages that encode text.

Every URL the page uses is relative to it, so it works under a root path behind a proxy. `mount_playground(app)`
adds the two routes (neither is in the OpenAPI schema)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles

from rnnserve.api.deps import check_api_key, serving
from rnnserve.api.problems import problem, problem_response
from rnnserve.errors import Unauthorized
from rnnserve.playground import STATIC

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_NO_CACHE = {"cache-control": "no-cache"}


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_NO_CACHE)


async def vocabulary(request: Request) -> Response:
    """The model's `NAME.vocab.json` (`{"tokens": [...], "pad_id": 0}`), or a 404 problem when it has none."""
    try:
        check_api_key(request)
    except Unauthorized as exc:
        body = problem(int(exc.status), exc.detail, title=exc.title, type_=exc.type)
        return problem_response(body, {"www-authenticate": "Bearer"})
    name = request.path_params["model"]
    path = serving(request).settings.models / f"{name}.vocab.json"
    if _NAME.fullmatch(name) is None or not path.is_file():
        return problem_response(problem(404, f"model {name!r} has no vocabulary file ({name}.vocab.json)"))
    return FileResponse(path, media_type="application/json", headers=_NO_CACHE)


def mount_playground(app: FastAPI) -> None:
    """Serve the playground's page at `/` and its files under `/playground/`."""
    app.add_route("/", index, ["GET"], include_in_schema=False)
    files = Router([Route("/vocab/{model}", vocabulary, methods=["GET"]), Mount("", StaticFiles(directory=STATIC))])
    app.mount("/playground", files, name="playground")
