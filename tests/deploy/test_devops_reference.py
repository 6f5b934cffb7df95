"""Sections 9 and 11 generated from code (`docs/reference/devops.md`,
`docs/reference/threat-model.md`): the tables follow the files they are read from, and every
test the threat model names as proof of a mitigation exists."""

from __future__ import annotations

import pytest
import yaml

from vocalis.docs_gen.devops import (
    DOCKERFILE,
    THREATS,
    WORKFLOWS,
    devops,
    dockerfile_stages,
    manifests,
    missing_tests,
    threat_model,
)


@pytest.mark.parametrize("threat", THREATS, ids=[t.name for t in THREATS])
def test_every_mitigation_is_proven_by_tests_that_exist(threat: object) -> None:
    proven_by = threat.proven_by  # type: ignore[attr-defined]
    assert proven_by
    assert not missing_tests(proven_by)


def test_a_test_that_does_not_exist_is_caught() -> None:
    assert missing_tests(
        (
            "tests/api/test_auth_and_org.py::test_no_such_test",
            "tests/api/no_such_file.py",
            "tests/api/test_auth_and_org.py::test_expired_key_stops_working",
        )
    ) == ["tests/api/test_auth_and_org.py::test_no_such_test", "tests/api/no_such_file.py"]


def test_the_threat_model_links_every_test() -> None:
    page = threat_model()
    for threat in THREATS:
        assert threat.name in page
        for node in threat.proven_by:
            assert node.split("::")[0] in page


def test_the_pipeline_table_has_every_workflow_step_in_order() -> None:
    page = devops()
    for workflow in WORKFLOWS.glob("*.y*ml"):
        spec = yaml.safe_load(workflow.read_text())
        for job in spec["jobs"].values():
            names = [step.get("name", step.get("uses")) for step in job["steps"]]
            positions = [page.index(f"| {n} |") for n in names]
            assert positions == sorted(positions), names
    assert "scripts/release/rollback.sh" in page
    assert "rollout undo" in page


def test_the_dockerfile_stages_are_parsed() -> None:
    stages = {stage.name: stage for stage in dockerfile_stages()}
    froms = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")]
    assert len(stages) == len(froms)
    runtime = stages["runtime"]
    assert any(note.startswith("`USER 10001") for note in runtime.notes)
    assert "copies from `build`" in runtime.notes


def test_every_manifest_and_autoscaler_is_in_the_page() -> None:
    page = devops()
    objects = manifests()
    assert len(objects) > 10
    for _path, _comment, body in objects:
        name = body.get("metadata", {}).get("name")
        if name:
            assert f"`{name}`" in page
    scalers = [
        b for _p, _c, b in objects if b["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]
    assert scalers
    for body in scalers:
        spec = body["spec"]
        maximum = spec.get("maxReplicas", spec.get("maxReplicaCount"))
        assert f"`{spec['scaleTargetRef']['name']}` |" in page
        assert f"| {maximum} |" in page
