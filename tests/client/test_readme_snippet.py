"""The README's "Python client" snippet runs as written (against a test server in place of 127.0.0.1:8000)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from app_harness import ServerThread

README = Path(__file__).resolve().parents[2] / "README.md"


def client_snippet() -> str:
    section = README.read_text().split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the Python client section has one Python snippet"
    return str(blocks[0])


def test_the_readme_client_snippet_runs(server: ServerThread) -> None:
    code = client_snippet()
    assert "http://127.0.0.1:8000" in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:8000", server.url), str(README), "exec"), {})  # noqa: S102
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["13", "15", "True"], lines
