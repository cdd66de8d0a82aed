"""The pod the chart runs: restricted security, probes that never restart pods for a broker
outage, enough time to drain on SIGTERM, and a rollout whenever settings change."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from rendering import VALUES_FILES, Release, render_file

from regen_sync.config import ProcessingSettings

# The image's TMPDIR: the one directory the process writes to.
IMAGE_TMPDIR = "/tmp"  # noqa: S108
# Volume types Kubernetes' "restricted" Pod Security Standard allows.
_RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What the "restricted" Pod Security Standard, plus the chart's own rules, would refuse."""
    problems = []
    pod_context = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"pod {field}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: {kinds}")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("service account token mounted")
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container.get("securityContext", {})
        name = container["name"]
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: privilege escalation not forbidden")
        capabilities = context.get("capabilities", {})
        if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
            problems.append(f"{name}: capabilities {capabilities}")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: may run as root")
        if 0 in (context.get("runAsUser"), pod_context.get("runAsUser")):
            problems.append(f"{name}: runs as uid 0")
        seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
        if seccomp.get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccomp {seccomp}")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: writable root filesystem")
        for port in container.get("ports", []):
            if "hostPort" in port:
                problems.append(f"{name}: hostPort")
    return problems


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_pods_meet_the_restricted_pod_security_standard(values_file: str) -> None:
    release = render_file(values_file)
    assert restricted_violations(release.pod_spec) == []
    for test_pod in release.all_of("Pod"):
        assert restricted_violations(test_pod["spec"]) == []
    for account in release.all_of("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_the_pod_check_catches_a_weakened_pod() -> None:
    pod = render_file("minimal").pod_spec
    context = pod["containers"][0]["securityContext"]
    context["readOnlyRootFilesystem"] = False
    context["capabilities"] = {"add": ["NET_ADMIN"]}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(pod)) == 3


def test_the_container_runs_as_the_images_user_and_writes_only_to_tmp() -> None:
    release = render_file("minimal")
    context = release.pod_spec["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (
        10001,
        10001,
        10001,
    )
    mounts = {mount["mountPath"]: mount for mount in release.container["volumeMounts"]}
    writable = [path for path, mount in mounts.items() if not mount.get("readOnly")]
    assert writable == [IMAGE_TMPDIR]
    volumes = {volume["name"]: volume for volume in release.pod_spec["volumes"]}
    assert "emptyDir" in volumes[mounts[IMAGE_TMPDIR]["name"]]


def test_openshift_can_drop_the_fixed_ids() -> None:
    release = render_file(
        "minimal", {"securityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None}}
    )
    assert release.pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_probes_use_the_services_health_endpoints_on_its_http_port(values_file: str) -> None:
    release = render_file(values_file)
    container = release.container
    [port] = container["ports"]
    assert port["name"] == "http"
    assert str(port["containerPort"]) == release.settings_env.get("REGEN_HTTP__PORT", "8080")
    probes = {
        kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    # Liveness and start-up never depend on Kafka; readiness does.
    assert probes == {
        "startupProbe": ("/health/live", "http"),
        "livenessProbe": ("/health/live", "http"),
        "readinessProbe": ("/health/ready", "http"),
    }
    # /health/ready pings the broker with a 2 s timeout; the probe must wait longer.
    assert container["readinessProbe"]["timeoutSeconds"] > 2


def _grace(release: Release) -> float:
    default = ProcessingSettings.model_fields["shutdown_grace_seconds"].default
    return float(release.settings_env.get("REGEN_PROCESSING__SHUTDOWN_GRACE_SECONDS", default))


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_kubernetes_waits_longer_than_the_shutdown_grace(values_file: str) -> None:
    release = render_file(values_file)
    assert release.pod_spec["terminationGracePeriodSeconds"] > _grace(release)


def test_the_termination_grace_follows_the_shutdown_grace() -> None:
    assert render_file("minimal").pod_spec["terminationGracePeriodSeconds"] == 20 + 15
    longer = render_file("minimal", {"config": {"processing": {"shutdown_grace_seconds": 50.5}}})
    assert longer.pod_spec["terminationGracePeriodSeconds"] == 51 + 15
    with pytest.raises(helm_python.HelmRenderError, match="must exceed"):
        render_file("minimal", {"terminationGracePeriodSeconds": 20})


def _checksums(release: Release) -> tuple[str, str]:
    annotations = release.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    return annotations["checksum/config"], annotations["checksum/secret"]


def test_a_changed_setting_or_credential_rolls_the_pods() -> None:
    config, secret = _checksums(render_file("minimal"))
    changed_setting = _checksums(render_file("minimal", {"config": {"log": {"level": "DEBUG"}}}))
    changed_credential = _checksums(
        render_file("minimal", {"secret": {"values": {"softwareoneApiToken": "rotated-token"}}})
    )
    other_secret = _checksums(render_file("minimal", {"secret": {"existingSecret": "rotated"}}))
    unrelated = _checksums(render_file("minimal", {"replicaCount": 2}))
    assert changed_setting[0] != config
    assert changed_setting[1] == secret
    assert changed_credential[0] == config
    assert changed_credential[1] != secret
    assert other_secret[1] != secret
    assert unrelated == (config, secret)


def test_the_deployment_keeps_a_consumer_while_rolling() -> None:
    deployment = render_file("minimal").one("Deployment")["spec"]
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert render_file("minimal").pod_spec["enableServiceLinks"] is False


def test_disruption_budget_lets_one_pod_go_at_a_time() -> None:
    release = render_file("all-options")
    budget = release.one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == "25%"
    labels = release.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert render_file("minimal").one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_spread_constraints_select_the_releases_pods() -> None:
    release = render_file("all-options")
    selector = release.one("Deployment")["spec"]["selector"]["matchLabels"]
    constraints = release.pod_spec["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    assert all(c["labelSelector"] == {"matchLabels": selector} for c in constraints)


def test_image_is_pinned_by_digest_or_the_chart_version() -> None:
    assert render_file("minimal").container["image"] == "regen-sync:0.1.0"
    assert render_file("all-options").container["image"] == (
        "registry.example.com/billing/regen-sync@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
