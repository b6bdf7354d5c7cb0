"""Every shell and Python snippet of README.md and docs/API.md runs, against a real server (the bundled models, a
free port, gRPC on too), as a user would paste it: a snippet that fails fails this test.

* `python` blocks run in a fresh interpreter; `sh` blocks line by line in bash (continuations joined); in
  `console` blocks each `$ ` command runs and its output must match the text under it, where `...` stands for
  anything, timestamps and session ids for any timestamp and id (an id shown is then read as the one the server
  gave: a later command that names it names the real one).
* The server's address replaces `localhost:8000` / `127.0.0.1:8000` (and the gRPC port `8001`); `.venv/bin/` is
  this interpreter's. A command that starts a server (`rnnserve serve ...`) runs on a free port until it answers
  /readyz, then stops.
* A marker on the line before a fence changes that: `<!-- snippet: skip REASON -->` (not run, with a reason) or
  `<!-- snippet: setup COMMAND -->` (a shell command first, in the snippet's folder). Skipped snippets are counted
  and their reasons listed; skipping needs a reason.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from app_harness import ServerThread

from bench.redis_server import free_port
from rnnserve.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/API.md")
LANGUAGES = {"sh", "bash", "console", "python"}
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!-- snippet: (skip|setup) (.+?) -->\s*$")
BIN = Path(sys.executable).parent
SESSION_ID = r"[A-Za-z0-9_-]{32}"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?\+00:00"


@dataclass(frozen=True)
class Snippet:
    document: str
    line: int
    language: str
    code: str
    skip: str | None = None
    setup: str | None = None

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}:{self.language}"


def snippets() -> list[Snippet]:
    found: list[Snippet] = []
    for document in DOCUMENTS:
        lines = (ROOT / document).read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if fence is None:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            language = fence.group(1)
            if language in LANGUAGES:
                marker = MARKER.match(lines[i - 1]) if i else None
                found.append(
                    Snippet(
                        document,
                        i + 1,
                        "sh" if language == "bash" else language,
                        "\n".join(lines[i + 1 : end]) + "\n",
                        skip=marker.group(2) if marker and marker.group(1) == "skip" else None,
                        setup=marker.group(2) if marker and marker.group(1) == "setup" else None,
                    )
                )
            i = end + 1
    return found


SNIPPETS = snippets()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    running = ServerThread(Settings(models=ROOT / "models", grpc_port=free_port())).start()
    yield running
    running.stop()


def substitute(code: str, server: ServerThread) -> str:
    address = server.address
    grpc = f"127.0.0.1:{server.settings.grpc_port}"
    code = code.replace("http://127.0.0.1:8000", f"http://{address}").replace("http://localhost:8000", server.url)
    code = code.replace("localhost:8000", address).replace("127.0.0.1:8000", address)
    code = code.replace("localhost:8001", grpc).replace("127.0.0.1:8001", grpc)
    return code.replace(".venv/bin/", f"{BIN}/")


def environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["ROOT"] = str(ROOT)
    env.pop("RNNSERVE_MODELS", None)
    return env


def run_sh(command: str, folder: Path) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=folder,
        env=environment(folder),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"`{command}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def start_and_stop(command: str, folder: Path) -> None:
    """A `rnnserve serve ...` line: started on a free port, it must answer /readyz 200 within 60 s."""
    port = free_port()
    command = re.sub(r"--grpc-port \d+", f"--grpc-port {free_port()}", command)
    args = [*shlex.split(command, comments=True), "--port", str(port)]
    log = folder / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(args, cwd=folder, env=environment(folder), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, f"`{command}` exited:\n{log.read_text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"`{command}` did not become ready in 60 s:\n{log.read_text()}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def shell_lines(code: str) -> list[str]:
    """The commands of an `sh` block: continuations joined, blank lines and comment lines dropped."""
    commands: list[str] = []
    pending = ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line)
    return commands


def is_server_start(command: str) -> bool:
    words = shlex.split(command, comments=True)
    return len(words) >= 2 and Path(words[0]).name == "rnnserve" and words[1] == "serve"


def run_shell(snippet: Snippet, code: str, folder: Path) -> None:
    for command in shell_lines(code):
        if is_server_start(command):
            start_and_stop(command, folder)
        else:
            run_sh(command, folder)


def console_steps(code: str) -> list[tuple[str, str]]:
    """(command, expected output) of each `$ ` line of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line.strip() and not line.startswith("#"):
            steps[-1][1].append(line)
    return [(command, "\n".join(out)) for command, out in steps]


def expected_pattern(text: str) -> str:
    """A regex of a documented output: `...` matches anything, ids and timestamps any id and timestamp."""
    parts = re.split(rf"(\.\.\.|{SESSION_ID}|{TIMESTAMP})", text)
    pattern = []
    for part in parts:
        if part == "...":
            pattern.append(".*?")
        elif re.fullmatch(SESSION_ID, part):
            pattern.append(f"(?P<id{len(pattern)}>{SESSION_ID})")
        elif re.fullmatch(TIMESTAMP, part):
            pattern.append(TIMESTAMP)
        else:
            pattern.append(re.escape(part))
    return "".join(pattern)


def run_console(code: str, folder: Path) -> None:
    ids: dict[str, str] = {}  # a documented id -> the one the server gave
    assignments = ""  # `$ NAME=value` lines, as an interactive shell keeps them
    for command, expected in console_steps(code):
        for documented, real in ids.items():
            command = command.replace(documented, real)
        if re.fullmatch(r"[A-Za-z_]\w*=\S*", command.strip()):
            assignments += command.strip() + "; "
            continue
        output = run_sh(assignments + command, folder).strip()
        if not expected:
            continue
        match = re.fullmatch(expected_pattern(expected.strip()), output, re.S)
        assert match, f"`{command}`\nexpected: {expected}\ngot:      {output}"
        shown = re.findall(SESSION_ID, expected)
        ids.update({doc: real for doc, real in zip(shown, match.groupdict().values(), strict=False) if real})


def run_python(code: str, folder: Path) -> None:
    script = folder / "snippet.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=folder, env=environment(folder), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the snippet failed:\n{code}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.name for s in SNIPPETS])
def test_the_snippet_runs(snippet: Snippet, server: ServerThread, tmp_path: Path) -> None:
    if snippet.skip is not None:
        pytest.skip(f"{snippet.name}: {snippet.skip}")
    (tmp_path / "models").symlink_to(ROOT / "models")
    if snippet.setup is not None:
        run_sh(substitute(snippet.setup, server), tmp_path)
    code = substitute(snippet.code, server)
    if snippet.language == "python":
        run_python(code, tmp_path)
    elif snippet.language == "console":
        run_console(code, tmp_path)
    else:
        run_shell(snippet, code, tmp_path)


def test_the_documents_have_snippets_and_every_skip_says_why() -> None:
    assert len(SNIPPETS) >= 10
    ran = [s for s in SNIPPETS if s.skip is None]
    assert len(ran) >= 8, [s.name for s in ran]
    assert all(len(s.skip) >= 10 for s in SNIPPETS if s.skip is not None)
