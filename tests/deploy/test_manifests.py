"""The deployment files stay consistent with the code (no Docker engine or cluster needed).

Every manifest parses; every Deployment is probed (HTTP probes on `/healthz` and `/readyz`);
the API rolls out without losing capacity; every pod runs as non-root on a read-only root
filesystem; every `VOCALIS_*` name is a setting (or a declared secret path); every command
given to the image is a `vocalis` command with options it has.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from vocalis.adapters.env_secrets import PREFIX as SECRET_ENV_PREFIX
from vocalis.adapters.env_secrets import env_name
from vocalis.cli import app as cli_app
from vocalis.core import migrate
from vocalis.secrets.registry import SECRET_PATHS
from vocalis.settings import Settings
from vocalis.workers.celery_app import QUEUES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE = "vocalis"  # the image name the k8s base uses (set by kustomize `images:`)
SITE_PACKAGES = "/opt/vocalis/lib/python3.11/site-packages"  # the image's virtualenv
TEMPLATES = {"secret.template.yaml", "network-policy-egress.example.yaml"}
ENV_NAME = re.compile(r"\bVOCALIS_[A-Z0-9_]*[A-Z0-9]\b")

YAML_FILES = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.rglob("*.yaml"))
        for doc in _documents(path)
        if "kind" in doc and doc["kind"] not in ("Kustomization", "Component")
    ]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in _k8s_objects() if obj["kind"] == kind]


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _deployments() -> dict[str, dict[str, Any]]:
    return {_name(d): d for d in _of_kind("Deployment")}


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in _of_kind("Deployment") + _of_kind("Job"):
        yield f"{obj['kind']}/{_name(obj)}", obj["spec"]["template"]["spec"]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _compose_vocalis_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _compose()["services"].items()
        if "build" in service and service["build"]["dockerfile"] == "deploy/Dockerfile"
    }


# --- parsing ----------------------------------------------------------------------------
def test_the_deploy_folder_has_the_expected_files() -> None:
    assert DOCKERFILE.exists() and COMPOSE.exists() and (DEPLOY / "README.md").exists()
    assert (K8S / "base" / "kustomization.yaml").exists()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_parses(path: Path) -> None:
    assert _documents(path), f"{path} holds no YAML document"


@pytest.mark.parametrize("path", sorted(K8S.rglob("kustomization.yaml")), ids=str)
def test_every_kustomization_resource_exists(path: Path) -> None:
    for resource in _documents(path)[0]["resources"]:
        assert (path.parent / resource).exists(), f"{path}: {resource} does not exist"


def test_every_base_manifest_is_listed_in_the_kustomization_or_is_a_template() -> None:
    base = K8S / "base"
    listed = set(_documents(base / "kustomization.yaml")[0]["resources"])
    files = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    assert files - listed == TEMPLATES


# --- probes and rollout -------------------------------------------------------------------
def _http_path(probe: dict[str, Any]) -> str | None:
    return probe.get("httpGet", {}).get("path")


@pytest.mark.parametrize("name", sorted(_deployments()))
def test_every_deployment_has_liveness_and_readiness_probes(name: str) -> None:
    for container in _deployments()[name]["spec"]["template"]["spec"]["containers"]:
        liveness, readiness = container.get("livenessProbe"), container.get("readinessProbe")
        assert liveness and readiness, f"{name}/{container['name']} lacks a probe"
        # Beat serves no HTTP and probes with exec; everything else probes over HTTP.
        if "exec" not in liveness:
            assert _http_path(liveness) == "/healthz"
        if "exec" not in readiness:
            assert _http_path(readiness) == "/readyz"


def test_processes_with_a_port_probe_over_http() -> None:
    for name, deployment in _deployments().items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container.get("ports"):
                assert _http_path(container["livenessProbe"]) == "/healthz", name
                assert _http_path(container["readinessProbe"]) == "/readyz", name


def test_the_api_rolls_out_without_losing_capacity() -> None:
    spec = _deployments()["vocalis-api"]["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_the_api_drains_connections_before_it_stops() -> None:
    pod = _deployments()["vocalis-api"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) < pod["terminationGracePeriodSeconds"]
    assert _http_path(container["startupProbe"]) == "/healthz"


def test_beat_runs_exactly_once() -> None:
    spec = _deployments()["vocalis-beat"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def _worker_args() -> dict[str, list[str]]:
    return {
        name: d["spec"]["template"]["spec"]["containers"][0]["args"]
        for name, d in _deployments().items()
        if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "worker"
    }


def test_the_worker_deployments_consume_every_queue_exactly_once() -> None:
    consumed = [
        queue
        for args in _worker_args().values()
        for arg in args
        if arg.startswith("--queues=")
        for queue in arg.removeprefix("--queues=").split(",")
    ]
    assert sorted(consumed) == sorted(QUEUES)


def test_workers_get_time_to_finish_late_acknowledged_tasks() -> None:
    for name in _worker_args():
        pod = _deployments()[name]["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= 300, name


def test_autoscalers_and_budgets_point_at_existing_deployments() -> None:
    deployments = _deployments()
    for hpa in _of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for pdb in _of_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
        assert any(selector.items() <= pod_labels.items() for pod_labels in labels)


def test_the_service_reaches_the_api_port() -> None:
    (service,) = _of_kind("Service")
    api = _deployments()["vocalis-api"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= api["metadata"]["labels"].items()
    ports = {p["name"] for p in api["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


# --- non-root -------------------------------------------------------------------------
@pytest.mark.parametrize("workload", [name for name, _ in _pod_specs()])
def test_pods_run_as_non_root_on_a_read_only_root_filesystem(workload: str) -> None:
    pod = dict(_pod_specs())[workload]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context.get("runAsUser", 10001) != 0


def test_compose_runs_vocalis_read_only_and_never_as_root() -> None:
    for name, service in _compose_vocalis_services().items():
        assert str(service.get("user", "10001")).split(":")[0] not in {"0", "root"}, name
        assert service["read_only"] is True, name


def _final_stage() -> list[tuple[str, str]]:
    """The Dockerfile's last stage as (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    instructions = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def _instruction(op: str) -> str:
    values = [args for name, args in _final_stage() if name == op]
    assert values, f"the final stage has no {op}"
    return values[-1]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user = _instruction("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_the_final_image_carries_no_build_tools() -> None:
    assert _final_stage()[0][1].startswith("${PYTHON_IMAGE}")
    body = " ".join(args for _, args in _final_stage())
    for tool in ("build-essential", "gcc", "pip wheel", "pip install"):
        assert tool not in body
    assert any(args.startswith("--from=build ") for op, args in _final_stage() if op == "COPY")


def test_the_base_image_is_python_311_slim() -> None:
    first = DOCKERFILE.read_text().split("ARG PYTHON_IMAGE=", 1)[1].split()[0]
    assert first == "python:3.11-slim"


def test_the_healthcheck_probes_healthz() -> None:
    assert "/healthz" in _instruction("HEALTHCHECK")


def test_migrations_are_copied_where_the_code_looks_for_them() -> None:
    relative = os.path.relpath(migrate.MIGRATIONS_DIR, Path(migrate.__file__).parent)
    expected = os.path.normpath(f"{SITE_PACKAGES}/vocalis/core/{relative}")
    copies = [args.split() for op, args in _final_stage() if op == "COPY"]
    assert ["migrations", expected] in copies


# --- names shared with the code -----------------------------------------------------------
def _deploy_texts() -> dict[str, str]:
    paths = [*YAML_FILES, DOCKERFILE, DEPLOY / "README.md"]
    return {str(p.relative_to(DEPLOY)): p.read_text() for p in paths}


def test_every_vocalis_variable_is_a_setting_or_a_declared_secret() -> None:
    secret_envs = {env_name(p) for p in SECRET_PATHS if "<" not in p}
    unknown = set()
    for source, text in _deploy_texts().items():
        for name in set(ENV_NAME.findall(text)):
            if name.startswith(SECRET_ENV_PREFIX):
                known = name in secret_envs
            else:
                known = name.removeprefix("VOCALIS_").lower() in Settings.model_fields
            if not known:
                unknown.add(f"{source}: {name}")
    assert sorted(unknown) == []


def _valid_settings(values: dict[str, Any]) -> Settings:
    fields = {
        key.removeprefix("VOCALIS_").lower(): value
        for key, value in values.items()
        if not key.startswith(SECRET_ENV_PREFIX) and "${" not in str(value)
    }
    return Settings(_env_file=None, **fields)


def test_the_configmap_values_are_valid_settings() -> None:
    (config,) = [c for c in _of_kind("ConfigMap") if _name(c) == "vocalis-config"]
    settings = _valid_settings(config["data"])
    assert settings.env == "production" and settings.secrets_backend == "vault"


def test_the_compose_environment_is_valid_settings() -> None:
    for service in _compose_vocalis_services().values():
        assert _valid_settings(service["environment"]).env == "production"


def _cli_commands() -> dict[str, Any]:
    """The `vocalis` sub-commands by name (typer's own click types)."""
    group: Any = typer.main.get_command(cli_app)
    return dict(group.commands)


def _check_invocation(args: list[str]) -> None:
    commands = _cli_commands()
    assert args and args[0] in commands, f"`vocalis {' '.join(args)}`: no such command"
    options = {opt for param in commands[args[0]].params for opt in param.opts}
    for arg in args[1:]:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in options, f"`vocalis {args[0]}` has no {arg}"


def test_the_image_entrypoint_is_the_vocalis_cli_and_its_default_command_exists() -> None:
    assert yaml.safe_load(_instruction("ENTRYPOINT")) == ["vocalis"]
    command = yaml.safe_load(_instruction("CMD"))
    assert command == ["serve"]
    _check_invocation(command)


def test_every_k8s_container_runs_an_existing_vocalis_command() -> None:
    for name, pod in _pod_specs():
        for container in pod["containers"]:
            assert container["image"] == IMAGE, name
            assert "command" not in container, f"{name} must keep the image entrypoint"
            _check_invocation(container["args"])


def test_every_compose_service_runs_an_existing_vocalis_command() -> None:
    for service in _compose_vocalis_services().values():
        command = service["command"]
        _check_invocation(command if isinstance(command, list) else shlex.split(command))


def test_compose_starts_the_processes_after_migrating() -> None:
    services = _compose()["services"]
    for name in ("api", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
