"""Tenants: who a request's API key belongs to, what each tenant may hold, and which sessions are whose.

Keys come from `api_keys_file` (`--api-keys-file FILE`, `RNNSERVE_API_KEYS_FILE`), or `api_key` (one key: the tenant
`default`). The file holds one entry a line; `#` starts a comment, blank lines are skipped:

    alice:k3y-of-alice                      # TENANT:KEY, the key as the client sends it
    bob:sha256:9f86d081884c7d65...          # TENANT:sha256:HEX, the SHA-256 of the key (the file need not hold it)
    quota * sessions=100 state_bytes=64MiB  # the default quota of every tenant
    quota bob sessions=5000                 # one tenant's own quota (unset parts: the default's)

A tenant name is letters, digits, `_`, `.` and `-`; a tenant may have several keys. `state_bytes` takes a plain
number or one with KiB, MiB or GiB. Without quota lines, every tenant gets the settings `tenant_max_sessions` and
`tenant_max_state_bytes`.

The edge (`rnnserve.api.edge.authorize`) finds the tenant of a request's key and sets it for the request
(`current_tenant`), a context variable: each request runs in a task of its own, so it reaches the data plane
whichever protocol the request came in on, and never another request. The data plane stamps every session it
creates with its tenant (`SessionRecord.owner`) and answers 404 to any other tenant for it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from rnnserve.errors import TooManySessions, Unauthorized, _problem
from rnnserve.settings import Settings

DEFAULT_TENANT = "default"
"""The tenant of the single `api_key`."""

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}

_tenant: ContextVar[str | None] = ContextVar("rnnserve_tenant", default=None)


def current_tenant() -> str | None:
    """The tenant of the request being served (None on a server without keys)."""
    return _tenant.get()


def set_tenant(name: str | None) -> None:
    _tenant.set(name)


class QuotaExceeded(TooManySessions):
    """One more session would pass its tenant's quota (sessions or state bytes)."""

    type = _problem("quota-exceeded")
    title = "Tenant quota exceeded"


class TenantsFileError(ValueError):
    """The keys file cannot be read or has a line that is not an entry; the message names the line."""


@dataclass(frozen=True)
class Quota:
    sessions: int | None = None
    state_bytes: int | None = None


@dataclass
class Tenants:
    """Key digests -> tenant names, and each tenant's quota."""

    digests: dict[bytes, str] = field(default_factory=dict)
    quotas: dict[str, Quota] = field(default_factory=dict)
    default_quota: Quota = Quota()

    @property
    def names(self) -> set[str]:
        return set(self.digests.values())

    def tenant_of(self, authorization: str | None) -> str:
        """The tenant whose key `Authorization: Bearer <key>` carries; `Unauthorized` otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for known, name in self.digests.items():  # every digest compared, in constant time each
            if secrets.compare_digest(known, digest):
                found = name
        if scheme.lower() != "bearer" or found is None or not token.strip():
            raise Unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'")
        return found

    def quota(self, tenant: str) -> Quota:
        own = self.quotas.get(tenant, Quota())
        return Quota(
            own.sessions if own.sessions is not None else self.default_quota.sessions,
            own.state_bytes if own.state_bytes is not None else self.default_quota.state_bytes,
        )


def single_key(key: str, quota: Quota) -> Tenants:
    """The tenants of a server with one `api_key`: the tenant `default`."""
    return Tenants({hashlib.sha256(key.encode()).digest(): DEFAULT_TENANT}, {}, quota)


def read_tenants(path: Path, default_quota: Quota) -> Tenants:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TenantsFileError(f"api keys file {path}: cannot read it: {exc}") from None
    return parse_tenants(text.splitlines(), default_quota, source=str(path))


def parse_tenants(lines: Iterable[str], default_quota: Quota, source: str = "api keys") -> Tenants:
    tenants = Tenants(default_quota=default_quota)
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source} line {number}"
        if line.startswith(("quota ", "quota\t")):
            name, quota = _quota_line(line, where)
            if name == "*":
                tenants.default_quota = _merged(quota, default_quota)
            else:
                tenants.quotas[name] = quota
            continue
        name, sep, key = line.partition(":")
        name, key = name.strip(), key.strip()
        if not sep or not _NAME.fullmatch(name) or not key:
            raise TenantsFileError(f"{where}: expected TENANT:KEY or TENANT:sha256:HEX (the line is not shown)")
        if key.startswith("sha256:"):
            hex_digest = key.removeprefix("sha256:").strip()
            if not _HEX.fullmatch(hex_digest):
                raise TenantsFileError(f"{where}: sha256: must be followed by 64 hex digits")
            digest = bytes.fromhex(hex_digest)
        else:
            digest = hashlib.sha256(key.encode()).digest()
        other = tenants.digests.get(digest)
        if other is not None and other != name:
            raise TenantsFileError(f"{where}: this key is already {other!r}'s")
        tenants.digests[digest] = name
    if not tenants.digests:
        raise TenantsFileError(f"{source}: no TENANT:KEY entry")
    return tenants


def _merged(quota: Quota, fallback: Quota) -> Quota:
    return Quota(
        quota.sessions if quota.sessions is not None else fallback.sessions,
        quota.state_bytes if quota.state_bytes is not None else fallback.state_bytes,
    )


def _quota_line(line: str, where: str) -> tuple[str, Quota]:
    parts = line.split()
    if len(parts) < 3 or not (parts[1] == "*" or _NAME.fullmatch(parts[1])):
        raise TenantsFileError(f"{where}: expected 'quota TENANT|* sessions=N state_bytes=N[KiB|MiB|GiB]'")
    values: dict[str, int] = {}
    for part in parts[2:]:
        key, sep, value = part.partition("=")
        if not sep or key not in ("sessions", "state_bytes"):
            raise TenantsFileError(f"{where}: unknown quota {part!r}; the quotas are sessions= and state_bytes=")
        values[key] = _amount(value, where) if key == "state_bytes" else _count(value, where)
    return parts[1], Quota(values.get("sessions"), values.get("state_bytes"))


def _count(value: str, where: str) -> int:
    if not value.isdigit():
        raise TenantsFileError(f"{where}: sessions must be a whole number, got {value!r}")
    return int(value)


def _amount(value: str, where: str) -> int:
    found = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", value)
    if found is None or found.group(2).lower() not in _UNITS:
        raise TenantsFileError(f"{where}: state_bytes must be a number of bytes, KiB, MiB or GiB, got {value!r}")
    return int(found.group(1)) * _UNITS[found.group(2).lower()]


def tag(tenant: str | None) -> str:
    """The tenant as a metrics label: its name, or '-' for a request that has none (no key, an unknown one)."""
    return tenant or "-"


_loaded: dict[int, tuple[object, Tenants | None]] = {}


def tenants_for(settings: Settings) -> Tenants | None:
    """The tenants of a server's settings (None without keys), read once per settings object: the keys file, else
    the single `api_key` as the tenant `default`."""
    entry = _loaded.get(id(settings))
    if entry is not None and entry[0] is settings:
        return entry[1]
    quota = Quota(settings.tenant_max_sessions, settings.tenant_max_state_bytes)
    tenants: Tenants | None = None
    if settings.api_keys_file is not None:
        tenants = read_tenants(settings.api_keys_file, quota)
    elif settings.api_key is not None:
        tenants = single_key(settings.api_key.get_secret_value(), quota)
    _loaded[id(settings)] = (settings, tenants)
    return tenants


def authenticate(settings: Settings, authorization: str | None) -> str | None:
    """The tenant of a request (set for it: `current_tenant`); `Unauthorized` for a missing or unknown key. None
    on a server without keys."""
    tenants = tenants_for(settings)
    if tenants is None:
        return None
    name = tenants.tenant_of(authorization)
    _tenant.set(name)
    return name
