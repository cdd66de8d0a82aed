"""The Grafana dashboard: every query is valid PromQL (checked offline by promtool), names only
metrics the service exports, and the panels cover what operators need."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from promql import (
    dashboard,
    dashboard_panels,
    exported_metric_names,
    expressions,
    label_values_queries,
    metric_name,
    selectors,
)

VARIABLES = {"namespace": "billing", "job": "regen-sync"}


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses recording rules offline: each dashboard query becomes one."""
    queries = [e for e in expressions(VARIABLES) if e.origin.startswith("panel")]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": query.promql}
                    for index, query in enumerate(queries)
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard-queries.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/install_system_tools.sh"
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_queries_use_only_metrics_the_service_exports() -> None:
    exported = exported_metric_names()
    used = {
        metric_name(selector)
        for expression in expressions(VARIABLES)
        for selector in selectors(expression.promql)
    } | {metric_name(query.selector) for query in label_values_queries(VARIABLES)}
    assert used - exported == set()


def test_every_query_is_scoped_to_the_selected_deployment() -> None:
    raw = [
        target["expr"]
        for panel in dashboard_panels()
        for target in panel.get("targets", [])  # type: ignore[attr-defined]
    ]
    for expr in raw:
        for selector in selectors(expr):
            assert 'namespace=~"$namespace"' in selector, expr
            assert 'job=~"$job"' in selector, expr


def _queries_of(title: str) -> list[str]:
    [panel] = [p for p in dashboard_panels() if p["title"] == title]
    return [target["expr"] for target in panel["targets"]]  # type: ignore[attr-defined]


def test_the_panels_answer_the_operators_questions() -> None:
    assert "sum by (type)" in _queries_of("Events received by type")[0]
    assert "sum by (operation, outcome)" in _queries_of("Results by operation and outcome")[0]
    assert "sum by (operation, reason)" in _queries_of("Failures by operation and reason")[0]
    latency = _queries_of("Upstream latency p50 / p95 / p99")
    assert [q.split(",")[0] for q in latency] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]
    assert all("sum by (operation, le)" in q for q in latency)
    retries = " ".join(_queries_of("Retries and 429 answers"))
    assert "regen_retries_total" in retries
    assert "regen_upstream_throttled_total" in retries
    assert "regen_events_in_flight" in _queries_of("In flight per pod")[0]
    assert "regen_circuit_state" in _queries_of("Circuit state")[0]
    assert (
        "sum by (topic, partition) (regen_consumer_lag"
        in _queries_of("Consumer lag per partition")[0]
    )
    assert "regen_dead_letters_total" in _queries_of("Dead letters by reason")[0]
    assert "process_cpu_seconds_total" in _queries_of("CPU per pod")[0]
    assert "process_resident_memory_bytes" in _queries_of("Resident memory per pod")[0]


def test_layout_is_well_formed() -> None:
    panels = list(dashboard_panels())
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]  # type: ignore[operator]
        if panel["type"] != "row":
            assert panel["description"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    variables = [v["name"] for v in dashboard()["templating"]["list"]]  # type: ignore[index]
    assert variables == ["datasource", "namespace", "job"]
