"""The alerting rules: valid for Prometheus (promtool), each one proven by a unit test that makes
it fire and one that keeps it silent, and built only from metrics the service exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from promql import ALERTS, alert_rules, exported_metric_names, metric_name, selectors

ALERT_TESTS = Path(__file__).parent / "alerts_test.yaml"


def _promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/install_system_tools.sh"
    return subprocess.run(
        [promtool, *arguments], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = _promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """With a rule's threshold moved, its unit test must notice."""
    rules = yaml.safe_load(ALERTS.read_text())
    ratio = next(
        r for r in rules["groups"][0]["rules"] if r["alert"] == "RegenSyncHighFailureRatio"
    )
    ratio["expr"] = ratio["expr"].replace("> 0.1", "> 0.5")
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["rule_files"] = ["alerts.yaml"]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    tested = _promtool("test", "rules", str(tmp_path / "alerts_test.yaml"))
    assert tested.returncode != 0
    assert "RegenSyncHighFailureRatio" in tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} never stays silent"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_alert_is_routable_and_explained(rule: dict[str, object]) -> None:
    labels = rule["labels"]
    annotations = rule["annotations"]
    assert isinstance(labels, dict)
    assert isinstance(annotations, dict)
    assert labels["severity"] in {"warning", "critical"}
    assert {"summary", "description"} <= annotations.keys()
    # Aggregations keep namespace and job, so each deployment alerts on its own.
    expr = str(rule["expr"])
    for aggregation in expr.split("sum by (")[1:]:
        assert aggregation.startswith("namespace, job"), expr


def test_alerts_use_only_metrics_the_service_exports() -> None:
    exported = exported_metric_names()
    used = {
        metric_name(selector) for rule in alert_rules() for selector in selectors(str(rule["expr"]))
    }
    assert used - exported == set()
