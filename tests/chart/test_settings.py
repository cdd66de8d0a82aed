"""The service accepts what the chart renders: the ConfigMap's variables and the credential files
are read back by the service's own settings loader, as they would be in the pod."""

from __future__ import annotations

import base64
import os
import typing
from pathlib import Path
from typing import Any

import helm_python
import pytest
from pydantic import BaseModel, SecretStr
from rendering import Release, chart_default_values, generator, render, render_file

from regen_sync.config import Settings, load_settings

# What the existing Secrets named in the values files hold, by Secret name.
EXISTING_SECRETS = {
    "regen-sync-credentials": {
        "zuora-client-secret": "zuora-secret-from-vault",
        "softwareone-api-token": "softwareone-token-from-vault",
        "kafka-sasl-password": "kafka-password-from-vault",
    },
    "kafka-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"},
    "kafka-client-tls": {"ca.crt": "ca", "tls.crt": "cert", "tls.key": "key"},
}
# The name Kubernetes gives a pod of the Deployment, for the downward API.
POD_NAME = "regen-sync-ci-7d4b9c8f6d-x2k9q"


def _secret_contents(release: Release) -> dict[str, dict[str, str]]:
    contents = {name: dict(data) for name, data in EXISTING_SECRETS.items()}
    for secret in release.all_of("Secret"):
        contents[secret["metadata"]["name"]] = {
            key: base64.b64decode(value).decode() for key, value in secret["data"].items()
        }
    return contents


def pod_environment(release: Release, root: Path) -> dict[str, str]:
    """The container's settings environment, with every mounted Secret materialised under
    ``root`` and the variables that point into those mounts rewritten to match, and the
    variables the pod's own name fills in."""
    env = dict(release.settings_env)
    for variable in release.container.get("env", []):
        field = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field == "metadata.name" and variable["name"].startswith("REGEN_"):
            env[variable["name"]] = POD_NAME
    contents = _secret_contents(release)
    volumes = {volume["name"]: volume for volume in release.pod_spec["volumes"]}
    for mount in release.container["volumeMounts"]:
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        local = root / mount["name"]
        local.mkdir()
        data = contents[source["secretName"]]
        for item in source["items"]:
            (local / item["path"]).write_text(data[item["key"]])
        for name, value in env.items():
            if value == mount["mountPath"] or value.startswith(mount["mountPath"] + "/"):
                env[name] = str(local) + value.removeprefix(mount["mountPath"])
    return env


def load_in_pod(release: Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [name for name in os.environ if name.startswith("REGEN_")]:
        monkeypatch.delenv(name)
    for name, value in pod_environment(release, tmp_path).items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_every_option_reaches_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_in_pod(render_file("all-options"), tmp_path, monkeypatch)
    assert settings.zuora.client_secret.get_secret_value() == "zuora-client-secret-value"
    assert settings.softwareone.api_token.get_secret_value() == "softwareone-api-token-value"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "kafka-sasl-password-value"
    assert settings.kafka.ssl_key_password is not None
    assert settings.kafka.ssl_key_password.get_secret_value() == "kafka-ssl-key-password-value"
    tls_files = (settings.kafka.ssl_cafile, settings.kafka.ssl_certfile, settings.kafka.ssl_keyfile)
    assert [path.read_text() if path else None for path in tls_files] == ["ca", "cert", "key"]
    assert (settings.kafka.security_protocol, settings.kafka.sasl_mechanism) == (
        "SASL_SSL",
        "SCRAM-SHA-256",
    )
    assert settings.processing.max_event_bytes == 2097152
    assert settings.zuora.timeout_seconds == 45.5
    assert settings.zuora.billing_id_field == "documentId"
    assert (settings.http.port, settings.log.level) == (9090, "DEBUG")
    assert settings.event_source == "urn:regen-sync:ci"
    assert settings.kafka.group_instance_id == POD_NAME
    assert (settings.zuora.max_concurrency, settings.softwareone.max_concurrency) == (24, 12)


@pytest.mark.parametrize("values_file", ["minimal", "hpa", "production"])
def test_the_service_starts_with_each_values_file(
    values_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render_file(values_file)
    settings = load_in_pod(release, tmp_path, monkeypatch)
    assert (
        settings.kafka.bootstrap_servers == release.settings_env["REGEN_KAFKA__BOOTSTRAP_SERVERS"]
    )


def test_production_example_uses_the_existing_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = render_file("production")
    assert "Secret" not in release.kinds()
    settings = load_in_pod(release, tmp_path, monkeypatch)
    assert settings.zuora.client_secret.get_secret_value() == "zuora-secret-from-vault"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "kafka-password-from-vault"
    assert settings.kafka.ssl_cafile is not None
    assert settings.kafka.ssl_cafile.read_text() == "-----BEGIN CERTIFICATE-----\n"


def _default(model: type[BaseModel], field: str) -> Any:
    return model.model_fields[field].default


def test_every_setting_renders_in_a_form_the_service_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All settings set explicitly to their defaults (integers, floats, booleans, enums) survive
    Helm's number formatting and the ConfigMap."""
    generate = generator()
    required = {
        ("kafka", "bootstrap_servers"): "kafka-0.kafka:9092",
        ("zuora", "base_url"): "https://rest.zuora.com",
        ("zuora", "client_id"): "client",
        ("softwareone", "base_url"): "https://api.platform.softwareone.com",
    }
    config: dict[str, Any] = {}
    expected: dict[tuple[str, ...], Any] = {}
    for setting in generate.settings():
        value = setting.schema.get("default", required.get(setting.path))
        if value is None:
            continue
        *sections, field = setting.path
        target = config
        for section in sections:
            target = target.setdefault(section, {})
        target[field] = value
        expected[setting.path] = value
    release = render_file("minimal", {"config": config})
    settings = load_in_pod(release, tmp_path, monkeypatch)
    for path, value in expected.items():
        loaded: Any = settings
        for part in path:
            loaded = getattr(loaded, part)
        # A URL comes back normalised, with a trailing slash.
        assert (str(loaded).rstrip("/") if path[-1] == "base_url" else loaded) == value, path


def _secret_variables() -> set[str]:
    """The variable of every setting the service treats as a secret."""
    names = set()
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for name, leaf in model.model_fields.items():
            if SecretStr in (leaf.annotation, *typing.get_args(leaf.annotation)):
                names.add(f"REGEN_{section.upper()}__{name.upper()}")
    return names


def test_credentials_are_files_named_like_the_services_secret_settings() -> None:
    release = render_file("all-options")
    [credentials] = [
        volume for volume in release.pod_spec["volumes"] if volume["name"] == "credentials"
    ]
    files = {item["path"] for item in credentials["secret"]["items"]}
    assert files == _secret_variables()
    mount = next(m for m in release.container["volumeMounts"] if m["name"] == "credentials")
    assert release.settings_env["REGEN_SECRETS_DIR"] == mount["mountPath"]


@pytest.mark.parametrize("values_file", ["all-options", "minimal"])
def test_no_credential_is_in_the_environment(values_file: str) -> None:
    release = render_file(values_file)
    data = release.one("Secret")["data"].values()
    plain = {base64.b64decode(value).decode() for value in data}
    visible = [*release.settings_env.values(), *map(str, release.container.get("env", []))]
    assert not [value for value in visible if any(secret in value for secret in plain)]
    assert not any(variable in release.settings_env for variable in _secret_variables())


def test_the_chart_defaults_are_the_services_defaults() -> None:
    """values.yaml spells out the settings the chart itself depends on (ports, grace, consumer
    group, topic); they must not drift from the service's defaults."""
    defaults = chart_default_values()["config"]
    for section, fields in defaults.items():
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for field, value in fields.items():
            if model.model_fields[field].is_required():
                continue
            assert value == _default(model, field), f"config.{section}.{field}"


def test_a_secret_setting_is_refused_under_config() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="sasl_password"):
        render({"config": {"kafka": {"sasl_password": "in-a-configmap"}}})
