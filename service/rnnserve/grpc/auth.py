"""The API key on gRPC: call metadata `authorization: Bearer <key>`, the HTTP header's form, checked against the
same setting (`api_key`) by the same function as HTTP's (`rnnserve.api.edge.authorize`)."""

from __future__ import annotations

from collections.abc import Iterable

from rnnserve.api.edge import authorize
from rnnserve.settings import Settings

AUTHORIZATION = "authorization"


def authorization_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The `authorization` entry of a call's metadata (gRPC metadata keys are lower-case)."""
    for key, value in metadata or ():
        if key == AUTHORIZATION:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def check_key(settings: Settings, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
    """`Unauthorized` unless the call carries the server's API key (when it has one)."""
    if settings.auth_required:  # the tenant of the key is set for the call, as on HTTP
        authorize(settings, authorization_of(metadata))
