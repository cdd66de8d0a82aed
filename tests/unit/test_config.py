"""Configuration: typed, from the environment or secret files, refused early by name."""

import subprocess
import sys
from pathlib import Path

import pytest

from regen_sync.config import ConfigurationError, load_settings

VALID = {
    "REGEN_KAFKA__BOOTSTRAP_SERVERS": "k1:9092, k2:9092",
    "REGEN_ZUORA__BASE_URL": "https://rest.zuora.com",
    "REGEN_ZUORA__CLIENT_ID": "client",
    "REGEN_ZUORA__CLIENT_SECRET": "s3cr3t-value",
    "REGEN_SOFTWAREONE__BASE_URL": "https://api.platform.softwareone.com",
    "REGEN_SOFTWAREONE__API_TOKEN": "token-value",
    "REGEN_SECRETS_DIR": "/nonexistent",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def problems(environment: pytest.MonkeyPatch) -> list[str]:
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    return raised.value.problems


def test_valid_environment(environment: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_server_list == ["k1:9092", "k2:9092"]
    assert settings.kafka.enable_idempotence is True
    assert settings.zuora.client_secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)
    assert settings.topics.input == "billing.data-fixed"


def test_missing_setting_is_named(environment: pytest.MonkeyPatch) -> None:
    environment.delenv("REGEN_ZUORA__CLIENT_SECRET")
    assert problems(environment) == ["REGEN_ZUORA__CLIENT_SECRET: Field required"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("REGEN_ZUORA__CLIENT_SECRET", "changeme", "placeholder"),
        ("REGEN_SOFTWAREONE__API_TOKEN", " ", "must not be empty"),
        ("REGEN_ZUORA__BASE_URL", "http://rest.zuora.com", "must use https"),
        ("REGEN_ZUORA__BASE_URL", "not a url", "URL"),
        ("REGEN_HTTP__PORT", "99999", "less than or equal to 65535"),
        ("REGEN_ZUORA__MAX_CONCURRENCY", "0", "greater than or equal to 1"),
        ("REGEN_CIRCUIT__OPEN_SECONDS", "0", "greater than 0"),
        ("REGEN_KAFKA__SECURITY_PROTOCOL", "SASL_SSL", "needs sasl_mechanism"),
        ("REGEN_TOPICS__FAILED", "billing.data-fixed", "must differ"),
        ("REGEN_TRACING__ENABLED", "true", "REGEN_TRACING__ENDPOINT is required"),
        ("REGEN_TRACING__SAMPLE_RATIO", "1.5", "less than or equal to 1"),
    ],
)
def test_bad_values_are_refused_by_name(
    environment: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    environment.setenv(name, value)
    [problem] = problems(environment)
    section = name.rsplit("__", 1)[0] if "__" in name else name
    assert problem.startswith(section), problem
    assert expected in problem
    assert value.strip() == "" or "changeme" not in problem


def test_secrets_can_come_from_files(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environment.delenv("REGEN_ZUORA__CLIENT_SECRET")
    (tmp_path / "REGEN_ZUORA__CLIENT_SECRET").write_text("from-a-file")
    environment.setenv("REGEN_SECRETS_DIR", str(tmp_path))
    assert load_settings().zuora.client_secret.get_secret_value() == "from-a-file"


def test_plain_http_is_allowed_for_the_local_sandbox(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("REGEN_ZUORA__BASE_URL", "http://127.0.0.1:8081")
    assert str(load_settings().zuora.base_url) == "http://127.0.0.1:8081/"


def test_run_fails_fast_naming_the_setting_and_hiding_secrets() -> None:
    env = {"PATH": "/usr/bin:/bin", "REGEN_SECRETS_DIR": "/nonexistent"} | {
        k: v for k, v in VALID.items() if k != "REGEN_KAFKA__BOOTSTRAP_SERVERS"
    }
    completed = subprocess.run(
        [sys.executable, "-m", "regen_sync", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "REGEN_KAFKA__BOOTSTRAP_SERVERS: Field required" in completed.stderr
    assert "s3cr3t-value" not in completed.stderr + completed.stdout
