"""`open_store(settings, events)`: the session store `settings.store_url` names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnserve.sessions.base import SessionEvents, SessionStore

if TYPE_CHECKING:
    from rnnserve.settings import Settings


def open_store(settings: Settings, events: SessionEvents | None = None) -> SessionStore:
    """memory:// -> `MemorySessionStore`; redis://, rediss://, unix://, redis+cluster://, rediss+cluster:// ->
    `RedisSessionStore` (imported lazily)."""
    url = settings.store_url
    if url.startswith("memory://"):
        from rnnserve.sessions.memory import MemorySessionStore

        return MemorySessionStore(
            max_sessions=settings.max_sessions, max_state_bytes=settings.max_state_bytes, events=events
        )
    from rnnserve.sessions.redis import RedisSessionStore

    return RedisSessionStore.from_url(
        url,
        max_sessions=settings.max_sessions,
        max_state_bytes=settings.max_state_bytes,
        default_ttl_s=settings.default_ttl_s,
        events=events,
        cache_bytes=round(settings.store_cache_mb * 2**20),
    )
