"""docs/API.md, the project's API reference, lists every route the app serves (FastAPI's routes and the hot
routes served before its routing), and documents no route the app does not serve."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from rnnserve.api.routes import HOT_ROUTES
from rnnserve.app import create_app
from rnnserve.settings import Settings

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "API.md"
HEADING = re.compile(r"^### (.+)$", re.MULTILINE)
ROUTE = re.compile(r"`((?:GET|POST|PUT|PATCH|DELETE|WS) /[^`]*)`")


def hot_routes() -> set[str]:
    """The routes served by plain ASGI endpoints before FastAPI's routing, from their one table."""
    return {f"{route.method} {route.path}" for route in HOT_ROUTES}


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """(prefix, route) of every route, through included routers (FastAPI >= 0.120 keeps an included router as one
    entry of the app's routes, its routes in `original_router`)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + (getattr(context, "prefix", "") or ""))
        else:
            yield prefix, route


def app_routes() -> set[str]:
    """`METHOD /path` of every route of the app (its routing table, which registers the hot routes too)."""
    app = create_app(Settings())
    found: set[str] = set()
    for prefix, route in _walk(app.routes):
        if isinstance(route, WebSocketRoute):
            found.add(f"WS {prefix}{route.path}")
        elif isinstance(route, Mount):
            found.add(f"GET {prefix}{route.path}/{{path}}")
        elif isinstance(route, Route):
            found.update(f"{method} {prefix}{route.path}" for method in (route.methods or {"GET"}) - {"HEAD"})
    return found | hot_routes()


@pytest.fixture(scope="module")
def reference() -> str:
    return REFERENCE.read_text()


def test_the_app_has_the_routes_of_the_contract() -> None:
    routes = app_routes()
    for route in ("POST /v1/sessions/{session_id}/step", "WS /v1/sessions/{session_id}/stream",
                  "POST /v2/models/{model}/infer", "GET /healthz"):  # fmt: skip
        assert route in routes
    assert hot_routes() <= routes


def test_every_route_of_the_app_is_in_the_reference(reference: str) -> None:
    missing = sorted(route for route in app_routes() if f"`{route}`" not in reference)
    assert not missing, f"docs/API.md does not list {missing}"


def test_every_route_the_reference_documents_exists(reference: str) -> None:
    documented = {route for heading in HEADING.findall(reference) for route in ROUTE.findall(heading)}
    assert len(documented) >= 20
    unknown = sorted(documented - app_routes())
    assert not unknown, f"docs/API.md documents routes the app does not serve: {unknown}"


def test_every_problem_type_is_in_the_reference(reference: str) -> None:
    from rnnserve import errors

    types = {
        cls.type for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.RnnServeError)
    }
    assert len(types) >= 12
    assert not sorted(t for t in types if f"`{t}`" not in reference)


def test_the_readme_points_to_the_reference_and_nowhere_outside_the_repository() -> None:
    root = REFERENCE.parents[1]
    readme = (root / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)", readme)
    assert "docs/API.md" in targets
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        path = (root / target).resolve()
        assert path.is_relative_to(root) and path.exists(), f"README links {target!r}, which is not in the repository"
