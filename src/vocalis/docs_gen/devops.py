"""Generated references for sections 9 and 11: the release pipeline (from the workflow), the
Dockerfile's stages, the Kubernetes manifest inventory, the scaling rules (from the HPA and
KEDA objects), the rollback steps (from the rollback script) and the threat model (each
mitigation with the tests that prove it; `tests/deploy/test_devops_reference.py` checks
every named test exists)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vocalis.docs_gen import _table, register

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = ROOT / ".github" / "workflows"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
RELEASE_SCRIPTS = ROOT / "scripts" / "release"


def _yaml_documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each YAML document of a file with the comment lines that open it."""
    import yaml

    out = []
    for chunk in re.split(r"^---\s*$", path.read_text(), flags=re.MULTILINE):
        body = yaml.safe_load(chunk)
        if not isinstance(body, dict):
            continue
        comments = []
        for line in chunk.strip().splitlines():
            if not line.startswith("#"):
                break
            comments.append(line.lstrip("# ").strip())
        out.append((" ".join(c for c in comments if c), body))
    return out


def _script_summary(script: Path) -> str:
    """The header comment of a release script (its first comment lines after the shebang)."""
    lines = []
    for line in script.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    return " ".join(lines)


# --- release pipeline ---------------------------------------------------------------------------
def release_pipeline() -> str:
    """The release workflow's triggers and steps, in order."""
    import yaml

    out = []
    for workflow in sorted(WORKFLOWS.glob("*.y*ml")):
        spec = yaml.safe_load(workflow.read_text())
        triggers = spec.get("on", spec.get(True, {}))  # YAML 1.1 reads `on` as True
        out.append(f"### `{workflow.relative_to(ROOT)}` (`{spec.get('name', workflow.stem)}`)\n")
        out.append(
            "Runs on: "
            + "; ".join(
                f"`{event}`"
                + "".join(
                    f" ({key} " + ", ".join(f"`{v}`" for v in values) + ")"
                    for key, values in (value or {}).items()
                    if isinstance(values, list)
                )
                for event, value in triggers.items()
            )
            + f". Concurrency group `{spec.get('concurrency', {}).get('group', '—')}` "
            "(a rollout is never interrupted).\n"
        )
        for job_name, job in spec.get("jobs", {}).items():
            rows = []
            for number, step in enumerate(job.get("steps", []), start=1):
                uses, run = step.get("uses"), str(step.get("run", "")).strip()
                if uses:
                    action, does = f"action `{uses}`", ""
                else:
                    script = re.search(r"scripts/release/[\w.-]+", run)
                    action = f"`{script.group(0)}`" if script else "inline shell"
                    does = (
                        _script_summary(ROOT / script.group(0))
                        if script
                        else "`" + "; ".join(run.splitlines()) + "`"
                    )
                rows.append(
                    [
                        number,
                        step.get("name", uses or "—"),
                        action,
                        f"`{step['if']}`" if step.get("if") else "on success",
                        does,
                    ]
                )
            out.append(
                f"Job `{job_name}` (environment `{job.get('environment', '—')}`, "
                f"{job.get('timeout-minutes', '—')} min limit):\n"
            )
            out.append(_table(["#", "Step", "Runs", "When", "What it does"], rows))
    return "\n".join(out)


# --- Dockerfile ---------------------------------------------------------------------------------
@dataclass
class Stage:
    """One `FROM … AS name` stage of the Dockerfile."""

    name: str
    base: str
    instructions: list[str]
    notes: list[str]


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The stages of a Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        word = word.upper()
        if word == "FROM":
            match = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match is not None
            stages.append(Stage(match.group(2) or str(len(stages)), match.group(1), [], []))
        elif stages:
            stages[-1].instructions.append(word)
            if word in ("USER", "EXPOSE", "ENTRYPOINT", "CMD", "WORKDIR", "VOLUME"):
                stages[-1].notes.append(f"`{word} {rest.strip()}`")
            elif word == "COPY" and "--from=" in rest:
                source = re.search(r"--from=(\S+)", rest)
                stages[-1].notes.append(f"copies from `{source.group(1) if source else '?'}`")
            elif word == "HEALTHCHECK":
                stages[-1].notes.append("`HEALTHCHECK`")
    return stages


def _dockerfile_section() -> str:
    rows = []
    for stage in dockerfile_stages():
        counts: dict[str, int] = {}
        for word in stage.instructions:
            counts[word] = counts.get(word, 0) + 1
        rows.append(
            [
                f"`{stage.name}`",
                f"`{stage.base}`",
                ", ".join(f"{w} ({n})" if n > 1 else w for w, n in counts.items()),
                "; ".join(stage.notes) or "—",
            ]
        )
    header = [
        line.lstrip("# ").strip()
        for line in DOCKERFILE.read_text().splitlines()[1:]
        if line.startswith("#") and not line.startswith("# ---")
    ][:5]
    return f"`deploy/Dockerfile`: {' '.join(header)}\n\n" + _table(
        ["Stage", "Base", "Instructions", "Notes"], rows
    )


# --- manifests and scaling ----------------------------------------------------------------------
def manifests() -> list[tuple[Path, str, dict[str, Any]]]:
    """Every Kubernetes object under deploy/k8s (file, opening comment, object)."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for comment, body in _yaml_documents(path):
            if "kind" in body:
                out.append((path, comment, body))
    return out


def _inventory_section() -> str:
    rows = []
    for path, comment, body in manifests():
        meta = body.get("metadata", {})
        labels = meta.get("labels", {}) or {}
        rows.append(
            [
                f"`{path.relative_to(K8S)}`",
                body["kind"],
                f"`{meta.get('name', '—')}`",
                labels.get("app.kubernetes.io/component", "—"),
                comment,
            ]
        )
    return _table(["File", "Kind", "Name", "Component", "Notes"], rows)


def _scaling_section() -> str:
    rows = []
    for path, _comment, body in manifests():
        spec = body.get("spec", {})
        if body["kind"] == "HorizontalPodAutoscaler":
            signals = []
            for metric in spec.get("metrics", []):
                resource = metric.get("resource", {})
                target = resource.get("target", {})
                signals.append(
                    f"{resource.get('name', metric.get('type'))} "
                    f"{target.get('averageUtilization', target.get('averageValue', '?'))}%"
                )
            down = spec.get("behavior", {}).get("scaleDown", {})
            rows.append(
                [
                    f"`{spec['scaleTargetRef']['name']}`",
                    f"HPA (`{path.relative_to(K8S)}`)",
                    spec.get("minReplicas", 1),
                    spec["maxReplicas"],
                    "; ".join(signals),
                    f"scale-down window {down.get('stabilizationWindowSeconds', 300)} s",
                ]
            )
        elif body["kind"] == "ScaledObject":
            signals = []
            for trigger in spec.get("triggers", []):
                meta = trigger.get("metadata", {})
                if trigger["type"] == "prometheus":
                    signals.append(f"`{meta['query']}` / {meta['threshold']} per pod")
                else:
                    signals.append(f"{trigger['type']} {meta.get('value', '?')}%")
            fallback = spec.get("fallback", {})
            rows.append(
                [
                    f"`{spec['scaleTargetRef']['name']}`",
                    f"KEDA (`{path.relative_to(K8S)}`)",
                    spec.get("minReplicaCount", 0),
                    spec.get("maxReplicaCount", 100),
                    "; ".join(signals),
                    f"poll {spec.get('pollingInterval', 30)} s, cooldown "
                    f"{spec.get('cooldownPeriod', 300)} s"
                    + (
                        f", fallback {fallback['replicas']} replica(s) after "
                        f"{fallback['failureThreshold']} failed reads"
                        if fallback
                        else ""
                    ),
                ]
            )
    return (
        "The base scales every Deployment on CPU (HPA); the production overlay's KEDA "
        "component replaces each worker's HPA with a ScaledObject on its queue's backlog "
        "(never both on one Deployment).\n\n"
        + _table(["Deployment", "Scaler", "Min", "Max", "Signals", "Damping"], rows)
    )


def _rollback_section() -> str:
    import yaml

    script = RELEASE_SCRIPTS / "rollback.sh"
    commands = [
        line.strip().removeprefix("run ")
        for line in script.read_text().splitlines()
        if line.strip().startswith("run ")
    ]
    condition = "—"
    for workflow in sorted(WORKFLOWS.glob("*.y*ml")):
        for job in yaml.safe_load(workflow.read_text()).get("jobs", {}).values():
            for step in job.get("steps", []):
                if "rollback.sh" in str(step.get("run", "")):
                    condition = str(step.get("if", "always"))
    rows = [[n, f"`{c}`"] for n, c in enumerate(commands, start=1)]
    return (
        f"Automatic when `{condition}` (`scripts/release/rollback.sh`); by hand, the same "
        "script with the cluster's credentials (`DRY_RUN=1` prints the commands). "
        + _script_summary(script)
        + "\n\n"
        + _table(["#", "Command (for each Vocalis Deployment)"], rows)
    )


@register("devops.md")
def devops() -> str:
    """Section 9 from the files that define it."""
    return (
        "# Release pipeline, image, manifests, scaling and rollback\n\n"
        "Generated from `.github/workflows/`, `deploy/Dockerfile`, `deploy/k8s/` and "
        "`scripts/release/rollback.sh`; a change there changes this page (`vocalis docs "
        "--check` fails until it is regenerated).\n\n"
        "## Release pipeline\n\n"
        + release_pipeline()
        + "\n## Dockerfile stages\n\n"
        + _dockerfile_section()
        + "\n## Manifest inventory\n\n"
        + _inventory_section()
        + "\n## Scaling rules\n\n"
        + _scaling_section()
        + "\n## Rollback\n\n"
        + _rollback_section()
    )


# --- threat model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Threat:
    """A threat, its mitigation, and the tests that prove the mitigation works."""

    name: str
    surface: str
    mitigation: str
    proven_by: tuple[str, ...]


THREATS: tuple[Threat, ...] = (
    Threat(
        "Stolen or guessed API key",
        "REST, WebSocket",
        "Keys stored as SHA-256 only, shown once; revocation and expiry take effect at "
        "once (the key cache is invalidated across processes); wrong keys from one address "
        "are throttled.",
        (
            "tests/api/test_auth_and_org.py::test_created_key_is_shown_once_and_stored_hashed",
            "tests/api/test_auth_and_org.py::test_a_cached_key_revoked_by_another_process_is_refused_within_a_second",
            "tests/api/test_auth_and_org.py::test_expired_key_stops_working",
            "tests/api/test_auth_throttle.py::test_wrong_keys_from_one_address_are_throttled_and_others_are_not",
        ),
    ),
    Threat(
        "Privilege escalation within an organisation",
        "REST, WebSocket",
        "Scopes per role; a key cannot hold scopes beyond its role; every route declares "
        "its scope.",
        (
            "tests/api/test_auth_and_org.py::test_scopes_beyond_the_role_are_refused",
            "tests/api/test_auth_and_org.py::test_narrowed_scopes_are_enforced",
            "tests/api/test_websocket_matrix.py::test_websocket_roles_and_tenants",
        ),
    ),
    Threat(
        "Cross-tenant data access",
        "REST, stores",
        "Every query is scoped by `org_id` in the store adapters; another organisation's "
        "resource is a 404, never a 403 that confirms it exists.",
        (
            "tests/api/test_isolation_matrix.py::test_another_organisation_gets_404_and_changes_nothing",
            "tests/contract/test_document_store.py::test_other_org_cannot_get_a_document",
            "tests/contract/test_vector_store.py::test_an_org_never_sees_another_orgs_chunks",
        ),
    ),
    Threat(
        "Server-side request forgery",
        "Webhook URLs, model and MCP endpoints, HTTP tool, carriers",
        "The SSRF guard resolves and refuses private, loopback and link-local addresses "
        "(unless allow-listed) when saved and on every request, redirects included.",
        (
            "tests/webhooks/test_endpoints_api.py::test_private_addresses_are_refused_unless_allow_listed",
            "tests/integration/test_ssrf_redirects.py::test_a_webhook_endpoint_redirecting_to_loopback_is_not_followed",
            "tests/integration/test_mcp_tools.py::test_a_private_mcp_url_is_refused_unless_allow_listed",
            "tests/telephony/test_carrier_requests.py::test_a_carrier_api_on_a_private_address_is_refused_unless_allow_listed",
        ),
    ),
    Threat(
        "Denial of service by request volume",
        "REST, WebSocket handshakes",
        "Per-key token buckets in Redis, one per rate-limit class, atomic across processes "
        "(large buckets spent through short per-process leases that never over-admit); "
        "429 with `Retry-After`.",
        (
            "tests/api/test_rate_limit.py::test_requests_beyond_the_burst_get_429_with_retry_after",
            "tests/api/test_rate_limit_leases.py::test_two_processes_never_admit_more_than_the_bucket",
            "tests/api/test_rate_limit.py::test_class_buckets_are_atomic_under_concurrent_redis_clients",
            "tests/realtime/test_handshake_rate_class.py",
        ),
    ),
    Threat(
        "Denial of service by hostile payloads",
        "Request bodies, uploads",
        "Body and upload size limits before parsing; JSON nesting and NUL refused; uploads "
        "typed by content, compression bombs refused before any parser reads them.",
        (
            "tests/unit/test_jsonguard.py::test_nesting_up_to_the_limit_passes_and_one_more_level_is_refused",
            "tests/api/test_defects.py::test_every_json_operation_refuses_nul",
            "tests/api/test_defects.py::test_only_the_upload_routes_get_the_upload_limit",
            "tests/knowledge/test_upload.py::test_a_zip_bomb_like_docx_is_refused_before_any_parser_reads_it",
            "tests/knowledge/test_upload.py::test_an_html_page_named_pdf_is_refused_as_a_type_mismatch",
        ),
    ),
    Threat(
        "Forged inbound webhooks",
        "Carrier webhooks (Twilio, Telnyx)",
        "Provider signatures verified before anything is created.",
        (
            "tests/telephony/test_phone_calls.py::test_a_twilio_webhook_without_a_valid_signature_gets_403_and_no_conversation",
        ),
    ),
    Threat(
        "Spoofed or replayed outbound webhooks",
        "Customer webhook receivers",
        "Standard Webhooks signatures (HMAC-SHA256 of id, timestamp and body) with a "
        "per-endpoint secret; the id is stable for deduplication.",
        (
            "tests/webhooks/test_signing.py::test_the_reference_library_verifies_our_signature",
            "tests/webhooks/test_signing.py::test_the_signature_is_v1_base64_hmac_sha256_of_id_timestamp_and_body",
        ),
    ),
    Threat(
        "Leaked browser credentials",
        "Realtime from a browser",
        "Short-lived client secrets bound to one agent; API keys never in a URL.",
        (
            "tests/voice/test_client_secrets.py::test_a_wrong_or_expired_secret_is_refused",
            "tests/voice/test_client_secrets.py::test_a_secret_is_only_for_its_agent_and_api_keys_never_go_in_the_url",
        ),
    ),
    Threat(
        "Personal data in logs and transcripts",
        "Logs, stored transcripts",
        "Redaction rules on every log line (secrets always, PII when on) and on stored "
        "redacted transcripts.",
        (
            "tests/unit/test_logging.py::test_secret_named_fields_are_always_redacted",
            "tests/unit/test_logging.py::test_pii_in_a_bound_context_field_is_redacted",
            "tests/conversations/test_conversations.py::test_the_stored_transcript_redacts_emails_and_card_numbers_when_redaction_is_on",
        ),
    ),
    Threat(
        "Prompt injection",
        "Agent input, retrieved passages",
        "The input guard flags injection patterns and reminds the model of its "
        "instructions; the output guard blocks instruction leaks.",
        (
            "tests/unit/agents/test_graph.py::test_prompt_injection_is_flagged_and_the_model_reminded",
        ),
    ),
    Threat(
        "Exposure of stored provider credentials",
        "Database",
        "Organisation model-provider keys and webhook secrets are encrypted at rest and "
        "never returned.",
        (
            "tests/integration/test_model_providers.py::test_an_org_provider_answers_with_its_encrypted_key_which_is_never_shown",
        ),
    ),
    Threat(
        "Container breakout or tampering",
        "Pods, image",
        "Numeric non-root user, read-only root filesystem, no compiler in the image.",
        (
            "tests/deploy/test_manifests.py::test_pods_run_as_non_root_on_a_read_only_root_filesystem",
            "tests/deploy/test_manifests.py::test_the_image_runs_as_a_numeric_non_root_user",
        ),
    ),
    Threat(
        "Path traversal through object keys",
        "Object store (S3, local directory)",
        "Object keys are built from validated one-segment ids under the organisation's "
        "prefix; the local store refuses paths that leave its root.",
        (
            "tests/unit/test_object_keys.py::test_an_id_that_is_not_one_path_segment_is_refused",
            "tests/unit/test_object_keys.py::test_a_layout_outside_the_org_prefix_is_refused",
            "tests/contract/test_object_store.py::test_local_store_refuses_relative_paths_that_escape_its_root",
        ),
    ),
    Threat(
        "Lost or phantom webhook events",
        "Outbox, broker",
        "Transactional outbox: an event commits with its change, or not at all; a sweep "
        "dispatches stranded events.",
        (
            "tests/webhooks/test_outbox_and_dispatch.py::test_an_event_rolls_back_with_the_transaction_and_is_never_published",
            "tests/webhooks/test_outbox_and_dispatch.py::test_the_sweep_dispatches_stranded_events_and_requeues_lost_deliveries",
        ),
    ),
    Threat(
        "Backend details through the readiness probe",
        "`/readyz`",
        "Details only on the internal port or to an owner or admin key.",
        (
            "tests/api/test_production_mode.py::test_readyz_details_need_an_admin_key_or_the_internal_port",
        ),
    ),
    Threat(
        "Tampered model files",
        "Speech and embedding models on disk",
        "Pinned SHA-256 checked before a model is loaded.",
        (
            "tests/unit/voice/test_whisper_stt.py::test_model_files_with_a_wrong_checksum_are_refused",
        ),
    ),
    Threat(
        "Secret path traversal",
        "Vault",
        "Secret paths that could leave the configured base path are refused.",
        (
            "tests/secrets/test_vault_secrets.py::test_paths_that_could_escape_the_base_path_are_rejected",
        ),
    ),
)


def missing_tests(nodes: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """The test node ids (`path::function` or a test file) that do not exist."""
    import ast

    missing = []
    for node in nodes:
        path, _, name = node.partition("::")
        file = root / path
        if not file.is_file():
            missing.append(node)
            continue
        if name:
            tree = ast.parse(file.read_text())
            names = {
                n.name
                for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            if name not in names or not name.startswith("test"):
                missing.append(node)
    return missing


def _test_link(node: str) -> str:
    path, _, name = node.partition("::")
    label = f"`{name}`" if name else f"`{Path(path).name}`"
    return f"[{label}](../../{path})"


@register("threat-model.md")
def threat_model() -> str:
    """Section 11's threat model: each mitigation linked to the tests that prove it."""
    rows = [
        [t.name, t.surface, t.mitigation, "<br>".join(_test_link(n) for n in t.proven_by)]
        for t in THREATS
    ]
    return (
        "# Threat model\n\n"
        "Each threat's mitigation is proven by the linked tests "
        "(`tests/deploy/test_devops_reference.py` fails when a linked test does not exist).\n\n"
        + _table(["Threat", "Surface", "Mitigation", "Proven by"], rows)
    )
