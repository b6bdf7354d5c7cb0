"""Cross-checks of the deployment files against each other and against the service (no network, no cluster).

The schema checks (kubernetes-validate, hadolint, compose config) run in deploy/check.sh; these tests check what
a schema cannot: that names, labels and ports agree across files, that every RNNSERVE_* variable is a setting and
every flag of `rnnserve serve` a setting's flag, by their current names (not an old name, which would warn).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rnnserve.settings import Settings, flag

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "deploy" / "Dockerfile.cuda"]

Doc = dict[str, Any]


def k8s_docs() -> list[Doc]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return k8s_docs()


def one(docs: list[Doc], kind: str, component: str = "server") -> Doc:
    found = [
        d for d in docs if d["kind"] == kind and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1, f"expected one {kind} for {component}, found {len(found)}"
    return found[0]


def containers(workload: Doc) -> list[Doc]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def resolve_port(port: int | str, container: Doc) -> int:
    """A port given by number or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in by_name, f"port name {port!r} is not one of {sorted(by_name)}"
    return int(by_name[port])


def settings_variables() -> set[str]:
    return {f"RNNSERVE_{name.upper()}" for name in Settings.model_fields}


def settings_flags() -> set[str]:
    return {flag(name) for name in Settings.model_fields} | {"--config"}


def rnnserve_variables(mapping: dict[str, Any]) -> set[str]:
    return {name for name in mapping if name.startswith("RNNSERVE_")}


# ---- Kubernetes -----------------------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)


def test_names_are_unique_per_kind(docs: list[Doc]) -> None:
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("component", ["server", "redis"])
def test_selectors_match_their_pod_labels(docs: list[Doc], component: str) -> None:
    kind = "Deployment" if component == "server" else "StatefulSet"
    workload = one(docs, kind, component)
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    selector = workload["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = one(docs, "Service", component)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    others = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and d is not workload]
    for other in others:  # the Service must not also pick up the other workload's pods
        assert not service["spec"]["selector"].items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_pdb_selects_the_server_pods_and_allows_a_disruption(docs: list[Doc]) -> None:
    deployment, pdb, hpa = (
        one(docs, "Deployment"),
        one(docs, "PodDisruptionBudget"),
        one(docs, "HorizontalPodAutoscaler"),
    )
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    assert deployment["spec"]["replicas"] > pdb["spec"]["minAvailable"]


def test_hpa_scales_the_deployment(docs: list[Doc]) -> None:
    deployment, hpa = one(docs, "Deployment"), one(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]


def test_container_port_service_target_and_probes_agree(docs: list[Doc]) -> None:
    deployment, service, config = one(docs, "Deployment"), one(docs, "Service"), one(docs, "ConfigMap")
    (container,) = containers(deployment)
    (port,) = container["ports"]
    (service_port,) = service["spec"]["ports"]
    assert resolve_port(service_port["targetPort"], container) == port["containerPort"]
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: resolve_port(p["port"], container) for kind, p in probes.items()} == dict.fromkeys(
        probes, port["containerPort"]
    )
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert int(config["data"]["RNNSERVE_PORT"]) == port["containerPort"]  # the server binds what the pod exposes


def test_redis_service_statefulset_and_store_url_agree(docs: list[Doc]) -> None:
    statefulset, service, config = (
        one(docs, "StatefulSet", "redis"),
        one(docs, "Service", "redis"),
        one(docs, "ConfigMap"),
    )
    (container,) = containers(statefulset)
    (service_port,) = service["spec"]["ports"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert resolve_port(service_port["targetPort"], container) == 6379
    url = re.fullmatch(r"redis://([^:/]+):(\d+)/(\d+)", config["data"]["RNNSERVE_STORE_URL"])
    assert url is not None
    assert (url.group(1), int(url.group(2))) == (service["metadata"]["name"], service_port["port"])
    assert container["args"][container["args"].index("--appendonly") + 1] == "yes"


@pytest.mark.parametrize(("kind", "component"), [("Deployment", "server"), ("StatefulSet", "redis")])
def test_every_container_has_requests_within_limits(docs: list[Doc], kind: str, component: str) -> None:
    for container in containers(one(docs, kind, component)):
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            assert quantity(resources["requests"][resource]) <= quantity(resources["limits"][resource])


def test_referenced_configmaps_and_secrets_exist(docs: list[Doc]) -> None:
    existing = {(d["kind"], d["metadata"]["name"]) for d in docs}
    refs = [
        (kind, source[key]["name"])
        for container in containers(one(docs, "Deployment"))
        for source in container.get("envFrom", [])
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret"))
        if key in source
    ]
    assert ("ConfigMap", "rnnserve-config") in refs and ("Secret", "rnnserve-secrets") in refs
    assert set(refs) <= existing


def test_configmap_and_secret_variables_are_settings(docs: list[Doc]) -> None:
    config, secret = one(docs, "ConfigMap"), one(docs, "Secret")
    names = set(config["data"]) | set(secret["stringData"])
    assert names == rnnserve_variables(names)
    assert names <= settings_variables()
    assert "RNNSERVE_API_KEY" in secret["stringData"] and "RNNSERVE_API_KEY" not in config["data"]


def test_server_runs_as_the_images_non_root_user(docs: list[Doc]) -> None:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))


# ---- Compose ------------------------------------------------------------------------------------------------------


def compose_services() -> dict[str, Doc]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def default_of(value: str) -> str:
    """`${NAME:-default}` -> default; anything else as it is."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
    return match.group(1) if match else str(value)


def replicas() -> Iterator[tuple[str, Doc]]:
    return ((name, s) for name, s in compose_services().items() if s.get("image", "").startswith("rnnserve"))


def test_compose_runs_two_replicas_on_distinct_ports() -> None:
    found = dict(replicas())
    assert len(found) == 2
    ports = []
    for service in found.values():
        command = service["command"]
        port = default_of(command[command.index("--port") + 1])
        assert default_of(service["environment"]["RNNSERVE_PORT"]) == port  # the healthcheck probes that port
        assert service["network_mode"] == "host"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        ports.append(port)
    assert len(set(ports)) == 2


def test_compose_replicas_share_the_aof_redis() -> None:
    services = compose_services()
    redis = services["redis"]
    redis_port = default_of(redis["command"][redis["command"].index("--port") + 1])
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    for _, service in replicas():
        url = service["environment"]["RNNSERVE_STORE_URL"]
        assert url == f"redis://127.0.0.1:${{RNNSERVE_REDIS_PORT:-{redis_port}}}/0"
        assert int(service["environment"]["RNNSERVE_WORKERS"]) > 1  # workers need the shared store
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_variables_are_settings() -> None:
    for _, service in replicas():
        assert rnnserve_variables(service["environment"]) <= settings_variables()


def test_compose_and_kubernetes_run_the_same_image_and_command(docs: list[Doc]) -> None:
    (container,) = containers(one(docs, "Deployment"))
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert container["image"].split(":")[0] == kustomization["images"][0]["name"] == "rnnserve"
    for _, service in replicas():
        assert service["image"].split(":")[0] == "rnnserve"
        assert service["command"][:2] == container["args"][:2] == ["rnnserve", "serve"]


def test_serve_commands_use_the_settings_flags(docs: list[Doc]) -> None:
    (container,) = containers(one(docs, "Deployment"))
    commands = [container["args"]] + [service["command"] for _, service in replicas()]
    for path in DOCKERFILES:
        commands += [json.loads(cmd) for cmd in re.findall(r"^CMD (\[.*\])$", path.read_text(), re.M)]
    commands += [
        line.split() for line in re.findall(r"rnnserve serve[^\n)]*", (ROOT / "deploy" / "check.sh").read_text())
    ]
    assert len(commands) >= 5
    for command in commands:
        assert command[:2] == ["rnnserve", "serve"]
        assert {arg for arg in command if arg.startswith("--")} <= settings_flags(), command


# ---- Dockerfiles --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_serves_on_the_port_kubernetes_probes(path: Path, docs: list[Doc]) -> None:
    text = path.read_text()
    (container,) = containers(one(docs, "Deployment"))
    port = container["ports"][0]["containerPort"]
    assert re.search(rf"^EXPOSE {port}$", text, re.M)
    assert re.search(rf"RNNSERVE_PORT={port}\b", text)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert re.search(r'^CMD \["rnnserve", "serve", "--host", "0.0.0.0"\]$', text, re.M)
    assert re.search(r"^USER \d+:\d+$", text, re.M)
    assert set(re.findall(r"\b(RNNSERVE_\w+)=", text)) <= settings_variables()
    assert not re.search(r"RUN --mount|<<|^# syntax=", text, re.M)  # classic builder only


def test_cpu_image_installs_dependencies_before_the_source() -> None:
    lines = [line.split()[0:2] for line in (ROOT / "Dockerfile").read_text().splitlines() if line[:1].isupper()]
    order = [" ".join(line) for line in lines]
    assert order.index("FROM python:3.11-slim") == 0
    assert order.index("COPY pyproject.toml") < order.index("COPY service")


def test_dockerignore_keeps_what_the_images_copy() -> None:
    kept = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    copied = set()
    for path in DOCKERFILES:
        copied |= set(re.findall(r"^COPY (\S+)", path.read_text(), re.M))
    assert {c.rstrip("/") for c in copied} <= kept


# ---- helpers ------------------------------------------------------------------------------------------------------

_UNITS = {"": 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("500m", "1Gi", 2) as a number."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match is not None and match.group(2) in _UNITS, f"unknown quantity {value!r}"
    return float(match.group(1)) * _UNITS[match.group(2)]
