"""values.schema.json refuses wrong values before anything is rendered, naming the key; the
templates refuse combinations the schema cannot express."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from rendering import CHART_DIR, load_values, merged, render


def _set(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    override: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        override = {parent: override}
    return override


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("replicaCount", "two"),
        ("replicaCount", -1),
        ("inputPartitions", 0),
        ("autoscaling.mode", "both"),
        ("autoscaling.maxReplicas", "6"),
        ("autoscaling.keda.lagThreshold", 0),
        ("autoscaling.hpa.targetCPUUtilizationPercentage", 150),
        ("staticMembership.enabled", "yes"),
        ("staticMembership.instanceId", "regen-sync-0"),
        ("image.digest", "latest"),
        ("image.pullPolicy", "Sometimes"),
        ("service.port", 70000),
        ("serviceMonitor.enabled", "yes"),
        ("serviceMonitor.interval", "every minute"),
        ("prometheusRule.runbookBaseUrl", "docs/kubernetes.md"),
        ("networkPolicy.egress.kafkaPorts", []),
        ("secret.existingSecret", "Not_A_Name"),
        ("securityContext.runAsUser", 0),
        ("tmpSizeLimit", "lots"),
        ("podAnnotations", {"a": 1}),
        ("unknownTopLevel", True),
        # The service's own settings, with its types, enums and bounds.
        ("config.kafka.bootstrap_servers", ""),
        ("config.kafka.security_protocol", "TLS"),
        ("config.kafka.sasl_mechanism", "GSSAPI"),
        ("config.kafka.enable_idempotence", "sometimes"),
        ("config.zuora.base_url", "ftp://rest.zuora.com"),
        ("config.zuora.billing_id_field", "number"),
        ("config.processing.max_attempts", 0),
        ("config.processing.backoff_initial_seconds", 0),
        ("config.http.port", "http"),
        ("config.log.level", "TRACE"),
        ("config.kafka.no_such_setting", "x"),
        ("config.no_such_section", {"x": 1}),
        # Secrets and file paths are the chart's business, never plain settings.
        ("config.zuora.client_secret", "s3cr3t"),
        ("config.kafka.ssl_cafile", "/etc/ssl/ca.pem"),
    ],
)
def test_schema_refuses_a_wrong_value_naming_it(path: str, value: Any) -> None:
    values = merged(load_values("minimal"), _set(path, value))
    with (
        helm_python.Chart.load(CHART_DIR) as chart,
        pytest.raises(helm_python.HelmValuesError) as refused,
    ):
        chart.validate_schema(values)
    message = str(refused.value)
    *parents, leaf = path.split(".")
    pointer = "".join(f"/{part}" for part in path.split("."))
    parent_pointer = "".join(f"/{part}" for part in parents)
    # Either the value (or one inside it) is wrong, or the parent refuses an unknown key.
    assert f"at '{pointer}" in message or (
        f"at '{parent_pointer}'" in message and f"'{leaf}'" in message
    ), message


def test_schema_accepts_every_values_file_it_ships() -> None:
    for name in ("minimal", "all-options", "hpa", "production"):
        render(load_values(name))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"config": {"kafka": {"security_protocol": "SASL_SSL"}}},
            "SASL_SSL needs config.kafka.sasl_mechanism and config.kafka.sasl_username",
        ),
        (
            {
                "config": {
                    "kafka": {
                        "security_protocol": "SASL_PLAINTEXT",
                        "sasl_mechanism": "PLAIN",
                        "sasl_username": "u",
                    }
                }
            },
            r"set secret.values.kafkaSaslPassword, or secret.existingSecret",
        ),
        ({"kafkaTls": {"existingSecret": "kafka-ca"}}, "neither SSL nor SASL_SSL"),
        (
            {
                "config": {"kafka": {"security_protocol": "SSL"}},
                "kafkaTls": {"existingSecret": "ca", "certFileKey": "tls.crt"},
            },
            "must be set together",
        ),
        (
            {"secret": {"keys": {"zuoraClientSecret": ""}}},
            "secret.keys.zuoraClientSecret must name",
        ),
        (
            {"terminationGracePeriodSeconds": 10},
            "must exceed config.processing.shutdown_grace_seconds",
        ),
    ],
)
def test_templates_refuse_inconsistent_combinations(override: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(merged(load_values("minimal"), override))
