"""The chart renders, lints clean and produces only objects the API server would accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from rendering import (
    CHART_DIR,
    NAMESPACE,
    VALUES_FILES,
    Release,
    lint,
    load_values,
    render,
    render_file,
)

CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda.sh-v1alpha1.json",
}
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())


def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    path = Path(__file__).parent / "crd_schemas" / CRD_SCHEMAS[(api_version, kind)]
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def _schema_problems(obj: dict[str, Any]) -> list[str]:
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
        validator = jsonschema.Draft202012Validator(_crd_schema(obj["apiVersion"], obj["kind"]))
        return [
            f"{where}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(obj)
        ]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.absolute_path))
            problems.append(f"{where} (Kubernetes {version}): {path}: {error.message}")
    return problems


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_rendered_object_is_valid_for_the_api_server(values_file: str) -> None:
    release = render_file(values_file)
    problems = [problem for obj in release.objects for problem in _schema_problems(obj)]
    assert problems == []
    for obj in release.objects:
        assert obj["metadata"].get("namespace", NAMESPACE) == NAMESPACE or (
            obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-dashboard")
        )


def test_the_schemas_refuse_what_the_api_server_refuses() -> None:
    """The checks above must be able to fail: unknown fields are errors, KEDA metadata values
    are strings, a ServiceMonitor needs a selector, a rule's `for` is a duration."""
    release = render_file("all-options")
    deployment = release.one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    scaled_object = release.one("ScaledObject")
    scaled_object["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 500
    monitor = release.one("ServiceMonitor")
    del monitor["spec"]["selector"]
    rule = release.one("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    authentication = release.one("TriggerAuthentication")
    authentication["spec"]["secretTargetRefs"] = []
    for broken in (deployment, scaled_object, monitor, rule, authentication):
        assert _schema_problems(broken), broken["kind"]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_helm_lint_finds_nothing(values_file: str) -> None:
    report = lint(load_values(values_file))
    # Severity 1 is informational ("icon is recommended"); 2 and 3 are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["errors"] == []


def test_the_chart_defaults_alone_are_refused_naming_what_to_set() -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        render({})
    message = str(refused.value)
    for required in (
        "/config/kafka/bootstrap_servers",
        "/config/zuora/base_url",
        "/config/zuora/client_id",
    ):
        assert required in message


def test_a_release_without_credentials_is_refused_naming_them() -> None:
    values = load_values("minimal")
    del values["secret"]
    with pytest.raises(helm_python.HelmRenderError, match=r"secret\.values\.zuoraClientSecret"):
        render(values)


BASICS = ["ConfigMap", "Deployment", "NetworkPolicy", "Pod", "PodDisruptionBudget", "Service"]


@pytest.mark.parametrize(
    ("values_file", "kinds"),
    [
        ("minimal", [*BASICS, "Secret", "ServiceAccount"]),
        (
            "all-options",
            [
                *BASICS,
                "ConfigMap",
                "PrometheusRule",
                "ScaledObject",
                "Secret",
                "ServiceAccount",
                "ServiceMonitor",
                "TriggerAuthentication",
            ],
        ),
        ("hpa", [*BASICS, "HorizontalPodAutoscaler", "ServiceAccount"]),
    ],
)
def test_each_option_creates_its_objects(values_file: str, kinds: list[str]) -> None:
    assert render_file(values_file).kinds() == sorted(kinds)


def _replicas(release: Release) -> int | None:
    replicas: int | None = release.one("Deployment")["spec"].get("replicas")
    return replicas


def test_autoscaling_is_hpa_or_keda_and_then_owns_the_replica_count() -> None:
    fixed = render_file("minimal", {"replicaCount": 2})
    hpa = render_file("hpa")
    keda = render_file("all-options")
    assert (_replicas(fixed), _replicas(hpa), _replicas(keda)) == (2, None, None)
    assert not {"HorizontalPodAutoscaler", "ScaledObject"} & set(fixed.kinds())
    assert {"HorizontalPodAutoscaler", "ScaledObject"} & set(hpa.kinds()) == {
        "HorizontalPodAutoscaler"
    }
    assert {"HorizontalPodAutoscaler", "ScaledObject"} & set(keda.kinds()) == {"ScaledObject"}
    with pytest.raises(helm_python.HelmValuesError, match="/autoscaling/mode"):
        render_file("minimal", {"autoscaling": {"mode": "both"}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"inputPartitions": 4, "autoscaling": {"mode": "keda", "maxReplicas": 6}},
            "exceeds inputPartitions",
        ),
        (
            {"inputPartitions": 4, "autoscaling": {"mode": "hpa", "maxReplicas": 5}},
            "exceeds inputPartitions",
        ),
        ({"autoscaling": {"mode": "keda"}}, "autoscaling needs inputPartitions"),
        ({"inputPartitions": 2, "replicaCount": 3}, "replicaCount .3. exceeds inputPartitions"),
        (
            {
                "inputPartitions": 6,
                "autoscaling": {"mode": "hpa", "minReplicas": 4, "maxReplicas": 3},
            },
            "minReplicas exceeds",
        ),
    ],
)
def test_never_more_replicas_than_partitions(override: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render_file("minimal", override)


def test_keda_reads_the_lag_of_the_services_own_consumer_group() -> None:
    release = render_file("all-options")
    env = release.settings_env
    [trigger] = release.one("ScaledObject")["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"] | {"lagThreshold": "500"} == {
        "bootstrapServers": env["REGEN_KAFKA__BOOTSTRAP_SERVERS"],
        "consumerGroup": env["REGEN_KAFKA__GROUP_ID"],
        "topic": env["REGEN_TOPICS__INPUT"],
        "lagThreshold": "500",
        "activationLagThreshold": "10",
        "offsetResetPolicy": env["REGEN_KAFKA__AUTO_OFFSET_RESET"],
        "allowIdleConsumers": "false",
        "sasl": "scram_sha256",
        "tls": "enable",
    }
    spec = release.one("ScaledObject")["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 12)
    assert spec["scaleTargetRef"]["name"] == release.one("Deployment")["metadata"]["name"]


def test_keda_authenticates_with_the_services_credentials_and_ca() -> None:
    release = render_file("all-options")
    auth = release.one("TriggerAuthentication")
    assert release.one("ScaledObject")["spec"]["triggers"][0]["authenticationRef"] == {
        "name": auth["metadata"]["name"]
    }
    secret = release.one("Secret")["metadata"]["name"]
    assert {
        (ref["parameter"], ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]
    } == {
        ("password", secret, "kafka-password"),
        ("keyPassword", secret, "kafka-key-password"),
        ("ca", "kafka-client-tls", "ca.crt"),
        ("cert", "kafka-client-tls", "tls.crt"),
        ("key", "kafka-client-tls", "tls.key"),
    }
    # KEDA resolves the user name from the container's environment, i.e. the settings ConfigMap.
    [username] = auth["spec"]["env"]
    assert username["containerName"] == release.container["name"]
    assert release.settings_env[username["name"]] == "regen-sync"


def test_keda_with_plaintext_kafka_needs_no_authentication() -> None:
    release = render_file("minimal", {"inputPartitions": 3, "autoscaling": {"mode": "keda"}})
    assert "TriggerAuthentication" not in release.kinds()
    [trigger] = release.one("ScaledObject")["spec"]["triggers"]
    assert "authenticationRef" not in trigger
    assert not {"sasl", "tls"} & trigger["metadata"].keys()


def test_hpa_scales_on_cpu_and_the_lag_metric() -> None:
    hpa = render_file("hpa").one("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "regen_consumer_lag"},
                "target": {"type": "AverageValue", "averageValue": "2000"},
            },
        },
    ]


def test_service_monitor_scrapes_the_service_port_that_serves_metrics() -> None:
    release = render_file("all-options")
    service = release.one("Service")
    monitor = release.one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
    [port] = service["spec"]["ports"]
    assert (port["name"], port["targetPort"]) == (endpoint["port"], "http")
    # Unready pods (broker away) keep being scraped.
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_carries_the_alerts_file_with_routing_labels_and_runbooks() -> None:
    rule = render_file("all-options").one("PrometheusRule")
    alerts_file = yaml.safe_load((CHART_DIR / "files" / "alerts.yaml").read_text())
    [group] = rule["spec"]["groups"]
    [expected_group] = alerts_file["groups"]
    assert group["name"] == expected_group["name"]
    assert len(group["rules"]) == len(expected_group["rules"])
    for rendered, source in zip(group["rules"], expected_group["rules"], strict=True):
        assert {k: v for k, v in rendered.items() if k not in {"labels", "annotations"}} == {
            k: v for k, v in source.items() if k not in {"labels", "annotations"}
        }
        assert rendered["labels"] == source["labels"] | {"team": "billing"}
        assert rendered["annotations"] == source["annotations"] | {
            "runbook_url": "https://git.example.com/billing/regen-sync/-/blob/main/docs/kubernetes.md#"
            + source["alert"].lower()
        }


def test_an_alerts_own_severity_wins_over_the_release_wide_labels() -> None:
    rule = render_file("all-options", {"prometheusRule": {"alertLabels": {"severity": "info"}}})
    severities = {
        r["labels"]["severity"] for r in rule.one("PrometheusRule")["spec"]["groups"][0]["rules"]
    }
    assert severities == {"warning", "critical"}


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar() -> None:
    dashboard = render_file("all-options").one("ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Billing"}
    [(name, content)] = dashboard["data"].items()
    assert name.endswith(".json")
    assert json.loads(content) == json.loads(
        (CHART_DIR / "files" / "dashboards" / "regen-sync.json").read_text()
    )


def test_network_policy_admits_only_the_http_port() -> None:
    policy = render_file("all-options").one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress_ports = [port["port"] for rule in policy["egress"] for port in rule["ports"]]
    assert egress_ports == [53, 53, 9093, 443, 4318]
    minimal = render_file("minimal").one("NetworkPolicy")["spec"]
    assert minimal["policyTypes"] == ["Ingress"]
    assert "egress" not in minimal


def test_notes_tell_how_to_check_the_release() -> None:
    notes = render_file("production").notes
    assert "kubectl -n billing rollout status deployment/regen-sync" in notes
    assert "Replicas: 2 to 6 (keda; the input topic has 6 partitions)" in notes
    assert "secret.existingSecret" not in notes
    assert "secret.existingSecret" in render_file("minimal").notes


def test_helm_test_checks_with_the_releases_own_settings_and_credentials() -> None:
    release = render_file("all-options")
    [pod] = release.all_of("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [check] = pod["spec"]["containers"]
    assert check["command"] == ["regen-sync", "check", "--timeout", "10"]
    assert check["image"] == release.container["image"]
    for shared in ("envFrom", "volumeMounts", "securityContext"):
        assert check[shared] == release.container[shared], shared
    # All but the static group membership: the check never joins the consumer group.
    assert check["env"] == [
        variable
        for variable in release.container["env"]
        if variable["name"] != "REGEN_KAFKA__GROUP_INSTANCE_ID"
    ]
    assert len(check["env"]) == len(release.container["env"]) - 1
    assert pod["spec"]["volumes"] == release.pod_spec["volumes"]
    assert pod["spec"]["securityContext"] == release.pod_spec["securityContext"]
    # Neither the Service nor the disruption budget may select it.
    selector = release.one("Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    assert "Pod" not in render_file("minimal", {"helmTest": {"enabled": False}}).kinds()
