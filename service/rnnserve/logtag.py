"""A session id as logs may show it: a short tag that follows one session through the logs without revealing the id
(which is all that guards a session on a server without keys). Shared by the access log (`rnnserve.logging_setup`)
and every other log line that names a session."""

from __future__ import annotations

import hashlib

TAG_HEX = 8


def session_tag(session_id: str) -> str:
    """The first 8 hex digits of the id's SHA-256 (logs print it after a `#`): not reversible, stable across
    processes and replicas. The same function as `rnnserve.logging_setup.session_tag`, which may import it."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:TAG_HEX]
