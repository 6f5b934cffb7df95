"""The release workflow and its steps, run locally.

The workflow (.github/workflows/release.yml) only wires up scripts/release/*.sh: build,
scan, push, migrate, deploy, smoke test, and roll back when deploying or the smoke test
fails. Here the steps run as an operator would run them on a laptop: the cluster and
registry steps with DRY_RUN=1 (their commands, in order, on the manifests kustomize
renders with the pushed image), the scan for real (hadolint, checkov), the migration with
TARGET=local against a real database, and the smoke test against a real `vocalis serve`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
SCRIPTS = ROOT / "scripts" / "release"
BIN = Path(sys.executable).parent
STEPS = ["build", "scan", "push", "migrate", "deploy", "smoke", "rollback"]
DIGEST = "sha256:" + "ab" * 32


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _steps() -> list[dict[str, Any]]:
    (job,) = _workflow()["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def _script(step: dict[str, Any]) -> str | None:
    match = re.fullmatch(r"scripts/release/(\w+)\.sh", str(step.get("run", "")).strip())
    return match.group(1) if match else None


def test_the_workflow_runs_the_steps_in_order_each_a_local_script() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["v*"] and "workflow_dispatch" in triggers
    ordered = [name for name in (_script(step) for step in _steps()) if name in STEPS]
    assert ordered == STEPS
    for step in _steps():
        name = _script(step)
        if name is not None:
            assert step["id"] == name
            assert os.access(SCRIPTS / f"{name}.sh", os.X_OK), name
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_rollback_runs_only_when_deploying_or_the_smoke_test_failed() -> None:
    (rollback,) = [step for step in _steps() if _script(step) == "rollback"]
    condition = rollback["if"]
    assert "failure()" in condition
    assert "steps.deploy.outcome == 'failure'" in condition
    assert "steps.smoke.outcome == 'failure'" in condition
    (scan,) = [step for step in _steps() if _script(step) == "scan"]
    assert scan["env"]["REQUIRE_IMAGE_SCAN"] == "1"  # CI never skips the image scan


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_every_script_parses(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RELEASE_ENV": str(tmp_path / "release.env"),
        "IMAGE": "registry.example.com/vocalis",
        "TAG": "v1.2.3",
        "TMPDIR": str(tmp_path),
        **extra,
    }


def _step(name: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / f"{name}.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


def _commands(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def _deployments() -> list[str]:
    names = []
    for path in (ROOT / "deploy" / "k8s" / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                names.append(doc["metadata"]["name"])
    return sorted(names)


def test_the_pipeline_dry_run_builds_pushes_migrates_then_rolls_out(tmp_path: Path) -> None:
    env = _env(tmp_path, DRY_RUN="1")
    build = _commands(_step("build", env))
    assert (
        build[0].startswith("docker build -f ")
        and "-t registry.example.com/vocalis:v1.2.3" in build[0]
    )
    assert _commands(_step("push", env)) == ["docker push registry.example.com/vocalis:v1.2.3"]
    migrate = _commands(_step("migrate", env))
    assert migrate[0] == "kubectl -n vocalis delete job vocalis-migrate --ignore-not-found"
    assert "-l app.kubernetes.io/component in (config,migrate)" in migrate[1]
    assert migrate[2].startswith(
        "kubectl -n vocalis wait --for=condition=complete job/vocalis-migrate"
    )
    deploy = _commands(_step("deploy", env))
    assert deploy[0].startswith("kubectl apply -f ")
    rolled = [c.split()[5].removeprefix("deployment/") for c in deploy[1:]]
    assert all(c.split()[4] == "status" for c in deploy[1:])
    assert sorted(rolled) == _deployments()
    rollback = _commands(_step("rollback", env))
    undone = [c.split()[5].removeprefix("deployment/") for c in rollback if " undo " in c]
    assert sorted(undone) == _deployments()
    assert not [
        p for p in (ROOT / "deploy/k8s/overlays").iterdir() if p.name.startswith(".release")
    ]


def test_the_release_deploys_the_pushed_image_by_digest(tmp_path: Path) -> None:
    ref = f"registry.example.com/vocalis@{DIGEST}"
    result = subprocess.run(
        ["bash", "-c", f". {SCRIPTS / 'lib.sh'} && render_manifests"],
        cwd=ROOT,
        env=_env(tmp_path, IMAGE_REF=ref),
        capture_output=True,
        text=True,
        check=True,
    )
    rendered = [d for d in yaml.safe_load_all(Path(result.stdout.strip()).read_text()) if d]
    images = {
        container["image"]
        for obj in rendered
        for container in obj.get("spec", {})
        .get("template", {})
        .get("spec", {})
        .get("containers", [])
    }
    assert images == {ref}
    kinds = {obj["kind"] for obj in rendered}
    assert {"Deployment", "Job", "Ingress", "ScaledObject"} <= kinds


def test_the_scan_step_passes_on_the_repository(tmp_path: Path) -> None:
    result = _step("scan", _env(tmp_path), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scan passed" in result.stderr


def test_ci_refuses_to_skip_the_image_scan(tmp_path: Path) -> None:
    env = _env(tmp_path, REQUIRE_IMAGE_SCAN="1", PATH=f"{BIN}:/usr/bin:/bin")
    result = _step("scan", env, check=False)
    assert result.returncode != 0 and "REQUIRE_IMAGE_SCAN=1" in result.stderr


# --- migrate and smoke test against a real server ----------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Migrate with the release's step (TARGET=local), then `vocalis serve`."""
    port = _free_port()
    env = _env(
        tmp_path,
        TARGET="local",
        VOCALIS_ENV="test",
        VOCALIS_DATA_DIR=str(tmp_path / "data"),
        VOCALIS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/vocalis.db",
        VOCALIS_REDIS_URL=redis_url,
        VOCALIS_PORT=str(port),
        VOCALIS_HOST="127.0.0.1",
    )
    migrated = _step("migrate", env)
    assert _commands(migrated)[0].endswith("vocalis migrate")
    created = subprocess.run(
        [str(BIN / "vocalis"), "orgs", "create", "Smoke", "--owner-email", "ops@smoke.test"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.split("VOCALIS_API_KEY=", 1)[1].strip()
    server = subprocess.Popen(
        [str(BIN / "vocalis"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield base, {**env, "SMOKE_API_KEY": key}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_migrate_and_smoke_test_a_real_server(served: tuple[str, dict[str, str]]) -> None:
    base, env = served
    result = _step("smoke", {**env, "BASE_URL": base}, check=False)
    assert result.returncode == 0, result.stderr
    for check in ("healthz", "readyz", "metrics", "authenticated GET /v1/org"):
        assert f"ok: {check}" in result.stderr
    # A wrong key fails the smoke test; so does a server that is not there.
    wrong = _step("smoke", {**env, "BASE_URL": base, "SMOKE_API_KEY": "vk_wrong"}, check=False)
    assert wrong.returncode != 0 and "FAILED: authenticated GET /v1/org" in wrong.stderr
    gone = _step(
        "smoke",
        {**env, "BASE_URL": f"http://127.0.0.1:{_free_port()}", "SMOKE_TIMEOUT_S": "2"},
        check=False,
    )
    assert gone.returncode != 0 and "is not healthy and ready" in gone.stderr
