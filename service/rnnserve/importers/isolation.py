"""Run a container reader in a short-lived child process, with a deadline and a memory cap.

The HDF5 C library can loop forever or crash on a damaged or hostile file (a flipped byte in a variable
length string's heap is enough), and nothing in Python can interrupt it. So the part of an import that
parses zip and HDF5 runs elsewhere:

* the importing process starts one *reader server* (`python -m rnnserve.importers.reader_server`) on first use
  and talks to it over its stdin/stdout, one JSON line per request and reply;
* the server (single-threaded, with h5py and numpy preloaded) forks one child per file, so a child costs
  about 10 ms; the child caps its address space, runs the reader, and writes the `RawModel` (or the error)
  to a private temporary file in the `rawfile` format (no pickle: the parent treats it as untrusted);
* the server kills a child that outlives `Limits.timeout_s` and replies how the child ended.

The server exits when the importing process closes its stdin (or dies). Where `os.fork` does not exist the
reader runs in-process.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.importers.limits import Limits
from rnnserve.importers.rawfile import RawModel, read_raw, write_error, write_raw

Reader = Callable[[Path, Limits], RawModel]
_REPLY_GRACE_S = 30.0


def run_isolated(reader: Reader, path: Path, limits: Limits) -> RawModel:
    """`reader(path, limits)` computed in a forked child; its errors come back as the same error types."""
    if not hasattr(os, "fork"):
        return reader(path, limits)
    with tempfile.TemporaryDirectory(prefix="rnnserve-import-") as tmp:
        result = Path(tmp) / "raw"
        request = {
            "reader": f"{reader.__module__}:{reader.__qualname__}",
            "path": str(path),
            "limits": dataclasses.asdict(limits),
            "result": str(result),
        }
        reply = _server.call(request, limits.timeout_s + _REPLY_GRACE_S)
        if reply.get("status") == "timeout":
            raise ModelFileError(
                f"reading {path.name} took more than {limits.timeout_s:g} s; refusing it (damaged or hostile file?)"
            )
        if reply.get("status") != "exited" or reply.get("code") != 0 or not result.is_file():
            raise ModelFileError(
                f"reading {path.name} crashed the reader ({reply.get('status')}, code {reply.get('code')}); the file "
                "is damaged, hostile or needs more memory than allowed"
            )
        raw = read_raw(result, limits, path.name)
    if isinstance(raw, tuple):
        message, unsupported = raw
        raise (UnsupportedLayer if unsupported else ModelFileError)(message)
    return raw


# ---- the importing process's side ------------------------------------------------------------------------------


class _ServerClient:
    """The reader server of this process: started on first use, restarted if it died, one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._owner = os.getpid()  # a forked copy of this process must not share the server's pipes

    def call(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                ready, _, _ = select.select([process.stdout], [], [], timeout_s)
                line = process.stdout.readline() if ready else ""
            except OSError:
                line = ""
            if not line:
                self._stop()
                return {"status": "server-lost", "code": None}
            reply = json.loads(line)
            return reply if isinstance(reply, dict) else {"status": "server-lost", "code": None}

    def _running(self) -> subprocess.Popen[str]:
        if self._owner != os.getpid():
            self._process, self._owner = None, os.getpid()
        if self._process is not None and self._process.poll() is not None:
            self._stop()  # it died: close its pipes before a new one starts
        if self._process is None:
            package_root = str(Path(__file__).resolve().parents[2])
            path = os.environ.get("PYTHONPATH")
            env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
            self._process = subprocess.Popen(
                [sys.executable, "-m", "rnnserve.importers.reader_server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):  # a dead server's pipe: nothing left to flush to
                process.stdin.close()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def close(self) -> None:
        with self._lock:
            self._stop()


_server = _ServerClient()
atexit.register(_server.close)


# ---- the reader server -------------------------------------------------------------------------------------------


def serve(requests: TextIO, replies: TextIO) -> None:
    """Answer each request line with how its forked child ended: `{"status": "exited"|"killed"|"timeout", ...}`."""
    for line in requests:
        request = json.loads(line)
        limits = Limits(**request["limits"])
        pid = os.fork()
        if pid == 0:
            _child(request, limits)
        replies.write(json.dumps(_wait(pid, limits.timeout_s)) + "\n")
        replies.flush()


def _wait(pid: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFEXITED(status):
                return {"status": "exited", "code": os.WEXITSTATUS(status)}
            return {"status": "killed", "code": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"status": "timeout", "code": None}
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _child(request: dict[str, Any], limits: Limits) -> None:
    """Forked child: cap memory, read, write the result (or the error) to the result file, and exit."""
    result = Path(request["result"])
    code = 0
    try:
        _cap_memory(limits)
        module, _, name = request["reader"].partition(":")
        reader = getattr(sys.modules[module], name)
        write_raw(reader(Path(request["path"]), limits), result)
    except ModelFileError as exc:
        write_error(exc.detail, isinstance(exc, UnsupportedLayer), result)
    except MemoryError:
        write_error(f"reading {Path(request['path']).name} needs more memory than allowed", False, result)
    except Exception as exc:  # noqa: BLE001 - a damaged file can make any library call fail
        write_error(f"cannot read {Path(request['path']).name}: {type(exc).__name__}: {exc}", False, result)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _cap_memory(limits: Limits) -> None:
    """Bound the child's address space: what it maps now plus room for the weights (Linux only)."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = mapped + limits.child_memory_bytes()
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
