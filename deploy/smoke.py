"""Smoke check of running rnnserve replicas (stdlib only, so it runs anywhere deploy/check.sh does).

    python deploy/smoke.py [--ready-only] URL [URL ...]

Waits until every URL's /readyz answers 200. Unless --ready-only, then streams one session across the replicas in
turn (create on the first, step on each, retry a step on another replica with the same `seq`) and checks that
they share one truth: each step continues where the previous replica left off, and the retry is answered from
the stored response without advancing the session.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

READY_TIMEOUT_S = 180.0


def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    status: int | str = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _ = call("GET", f"{url}/readyz")
        except OSError as exc:
            status = f"no answer ({exc.__class__.__name__})"
        if status == 200:
            print(f"{url}/readyz: 200")
            return
        time.sleep(1.0)
    raise SystemExit(f"{url}/readyz never answered 200 within {READY_TIMEOUT_S:.0f} s (last: {status})")


def stream_model(url: str) -> dict[str, Any]:
    """A model that can serve sessions: one input, recurrent states, batch-major."""
    status, body = call("GET", f"{url}/v1/models")
    if status != 200:
        raise SystemExit(f"GET {url}/v1/models -> {status}: {body}")
    for model in body["models"]:
        if (
            model["states"]
            and len(model["inputs"]) == 1
            and not model.get("bidirectional")
            and not model.get("time_major")
        ):
            return dict(model)
    raise SystemExit(f"no model at {url} can serve sessions: {[m['name'] for m in body['models']]}")


def one_timestep(model: dict[str, Any], batch: int) -> list[Any]:
    """Zeros shaped [batch][1][features...] (token ids for an int64 input are zeros too)."""
    value: Any = 0 if model["inputs"][0]["dtype"] == "int64" else 0.0
    for dim in reversed(model["inputs"][0]["shape"][2:]):
        value = [value] * int(dim)
    return [[value] for _ in range(batch)]


def check_shared_sessions(urls: list[str]) -> None:
    model = stream_model(urls[0])
    status, created = call("POST", f"{urls[0]}/v1/sessions", {"model": model["name"]})
    if status != 201:
        raise SystemExit(f"create session on {urls[0]} -> {status}: {created}")
    sid, batch = created["session_id"], created["batch_size"]
    inputs = one_timestep(model, batch)
    replies = []
    for seq, url in enumerate(urls + urls[:1]):
        status, reply = call("POST", f"{url}/v1/sessions/{sid}/step", {"inputs": inputs, "seq": seq})
        if status != 200 or reply["step"] != seq + 1:
            raise SystemExit(f"step seq={seq} on {url} -> {status}: {reply}")
        replies.append(reply)
    last = len(replies) - 1
    status, retried = call("POST", f"{urls[1 % len(urls)]}/v1/sessions/{sid}/step", {"inputs": inputs, "seq": last})
    if status != 200 or retried != replies[-1]:
        raise SystemExit(f"retry of seq={last} on another replica -> {status}: {retried}")
    status, state = call("GET", f"{urls[-1]}/v1/sessions/{sid}")
    if status != 200 or state["step"] != len(replies):
        raise SystemExit(f"GET session on {urls[-1]} -> {status}: {state}")
    call("DELETE", f"{urls[0]}/v1/sessions/{sid}")
    print(
        f"session {sid[:8]}... of {model['name']!r}: {len(replies)} steps across {len(urls)} replicas, retry replayed"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ready-only", action="store_true", help="only wait for /readyz")
    parser.add_argument("urls", nargs="+", help="base URL of each replica, e.g. http://127.0.0.1:8001")
    args = parser.parse_args(argv)
    urls = [u.rstrip("/") for u in args.urls]
    for url in urls:
        wait_ready(url)
    if not args.ready_only:
        check_shared_sessions(urls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
