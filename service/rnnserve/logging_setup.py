"""The server's logs: text or JSON lines, session ids as short tags, and the access log's three modes.

`configure_logging(settings)` sets up the root logger (the server's own loggers propagate to it) and
`uvicorn_log_config(settings)` uvicorn's loggers, both with one formatter: `TextFormatter` (`time level logger:
message`) or `JsonFormatter` (one JSON object a line, for a log collector). Both print a session id only as a
short tag, the first 8 hex digits of its SHA-256 (`session_tag`): whoever reads the logs can match the lines of one
session without learning an id that would let them step it.

The access log (`access_log`):

* `summary` (the default): no line per request; every `access_log_interval_s` (a minute) one line per route with
  its requests, their statuses and latency percentiles, read from the request metrics the edge keeps anyway
  (`AccessSummary`, a thread). It costs nothing per request.
* `full`: uvicorn's line per HTTP request (client, method, path, status), written by a background thread
  (`BackgroundHandler`) so that a slow log pipe never stalls the event loop. Building each record (uvicorn's access
  logger) still costs the event loop more than a tenth of a one-timestep step (bench/README.md: case a-full): a
  debugging aid, not a production default.
* `off`: neither.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from rnnserve.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TAG_HEX = 8

log = logging.getLogger("rnnserve.access")


def session_tag(session_id: str) -> str:
    """A short non-reversible tag of a session id: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:TAG_HEX]


_PATH_ID = re.compile(r"(/sessions/)([^/\s\"'?#]+)")
_QUOTED_ID = re.compile(r"(\bsession )'([^']*)'")


def redact(text: str) -> str:
    """`text` with every session id (in a `/sessions/<id>` path, or quoted after the word `session`) replaced by
    its tag, `#` and 8 hex digits."""
    if "session" not in text:
        return text
    text = _PATH_ID.sub(lambda m: f"{m.group(1)}#{session_tag(m.group(2))}", text)
    return _QUOTED_ID.sub(lambda m: f"{m.group(1)}#{session_tag(m.group(2))}", text)


def level_number(level: str) -> int:
    """A `log_level` setting as the logging module's number (`trace` is DEBUG)."""
    return logging.DEBUG if level == "trace" else logging.getLevelName(level.upper())


class TextFormatter(logging.Formatter):
    """`time level logger: message`, session ids as tags."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
"""uvicorn's access-log arguments, in its order."""


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `time` (UTC, ISO 8601), `level`, `logger`, `message`, `exc_info` when there is one;
    uvicorn's access records also as fields (`client`, `method`, `path`, `status`). Session ids as tags."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            fields = dict(zip(_ACCESS_FIELDS, record.args, strict=True))
            fields["path"] = redact(str(fields["path"]))
            body.update(fields)
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            body.update(extra)
        if record.exc_info:
            body["exc_info"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(body, default=str).decode()


def formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_format == "json" else TextFormatter()


class BackgroundHandler(logging.Handler):
    """A handler that formats and writes its records on a thread of its own, in batches: `emit` only queues the
    record, so the event loop never waits on the stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._write, name="rnnserve-access-log", daemon=True)
        self.thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.put(record)

    def _write(self) -> None:
        records = self.records
        while True:
            batch = [records.get()]
            while len(batch) < 1024:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for record in batch:
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            stream = self.stream or sys.stderr
            try:
                stream.write("\n".join(lines) + "\n")
                stream.flush()
            except Exception:  # noqa: S110  # nowhere left to report it
                pass

    def flush(self) -> None:
        """Wait (briefly) until the queued records are written."""
        deadline = time.monotonic() + 2.0
        while not self.records.empty() and time.monotonic() < deadline:
            time.sleep(0.005)


def configure_logging(settings: Settings) -> None:
    """The root logger: one stderr handler with the settings' format, at their level."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings))
    root.addHandler(handler)
    root.setLevel(level_number(settings.log_level))


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's `log_config`: its loggers with the settings' format; the access log (when `full`) on a
    `BackgroundHandler`. The root logger is left alone (`configure_logging` sets it)."""
    kind = "JsonFormatter" if settings.log_format == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"rnnserve": {"()": f"{__name__}.{kind}"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "rnnserve", "stream": "ext://sys.stderr"},
            "access": {"()": f"{__name__}.BackgroundHandler", "formatter": "rnnserve"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def access_log_on(settings: Settings) -> bool:
    """Whether uvicorn writes a line per request: `access_log = full` at a level that prints INFO (uvicorn
    builds every access record before the logger drops it, so it is off when it would not be printed)."""
    return settings.access_log == "full" and level_number(settings.log_level) <= logging.INFO


# ---- the summary --------------------------------------------------------------------------------------------------

Counts = dict[tuple[str, str], dict[str, float]]  # (route, method) -> status -> requests
Buckets = dict[tuple[str, str], list[tuple[float, float]]]  # (route, method) -> [(upper bound, cumulative count)]


class AccessSummary:
    """Every `interval_s` seconds, one log line per route that served requests since the last one: the count, the
    rate, the statuses and the latency's p50 and p99 (the upper bound of the histogram bucket they fall in), read
    from the metrics' `rnnserve_requests` and `rnnserve_request_seconds` (this process's). Runs on a daemon
    thread; nothing is done per request."""

    def __init__(self, registry: Any, interval_s: float, logger: logging.Logger = log) -> None:
        self.registry, self.interval_s, self.logger = registry, interval_s, logger
        self.counts: Counts = {}
        self.buckets: Buckets = {}
        self.since = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rnnserve-access-summary", daemon=True)

    def start(self) -> AccessSummary:
        self.counts, self.buckets = self._read()
        self.since = time.monotonic()
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.emit()
            except Exception:
                self.logger.exception("the access summary failed")

    def emit(self) -> list[str]:
        """Log (and return) the lines for the requests since the last call."""
        counts, buckets = self._read()
        now = time.monotonic()
        lines = summary_lines(self.counts, counts, self.buckets, buckets, now - self.since)
        self.counts, self.buckets, self.since = counts, buckets, now
        for line, fields in lines:
            self.logger.info("%s", line, extra={"fields": fields})
        return [line for line, _ in lines]

    def _read(self) -> tuple[Counts, Buckets]:
        counts: Counts = {}
        buckets: Buckets = {}
        for family in self.registry.collect():
            if family.name == "rnnserve_requests":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        key = (sample.labels["route"], sample.labels["method"])
                        by_status = counts.setdefault(key, {})
                        by_status[sample.labels["status"]] = by_status.get(sample.labels["status"], 0) + sample.value
            elif family.name == "rnnserve_request_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        key = (sample.labels["route"], sample.labels["method"])
                        buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
        return counts, buckets


def summary_lines(
    before: Counts, after: Counts, buckets_before: Buckets, buckets_after: Buckets, seconds: float
) -> list[tuple[str, dict[str, Any]]]:
    """The summary's (line, JSON fields) per route with requests between two readings."""
    lines = []
    for key, statuses in sorted(after.items()):
        old = before.get(key, {})
        delta = {s: n - old.get(s, 0) for s, n in statuses.items() if n - old.get(s, 0) > 0}
        total = sum(delta.values())
        if not total:
            continue
        route, method = key
        p50, p99 = _percentiles(buckets_before.get(key, []), buckets_after.get(key, []), (0.5, 0.99))
        rate = total / seconds if seconds > 0 else 0.0
        shown = " ".join(f"{s}:{n:.0f}" for s, n in sorted(delta.items()))
        line = (
            f"access {method} {route}: {total:.0f} requests in {seconds:.0f} s ({rate:.1f}/s), status {shown}, "
            f"p50 <= {_ms(p50)}, p99 <= {_ms(p99)}"
        )
        fields = {"route": route, "method": method, "requests": total, "seconds": round(seconds, 3),
                  "statuses": delta, "p50_ms": _ms_value(p50), "p99_ms": _ms_value(p99)}  # fmt: skip
        lines.append((line, fields))
    return lines


def _percentiles(
    before: list[tuple[float, float]], after: list[tuple[float, float]], qs: Iterable[float]
) -> list[float]:
    old = dict(before)
    delta = [(bound, count - old.get(bound, 0.0)) for bound, count in sorted(after)]
    total = delta[-1][1] if delta else 0.0
    found = []
    for q in qs:
        bound = float("nan")
        for upper, cumulative in delta:
            if total and cumulative >= q * total:
                bound = upper
                break
        found.append(bound)
    return found


def _ms(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    return "inf" if seconds == float("inf") else f"{seconds * 1e3:g} ms"


def _ms_value(seconds: float) -> float | None:
    return None if seconds != seconds or seconds == float("inf") else seconds * 1e3


def start_access_summary(registry: Any, settings: Settings) -> AccessSummary | None:
    """The summary thread, when the settings ask for it."""
    if settings.access_log != "summary":
        return None
    return AccessSummary(registry, settings.access_log_interval_s).start()
