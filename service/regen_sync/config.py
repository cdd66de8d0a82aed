"""All configuration of regen-sync, read once at start-up from the environment.

Every setting is an environment variable with the prefix ``REGEN_`` and ``__`` between a
section and its field (``REGEN_ZUORA__CLIENT_SECRET``). Secrets may instead be files in
``REGEN_SECRETS_DIR`` named like the variable (a Kubernetes secret volume). Anything
invalid stops the service before it connects to anything, naming the variable.
"""

from __future__ import annotations

import os
from typing import Literal, Self, TypeVar, overload

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "REGEN_"
NESTED_DELIMITER = "__"
DEFAULT_SECRETS_DIR = "/run/secrets/regen-sync"

# Values that only ever appear in copied examples; running with them is a mistake.
_PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "changethis", "change-me", "secret", "password", "xxx", "todo", "<secret>"}
)
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _refuse_placeholder(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    if not raw.strip():
        raise ValueError("must not be empty")
    if raw.strip().lower() in _PLACEHOLDER_SECRETS:
        raise ValueError("is a placeholder value; set the real secret")
    return value


def _require_tls_off_loopback(url: AnyHttpUrl) -> AnyHttpUrl:
    # Plain HTTP is only acceptable for the local sandbox; credentials must never
    # cross a network unencrypted.
    if url.scheme != "https" and url.host not in _LOOPBACK_HOSTS:
        raise ValueError("must use https (http is allowed only for 127.0.0.1/localhost)")
    return url


class KafkaSettings(BaseModel):
    bootstrap_servers: str = Field(
        min_length=1, description="Comma-separated host:port list of Kafka brokers."
    )
    group_id: str = Field(default="regen-sync", min_length=1)
    client_id: str = Field(default="regen-sync", min_length=1)
    enable_idempotence: bool = Field(
        default=True, description="Idempotent producer (needs a broker that supports it)."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a new consumer group starts; 'earliest' so no event is skipped.",
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        le=60_000,
        description="Longest the broker may hold a fetch that finds no new records. Kafka "
        "answers as soon as records arrive; some Kafka-protocol brokers (Tansu) only when "
        "this runs out, so it bounds the latency of a caught-up consumer there.",
    )
    max_poll_records: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Records handed over per poll; each is admitted on its own, so this only "
        "amortises the per-poll overhead.",
    )
    max_request_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024 * 1024,
        le=100 * 1024 * 1024,
        description="Largest record the service sends (a dead letter is the input record plus "
        "about 1 KiB of headers) and what its consumer fetches per partition. Keep it above the "
        "input topic's max.message.bytes, so that any record the broker accepted is read and "
        "dead-lettered whole; the dead-letter topic's max.message.bytes must be at least as "
        "large. Only a dead letter refused as too large (by the broker, or above this) is cut "
        "to 64 KiB (regen_dead_letters_truncated_total). Values below the processing "
        "max_event_bytes plus 16 KiB are raised to that.",
    )
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        description="Static group membership (KIP-345): a member that comes back under the "
        "same id within the session timeout gets its partitions back without a rebalance. "
        "Must be unique in the group and stable across restarts of one member (the chart "
        "passes the pod name). Unset: dynamic membership.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: FilePath | None = Field(default=None, description="CA bundle for broker TLS.")
    ssl_certfile: FilePath | None = Field(default=None, description="Client cert (mTLS).")
    ssl_keyfile: FilePath | None = Field(default=None, description="Client key (mTLS).")
    ssl_key_password: SecretStr | None = None

    @property
    def bootstrap_server_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Self:
        if self.uses_sasl:
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be set together (mTLS)")
        return self


class TopicSettings(BaseModel):
    input: str = Field(default="billing.data-fixed", min_length=1)
    succeeded: str = Field(default="regen-sync.succeeded", min_length=1)
    failed: str = Field(default="regen-sync.failed", min_length=1)
    dead_letter: str = Field(default="regen-sync.dead-letter", min_length=1)

    @model_validator(mode="after")
    def _outputs_differ_from_input(self) -> Self:
        outputs = {self.succeeded, self.failed, self.dead_letter}
        if self.input in outputs:
            raise ValueError("the input topic must differ from every output topic")
        return self


_GROUP_BUDGET = (
    "Budget of the whole consumer group, not of one replica: each replica uses budget x "
    "its assigned input partitions / all input partitions (at least 1 while it has any). "
)
_CONCURRENCY_BUDGET = (
    _GROUP_BUDGET + "Calls in progress at once (per Zuora entity when events name one); each "
    "replica's share is lowered further on 429 and when the upstream reports little headroom."
)
_RATE_BUDGET = _GROUP_BUDGET + "Requests a minute (per Zuora entity when events name one)."


class UpstreamHttpSettings(BaseModel):
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    verify_tls: bool = Field(default=True, description="Never turn off outside a lab.")
    max_concurrency: int = Field(default=10, ge=1, le=1000, description=_CONCURRENCY_BUDGET)
    requests_per_minute: int = Field(default=3000, ge=1, description=_RATE_BUDGET)


class ZuoraSettings(UpstreamHttpSettings):
    base_url: AnyHttpUrl
    # Zuora allows 40 concurrent requests per tenant by default and advises headroom: the
    # tenant is shared with other integrations.
    max_concurrency: int = Field(default=20, ge=1, le=1000, description=_CONCURRENCY_BUDGET)
    # Production tenants allow 50,000 requests/min; an API Sandbox only 2,500.
    requests_per_minute: int = Field(default=30_000, ge=1, description=_RATE_BUDGET)
    heavy_max_concurrency: int = Field(
        default=10,
        ge=1,
        le=1000,
        description=_GROUP_BUDGET + "Invoice generation calls in progress at once (Zuora "
        "allows fewer heavy requests at once than ordinary ones, about 20 of a tenant's 40); "
        "they count towards max_concurrency too.",
    )
    invoice_api: Literal["action-generate", "billing-documents"] = Field(
        default="action-generate",
        description="How account.charges.fixed generates invoices: POST /v1/action/generate, "
        "or POST /v1/accounts/{accountId}/billing-documents/generate, which tenants with "
        "Orders or Invoice Settlement need (action/generate does not support them).",
    )
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    billing_id_field: Literal["id", "documentId"] = Field(
        default="id",
        description="Body field for a billing document's id: 'documentId' on tenants "
        "still on the 2023 API.",
    )
    token_refresh_margin_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Refresh the OAuth token this long before it expires.",
    )

    _client_secret_is_real = field_validator("client_secret")(_refuse_placeholder)
    _base_url_is_tls = field_validator("base_url")(_require_tls_off_loopback)


class SoftwareOneSettings(UpstreamHttpSettings):
    base_url: AnyHttpUrl
    api_token: SecretStr

    _api_token_is_real = field_validator("api_token")(_refuse_placeholder)
    _base_url_is_tls = field_validator("base_url")(_require_tls_off_loopback)


class HttpServerSettings(BaseModel):
    host: str = "0.0.0.0"  # noqa: S104 - a pod must answer probes on its own address
    port: int = Field(default=8080, ge=1, le=65535)


class CircuitSettings(BaseModel):
    failure_threshold: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Distinct events failing transiently in a row (no success between) that "
        "open an upstream's circuit; one event failing repeatedly never opens it.",
    )
    open_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="Wait before the first probe of an open circuit."
    )
    max_open_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Upper bound of the doubling wait between probes."
    )

    @model_validator(mode="after")
    def _open_bounds(self) -> Self:
        if self.max_open_seconds < self.open_seconds:
            raise ValueError("max_open_seconds must be >= open_seconds")
        return self


class ProcessingSettings(BaseModel):
    max_in_flight: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Events read but not yet finished, per upstream; fetching pauses when reached.",
    )
    max_handling_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Tries at handling an event that raises an unexpected error before it is "
        "failed as internal_error.",
    )
    max_attempts: int = Field(
        default=6, ge=1, le=100, description="Upstream attempts per event, first one included."
    )
    backoff_initial_seconds: float = Field(default=0.5, gt=0, le=60)
    backoff_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_retry_after_seconds: float = Field(
        default=300.0, gt=0, description="Upper bound on an upstream's Retry-After."
    )
    max_event_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger input records are invalid events."
    )
    shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, description="On SIGTERM, time given to in-flight events to finish."
    )
    rebalance_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On partition revocation, time given to the revoked partitions' events to "
        "finish before the finished ones are committed; the group's rebalance waits for it.",
    )
    coalesce: bool = Field(
        default=True,
        description="Serve events waiting for the same object, operation and flags with one "
        "upstream call (each still gets its own result).",
    )
    commit_interval_seconds: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _backoff_bounds(self) -> Self:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must be >= backoff_initial_seconds")
        return self


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class TracingSettings(BaseModel):
    enabled: bool = Field(
        default=False,
        description="Export OpenTelemetry traces: one per event, from consume through the "
        "upstream calls to the result's publication.",
    )
    endpoint: AnyHttpUrl | None = Field(
        default=None,
        description="OTLP/HTTP (protobuf) traces endpoint, e.g. "
        "http://otel-collector:4318/v1/traces. Required when tracing is enabled.",
    )
    sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of new traces recorded; an input event's sampled traceparent is "
        "always followed.",
    )
    service_name: str = Field(default="regen-sync", min_length=1)

    @model_validator(mode="after")
    def _endpoint_when_enabled(self) -> Self:
        if self.enabled and self.endpoint is None:
            raise ValueError(
                f"{ENV_PREFIX}TRACING{NESTED_DELIMITER}ENDPOINT is required when tracing is enabled"
            )
        return self


class EnvironmentSettings(BaseSettings):
    """Read from ``REGEN_*`` variables, then from secret files named like them: the sources
    of every settings class (the service's, and the subsets operator commands load)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        case_sensitive=False,
        extra="ignore",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secret_files = NestedSecretsSettingsSource(
            file_secret_settings,
            secrets_dir=os.environ.get(f"{ENV_PREFIX}SECRETS_DIR", DEFAULT_SECRETS_DIR),
            secrets_dir_missing="ok",
            secrets_prefix=ENV_PREFIX,
            secrets_nested_delimiter=NESTED_DELIMITER,
        )
        # Environment wins over files so an operator can override a mounted secret.
        return init_settings, env_settings, secret_files


class Settings(EnvironmentSettings):
    kafka: KafkaSettings
    topics: TopicSettings = TopicSettings()
    zuora: ZuoraSettings
    softwareone: SoftwareOneSettings
    http: HttpServerSettings = HttpServerSettings()
    processing: ProcessingSettings = ProcessingSettings()
    circuit: CircuitSettings = CircuitSettings()
    log: LogSettings = LogSettings()
    tracing: TracingSettings = TracingSettings()
    event_source: str = Field(
        default="urn:regen-sync",
        min_length=1,
        description="CloudEvents 'source' of the events regen-sync publishes.",
    )


class ConfigurationError(Exception):
    """Raised at start-up with one line per invalid setting, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def _variable_name(location: tuple[str, ...]) -> str:
    return ENV_PREFIX + NESTED_DELIMITER.join(field.upper() for field in location)


AnySettings = TypeVar("AnySettings", bound=BaseSettings)


@overload
def load_settings() -> Settings: ...


@overload
def load_settings(settings_class: type[AnySettings]) -> AnySettings: ...


def load_settings(settings_class: type[BaseSettings] = Settings) -> BaseSettings:
    """Read and validate the settings, or raise ConfigurationError naming each bad variable.

    ``settings_class`` lets a command that needs fewer sections (``send``) read them the same
    way and report the same error lines."""
    try:
        return settings_class()
    except ValidationError as error:
        problems = []
        for detail in error.errors(include_input=False, include_url=False):
            # Secret values never reach this message: inputs are excluded above.
            for location in _missing_leaves(settings_class, tuple(detail["loc"]), detail["type"]):
                problems.append(f"{_variable_name(location)}: {detail['msg']}")
        raise ConfigurationError(problems) from None


def _missing_leaves(
    settings_class: type[BaseSettings], location: tuple[int | str, ...], error_type: str
) -> list[tuple[str, ...]]:
    """A whole missing section is reported as the variables it needs, which is what to set."""
    section = settings_class.model_fields.get(str(location[0])) if len(location) == 1 else None
    model = section.annotation if section is not None else None
    if error_type != "missing" or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return [tuple(str(part) for part in location if isinstance(part, str))]
    return [
        (str(location[0]), name)
        for name, field in model.model_fields.items()
        if field.is_required()
    ]


__all__ = [
    "ConfigurationError",
    "HttpServerSettings",
    "KafkaSettings",
    "ProcessingSettings",
    "Settings",
    "SoftwareOneSettings",
    "TopicSettings",
    "ZuoraSettings",
    "load_settings",
]
