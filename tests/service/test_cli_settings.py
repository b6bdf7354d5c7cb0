"""Settings from flags, RNNSERVE_* variables and a config file by one rule (aliases warn, unknown names are errors),
`rnnserve serve --help` and the README's table made from the class, and the `rnnserve` command line (serve,
export, inspect)."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import ValidationError
from service_client import close
from service_models import MODELS
from service_server import write_models

import rnnserve
from bench.redis_server import free_port
from rnnserve.cli import build_parser, main, settings_from
from rnnserve.export.package import read_package, write_package
from rnnserve.runtime.ort_model import OrtModel
from rnnserve.settings import (
    ALIASES,
    ENV_PREFIX,
    NOT_SETTINGS,
    SECTIONS,
    DeprecatedSettingWarning,
    Settings,
    SettingsError,
    flag,
    load_settings,
    markdown_table,
    sections,
    settings_environment,
    variable,
)

ROOT = Path(__file__).resolve().parents[2]
KERAS_FILE = ROOT / "tests" / "parity" / "fixtures" / "k3_lstm_return_state.keras"

# A value other than the default for every setting (a new field needs one here: the tests below then check its flag,
# its variable and its config key).
SAMPLES: dict[str, Any] = {
    "host": "0.0.0.0",
    "port": 9001,
    "grpc_port": 8001,
    "grpc_server": "grpcio",
    "workers": 2,
    "log_level": "debug",
    "log_format": "json",
    "access_log": "full",
    "access_log_interval_s": 5.0,
    "models": "/srv/models",
    "follow_model_links_out": True,
    "serve_partial": True,
    "provider": "auto",
    "intra_op_threads": 2,
    "inter_op_threads": 3,
    "executor": "direct",
    "executor_threads": 8,
    "max_batch_size": 64,
    "max_delay_ms": 0.5,
    "store_url": "redis://127.0.0.1:6390/1",
    "store_cache_mb": 8.0,
    "max_sessions": 50,
    "max_state_bytes": 2048,
    "default_ttl_s": 30.0,
    "max_ttl_s": 3600.0,
    "max_retry_reply_bytes": 4096,
    "max_body_bytes": 4096,
    "max_timesteps": 500,
    "max_request_batch": 16,
    "request_timeout_s": 12.5,
    "max_header_bytes": 8192,
    "max_headers": 50,
    "ws_idle_timeout_s": 90.0,
    "max_work": 5000,
    "max_reply_bytes": 65536,
    "large_work": 2048,
    "large_work_threads": 3,
    "api_key": "s3cret",
    "api_keys_file": "/etc/rnnserve/keys",
    "tenant_max_sessions": 20,
    "tenant_max_state_bytes": 65536,
    "cors_allow_origins": "https://app.example.com,https://*.example.org",  # a list: comma-separated
    "cors_allow_methods": "GET,POST",
    "cors_allow_headers": "Authorization,Content-Type",
    "cors_expose_headers": "Retry-After",
    "cors_allow_credentials": True,
    "cors_max_age_s": 60,
}


@pytest.fixture(autouse=True)
def no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment without RNNSERVE_* settings (the tool variables may stay)."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX) and key not in NOT_SETTINGS:
            monkeypatch.delenv(key)


def value_of(settings: Settings, name: str) -> Any:
    value = getattr(settings, name)
    if name == "api_key":
        return value and value.get_secret_value()
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value) if isinstance(value, Path) else value


def toml(values: dict[str, Any]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def serve_args(*argv: str) -> Any:
    return build_parser().parse_args(["serve", *argv])


@pytest.fixture
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedSettingWarning)
        yield


# ---- one rule: --x-y, RNNSERVE_X_Y, x_y ---------------------------------------------------------------------------


def test_every_setting_has_a_sample() -> None:
    assert set(SAMPLES) == set(Settings.model_fields)
    for name, value in SAMPLES.items():
        assert value_of(Settings(), name) != value, f"the sample of {name} is its default"


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_setting_is_a_flag(name: str, no_warnings: None) -> None:
    value = SAMPLES[name]
    given = [f"--{name.replace('_', '-')}"] + ([] if value is True else [str(value)])  # a boolean is a bare flag
    settings = settings_from(serve_args(*given))
    assert value_of(settings, name) == SAMPLES[name]


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_setting_is_a_variable(name: str, monkeypatch: pytest.MonkeyPatch, no_warnings: None) -> None:
    monkeypatch.setenv(f"RNNSERVE_{name.upper()}", str(SAMPLES[name]))
    assert value_of(Settings(), name) == SAMPLES[name]
    assert value_of(load_settings(), name) == SAMPLES[name]


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_setting_is_a_config_key(name: str, tmp_path: Path, no_warnings: None) -> None:
    config = tmp_path / "rnnserve.toml"
    config.write_text(toml({name: SAMPLES[name]}))
    assert value_of(settings_from(serve_args("--config", str(config))), name) == SAMPLES[name]


def test_the_help_names_each_flag_with_its_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in Settings.model_fields:
        assert re.search(rf"{flag(name)} \S+.*? Env: {variable(name)}\.", text), name
    assert "--max-timesteps N" in text
    assert "Flags win over RNNSERVE_* variables, which win over the config file, which wins over the defaults" in text


def test_help_groups_the_flags_by_the_sections_of_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    headings = re.findall(r"^(\w+) settings:$", out, re.M)
    assert headings == ["process", "logging", "models", "execution", "sessions", "limits", "security"]
    for section, names in sections().items():
        block = out.split(f"\n{section} settings:\n")[1].split("\n\n")[0]
        flags = re.findall(r"^  (--[\w-]+)", block, re.M)
        assert flags == [flag(name) for name in names], section
    for alias in ALIASES:
        assert not re.search(rf"^  {flag(alias)}\s", out, re.M)  # old names are not offered, only mentioned


def test_sections_follow_the_comments_in_the_settings_class() -> None:
    found: dict[str, str] = {}
    pending = None
    for line in inspect.getsource(Settings).splitlines():
        heading = re.fullmatch(r"    # ---- (\w+) -+", line)
        field = re.match(r"    (\w+): ", line)
        if heading:
            pending = heading.group(1)
        elif field and pending:
            found[field.group(1)] = pending
            pending = None
    assert found == SECTIONS
    assert [name for names in sections().values() for name in names] == list(Settings.model_fields)


# ---- old names, unknown names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alias", "name"), list(ALIASES.items()))
def test_an_old_flag_still_works_and_warns(alias: str, name: str) -> None:
    with pytest.warns(DeprecatedSettingWarning, match=f"{flag(alias)} is deprecated, use {flag(name)}$"):
        settings = settings_from(serve_args(flag(alias), str(SAMPLES[name])))
    assert value_of(settings, name) == SAMPLES[name]


@pytest.mark.parametrize(("alias", "name"), list(ALIASES.items()))
def test_an_old_variable_still_works_and_warns(alias: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable(alias), str(SAMPLES[name]))
    with pytest.warns(DeprecatedSettingWarning, match=f"{variable(alias)} is deprecated, use {variable(name)}$"):
        settings = Settings()
    assert value_of(settings, name) == SAMPLES[name]


@pytest.mark.parametrize(("alias", "name"), list(ALIASES.items()))
def test_an_old_config_key_still_works_and_warns(alias: str, name: str, tmp_path: Path) -> None:
    config = tmp_path / "rnnserve.toml"
    config.write_text(toml({alias: SAMPLES[name]}))
    with pytest.warns(DeprecatedSettingWarning, match=f"{alias} is deprecated, use {name}$"):
        settings = load_settings(config=config)
    assert value_of(settings, name) == SAMPLES[name]


def test_serve_prints_the_warning_of_an_old_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--models", str(tmp_path / "missing"), "--store", "memory://", "--threads", "2"]) == 2
    err = capsys.readouterr().err
    assert "rnnserve serve: warning: command line: --store is deprecated, use --store-url" in err
    assert "rnnserve serve: warning: command line: --threads is deprecated, use --executor-threads" in err


def test_an_old_and_a_new_name_that_disagree_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(DeprecatedSettingWarning), pytest.raises(SettingsError, match="--store and --store-url"):
        settings_from(serve_args("--store", "memory://", "--store-url", "redis://127.0.0.1:6379/0"))
    monkeypatch.setenv("RNNSERVE_THREADS", "3")
    monkeypatch.setenv("RNNSERVE_EXECUTOR_THREADS", "5")
    with pytest.warns(DeprecatedSettingWarning), pytest.raises(SettingsError, match="keep RNNSERVE_EXECUTOR_THREADS"):
        Settings()


@pytest.mark.parametrize(
    ("given", "suggested"),
    [
        ("RNNSERVE_STORE_URI", "RNNSERVE_STORE_URL"),
        ("RNNSERVE_MAX_TIMESTEP", "RNNSERVE_MAX_TIMESTEPS"),
        ("RNNSERVE_APIKEY", "RNNSERVE_API_KEY"),
        ("RNNSERVE_SESION_TTL", "RNNSERVE_DEFAULT_TTL_S"),  # closest to an old name: the new name is suggested
        ("RNNSERVE_port", "RNNSERVE_PORT"),
    ],
)
def test_an_unknown_variable_stops_the_server_naming_the_closest_setting(
    given: str, suggested: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(given, "1")
    assert main(["serve", "--models", str(tmp_path)]) == 2
    assert f"environment: unknown setting {given}; did you mean {suggested}?" in capsys.readouterr().err
    with pytest.raises(SettingsError, match=suggested):
        Settings()


@pytest.mark.parametrize(
    ("given", "suggested"),
    [("--max-timestep", "--max-timesteps"), ("--store-uri=x", "--store-url"), ("--sesion-ttl", "--default-ttl-s")],
)
def test_an_unknown_or_abbreviated_flag_names_the_closest_setting(
    given: str, suggested: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["serve", given, "1"])
    assert stop.value.code == 2
    assert f"unrecognized arguments: {given} 1; did you mean {suggested}?" in capsys.readouterr().err


def test_the_variables_of_the_tests_and_scripts_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NOT_SETTINGS:
        monkeypatch.setenv(name, "1")
    assert Settings().port == 8000


def test_every_rnnserve_name_in_the_repository_is_a_setting_an_alias_or_a_tool_variable() -> None:
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    known = (
        {variable(name) for name in [*Settings.model_fields, *ALIASES]}
        | NOT_SETTINGS
        | {"RNNSERVE_X_Y", "RNNSERVE_STORE_URI"}
    )  # README: the rule, and a typo
    unknown: dict[str, str] = {}
    for path in files.splitlines():
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for name in re.findall(r"\bRNNSERVE_[A-Z0-9_]*[A-Z0-9]\b", text):
            if name not in known and path != "tests/service/test_cli_settings.py":  # here: names made up on purpose
                unknown.setdefault(name, path)
    assert not unknown, f"not settings (add them to NOT_SETTINGS if tests or scripts read them): {unknown}"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('store_uri = "memory://"\n', "unknown setting store_uri; did you mean store_url?"),
        ("[sessions]\nmax_sessions = 3\n", "unknown setting sessions (settings are top-level keys, not tables)"),
        ("max_sessions = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_stops_the_server(
    text: str, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rnnserve.toml"
    config.write_text(text)
    assert main(["serve", "--models", str(tmp_path), "--config", str(config)]) == 2
    assert f"rnnserve serve: config file {config}: {error}" in capsys.readouterr().err


def test_a_missing_config_file_stops_the_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--models", str(tmp_path), "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: No such file or directory" in capsys.readouterr().err


def test_an_invalid_value_is_named_by_its_flag_and_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--models", str(tmp_path), "--port", "70000"]) == 2
    assert "--port / RNNSERVE_PORT: Input should be less than or equal to 65535 (got 70000)" in capsys.readouterr().err


# ---- precedence ---------------------------------------------------------------------------------------------------


def test_flags_win_over_variables_over_the_config_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "rnnserve.toml"
    config.write_text(toml({"port": 9001, "max_sessions": 11, "max_timesteps": 12}))
    monkeypatch.setenv("RNNSERVE_PORT", "9002")
    monkeypatch.setenv("RNNSERVE_MAX_SESSIONS", "21")
    settings = settings_from(serve_args("--config", str(config), "--port", "9003"))
    assert settings.port == 9003  # flag > variable > file
    assert settings.max_sessions == 21  # variable > file
    assert settings.max_timesteps == 12  # file > default
    assert settings.max_body_bytes == 16 * 1024 * 1024  # default


def test_worker_processes_read_back_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rnnserve.toml"
    config.write_text(toml(SAMPLES))
    settings = load_settings(config=config)
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    assert Settings().model_dump() == settings.model_dump()
    assert Settings().api_key == settings.api_key


# ---- the README -----------------------------------------------------------------------------------------------------


def test_the_readme_settings_table_is_made_from_the_class() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- settings table: .*? -->\n(.*?)<!-- end of settings table -->", readme, re.S)
    assert found, "README.md has no settings table between its markers"
    assert found.group(1) == markdown_table(), "regenerate it: python -m rnnserve.settings"
    for name in Settings.model_fields:
        assert f"| `{flag(name)}` | `{variable(name)}` |" in found.group(1)


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RNNSERVE_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert (settings.host, settings.port, settings.store_url) == ("127.0.0.1", 8000, "memory://")
    assert settings.models == Path(rnnserve.__file__).resolve().parents[2] / "models"
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert settings.api_key is None


def test_environment_variables_and_then_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNSERVE_PORT", "9100")
    monkeypatch.setenv("RNNSERVE_MAX_SESSIONS", "7")
    monkeypatch.setenv("RNNSERVE_API_KEY", "")  # an empty key (as a blank Secret gives) means no auth
    settings = Settings(port=9200)
    assert (settings.port, settings.max_sessions, settings.api_key) == (9200, 7, None)


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 70000},
        {"store_url": "mysql://x"},
        {"default_ttl_s": 100.0, "max_ttl_s": 10.0},
        {"max_sessions": 0},
        {"cors_allow_origins": "https://app.example.com/"},  # an origin has no path: a browser never sends this one
        {"cors_allow_origins": "app.example.com"},
        {"cors_allow_origins": "*,https://app.example.com"},
        {"cors_allow_origins": "*", "cors_allow_credentials": True},  # credentials need listed origins
        {"cors_allow_headers": "X Shape"},
        {"cors_allow_methods": "*,GET"},
    ],
)
def test_invalid_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_cors_lists_are_comma_separated_text_or_toml_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origins = ("https://app.example.com", "http://localhost:5173", "https://*.example.org")
    config = tmp_path / "rnnserve.toml"
    config.write_text(f"cors_allow_origins = {json.dumps(list(origins))}\ncors_allow_methods = ['get', 'post']\n")
    from_file = load_settings(config=config)
    assert from_file.cors_allow_origins == origins
    assert from_file.cors_allow_methods == ("GET", "POST")
    monkeypatch.setenv(
        "RNNSERVE_CORS_ALLOW_ORIGINS", " https://App.Example.com ,http://localhost:5173,, https://*.example.org"
    )
    assert Settings().cors_allow_origins == origins  # blanks skipped, origins lower-cased as browsers send them
    assert Settings().cors_allow_methods == ("GET", "POST", "DELETE")


def test_api_keys_is_another_name_of_the_keys_file_flag(capsys: pytest.CaptureFixture[str], no_warnings: None) -> None:
    keys = Path("/etc/rnnserve/keys")
    assert settings_from(serve_args("--api-keys", str(keys))).api_keys_file == keys  # as the tenants' issue names it
    assert settings_from(serve_args("--api-keys-file", str(keys))).api_keys_file == keys
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--api-keys-file PATH, --api-keys PATH" in capsys.readouterr().out
    assert "Also `--api-keys`." in markdown_table()


def test_rnnserve_serve_runs_a_server_from_flags_environment_and_config_file(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models", ["gru"])
    port = free_port()
    config = tmp_path / "rnnserve.toml"
    config.write_text(toml({"models": str(models), "max_sessions": 5, "port": 1, "serve_partial": True}))
    env = {**os.environ, "RNNSERVE_MAX_SESSIONS": "1"}
    command = [sys.executable, "-m", "rnnserve", "serve", "--config", str(config), "--port", str(port)]
    command += ["--session-ttl", "30"]  # an old name: works, with a warning
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
            assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["broken", "gru"]
            assert client.post("/v1/sessions", json={"model": "gru"}).status_code == 201
            assert client.post("/v1/sessions", json={"model": "gru"}).status_code == 429  # RNNSERVE_MAX_SESSIONS
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Application shutdown complete" in output  # SIGTERM: a graceful stop (uvicorn then re-raises it)
    assert "model 'broken'" in output  # the failed load is logged
    assert "warning: command line: --session-ttl is deprecated, use --default-ttl-s" in output


def test_serve_refuses_a_missing_folder_and_workers_without_a_shared_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--models", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["serve", "--models", str(tmp_path), "--workers", "2"]) == 2
    assert "shared session store" in capsys.readouterr().err


def test_export_writes_a_package_that_computes_what_keras_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not KERAS_FILE.is_file():
        pytest.skip(f"{KERAS_FILE.name} is not there (the parity fixtures are being regenerated)")
    out = tmp_path / "lstm_pkg"
    assert main(["export", str(KERAS_FILE), "--out", str(out), "--no-unroll"]) == 0
    assert "wrote" in capsys.readouterr().out
    package = read_package(out)
    assert package.manifest["graph_form"] == "scan"

    keras = np.load(KERAS_FILE.with_suffix(".npz"))
    runner = OrtModel(package.spec, model_path=package.model_path, signature=package.signature)
    result = runner.run({"x": keras["in_x"]})
    for k, name in enumerate(o.name for o in package.signature.outputs):
        assert close(result.outputs[name], keras[f"out_{k}"])


def test_inspect_prints_the_signature_of_a_package_and_a_keras_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_package(MODELS["stacked"](), tmp_path / "stacked")
    assert main(["inspect", str(tmp_path / "stacked")]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["kind"] == "package"
    assert [s["name"] for s in described["signature"]["states"]] == ["lstm/h", "lstm/c", "gru/h"]
    assert described["manifest"]["signature"] == described["signature"]

    if KERAS_FILE.is_file():
        assert main(["inspect", str(KERAS_FILE)]) == 0
        keras = json.loads(capsys.readouterr().out)
        assert keras["kind"] == "keras" and keras["signature"]["states"]


def test_inspect_of_a_bad_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"nope")
    assert main(["inspect", str(bad)]) == 1
    assert "ModelFileError" in capsys.readouterr().err


def test_the_readme_config_file_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n")[1].split("\n## ")[0]
    (example,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    config = tmp_path / "rnnserve.toml"
    config.write_text(example)
    settings = load_settings(config=config)
    assert settings.store_url.startswith("redis://") and settings.workers == 2
