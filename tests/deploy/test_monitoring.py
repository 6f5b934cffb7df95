"""Alert rules and the Grafana dashboard: generated from the registry, unit-tested with
promtool, and every PromQL expression names only metrics and labels that exist.

promtool comes from Debian's `prometheus` package (scripts/install-test-extras.sh).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vocalis.core.metrics import REGISTRY
from vocalis.docs_gen import load_every_module, monitoring

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts.test.yaml"
DASHBOARD = MONITORING / "vocalis-dashboard.json"
SCALED_OBJECTS = ROOT / "deploy" / "k8s" / "components" / "keda" / "scaledobjects.yaml"
# Labels Prometheus adds at scrape time (and the pod label of a Kubernetes scrape).
TARGET_LABELS = {"job", "instance", "pod", "namespace", "container", "service"}
AGGREGATORS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk"}
AGGREGATORS |= {"quantile", "count_values", "group"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|[a-zA-Z_:][a-zA-Z0-9_:]*|\d+(?:\.\d+)?|\S'
)
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*,?')


# --- the registry ----------------------------------------------------------------------------
def _registry() -> dict[str, set[str]]:
    """Every exported series name → its label names (`le` on buckets)."""
    load_every_module()
    series: dict[str, set[str]] = {}
    for collector, names in REGISTRY._collector_to_names.items():
        labels = set(getattr(collector, "_labelnames", ()))
        described = collector.describe() if hasattr(collector, "describe") else []
        # a counter or histogram has no series of its bare name (`x_total`, `x_bucket`…)
        bare = {d.name for d in described if d.type in ("counter", "histogram", "summary")}
        for name in names:
            if name.startswith("vocalis_") and name not in bare:
                series[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return series


SERIES = _registry()


# --- a small PromQL reader -------------------------------------------------------------------
def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The metric selectors of a PromQL expression as (metric name, matcher label names),
    and the label names of its grouping clauses (`by (…)`, `on (…)`…)."""
    grouping = {
        label.strip() for _, group in GROUPING.findall(expr) for label in group.split(",")
    } - {""}
    text = GROUPING.sub(" ", expr)
    tokens = [t.group(0) for t in TOKEN.finditer(text)]
    found = []
    for index, token in enumerate(tokens):
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", token):
            continue
        after = tokens[index + 1] if index + 1 < len(tokens) else ""
        if after == "(" or token in KEYWORDS or token in AGGREGATORS:
            continue  # a function, an aggregation, a keyword
        labels: set[str] = set()
        if after.startswith("{"):
            body = after[1:-1]
            matched = MATCHER.findall(body)
            assert MATCHER.sub("", body).strip() == "", f"unreadable matchers {after!r}"
            labels = {name for name, _ in matched}
        found.append((token, labels))
    return found, grouping


def unknown_names(expr: str) -> list[str]:
    """What in `expr` the registry does not have: metrics, and labels of those metrics."""
    found, grouping = selectors(expr)
    problems = []
    known_labels = set(TARGET_LABELS)
    for name, labels in found:
        if name not in SERIES:
            problems.append(f"metric {name}")
            continue
        known_labels |= SERIES[name]
        problems += [f"label {name}{{{x}}}" for x in labels - SERIES[name] - TARGET_LABELS]
    problems += [f"grouping label {x}" for x in grouping - known_labels]
    if not found:
        problems.append(f"no metric in {expr!r}")
    return problems


def _expressions() -> dict[str, str]:
    """Every PromQL expression the deployment ships, by where it is."""
    exprs = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            exprs[f"alert {rule['alert']}"] = rule["expr"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            exprs[f"panel {panel['title']} {target['refId']}"] = target["expr"]
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for item in test["input_series"]:
            exprs[f"test series {item['series']}"] = item["series"]
    for obj in yaml.safe_load_all(SCALED_OBJECTS.read_text()):
        for trigger in obj["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                exprs[f"ScaledObject {obj['metadata']['name']}"] = trigger["metadata"]["query"]
    return exprs


# --- tests -----------------------------------------------------------------------------------
def test_the_files_in_deploy_are_what_the_registry_generates() -> None:
    assert monitoring.write(MONITORING, check=True) == [], (
        "deploy/monitoring drifted: run `python -m vocalis.docs_gen.monitoring`"
    )


@pytest.mark.parametrize("where", sorted(_expressions()))
def test_every_promql_expression_names_only_registered_metrics_and_labels(where: str) -> None:
    assert unknown_names(_expressions()[where]) == []


def test_the_promql_reader_catches_what_does_not_exist() -> None:
    assert unknown_names("sum(rate(vocalis_http_requests_total[5m]))") == []
    assert unknown_names("rate(vocalis_http_request_total[5m])") == [
        "metric vocalis_http_request_total"
    ]
    assert unknown_names('vocalis_queue_depth{queu="ingest"}') == [
        "label vocalis_queue_depth{queu}"
    ]
    assert unknown_names("sum by (route) (vocalis_queue_depth)") == ["grouping label route"]
    assert (
        unknown_names(
            'histogram_quantile(0.9, sum by (le) (rate(vocalis_task_duration_seconds_bucket{task="x"}[5m])))'
        )
        == []
    )
    # counters are exported with `_total`; the bare name is no series
    assert unknown_names("vocalis_dead_letters") == ["metric vocalis_dead_letters"]


def test_the_prometheus_operator_rule_carries_the_same_rules() -> None:
    operator = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert operator["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"] == yaml.safe_load(RULES.read_text())


def test_the_alerts_the_operators_need_exist() -> None:
    names = {a.name for a in monitoring.ALERTS}
    needed = {
        "VocalisHighErrorRate",
        "VocalisVoiceTurnLatencyHigh",
        "VocalisQueueBacklog",
        "VocalisDeadLetters",
        "VocalisIngestionFailures",
        "VocalisWebhookEndpointDisabled",
    }
    assert needed <= names
    assert (
        "histogram_quantile(0.95"
        in dict((a.name, a.expr) for a in monitoring.ALERTS)["VocalisVoiceTurnLatencyHigh"]
    )


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: run scripts/install-test-extras.sh"
    return path


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(monitoring.ALERTS)} rules found" in result.stdout


def test_the_alert_rule_unit_tests_pass_and_cover_every_alert() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    alerts = {a.name for a in monitoring.ALERTS} - {"VocalisBackendDown"}
    assert alerts <= fired and alerts <= quiet  # each fires on its case and not before
    result = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_would_fail_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests can fail: the same inputs expecting the opposite outcome are refused."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    for test in tests["tests"]:
        for case in test["alert_rule_test"]:
            case["exp_alerts"] = [] if case["exp_alerts"] else [{"exp_labels": {}}]
    tests["rule_files"] = [str(RULES)]
    flipped = tmp_path / "flipped.yaml"
    flipped.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [_promtool(), "test", "rules", str(flipped)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_the_dashboard_covers_api_voice_llm_queues_and_ingestion() -> None:
    panels = _dashboard()["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["API", "Voice", "LLM", "Queues", "Ingestion"]
    graphs = [p for p in panels if p["type"] != "row"]
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in graphs)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    # no two panels overlap on Grafana's 24-column grid
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, panel["title"]
        cells |= area


def test_the_alert_reference_is_generated_with_the_docs() -> None:
    from vocalis.docs_gen import GENERATORS

    load_every_module()
    text = GENERATORS["alerts.md"]()
    for alert in monitoring.ALERTS:
        assert alert.name in text
