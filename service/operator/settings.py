"""The part of the service's settings a Kafka-only command needs.

``send`` talks to Kafka alone, so it must work where only the ``REGEN_KAFKA__*`` and
``REGEN_TOPICS__*`` variables are set (an operator's laptop, a CI job), while reading them
exactly as the service does: same sections, same sources (environment, then secret files),
same error lines naming each variable.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from service.config import (
    KafkaSettings,
    ProcessingSettings,
    Settings,
    TopicSettings,
    load_settings,
)


class KafkaClientSettings(BaseSettings):
    model_config = Settings.model_config

    kafka: KafkaSettings
    topics: TopicSettings = TopicSettings()
    # Only for max_event_bytes: an event the service would refuse as too large is invalid.
    processing: ProcessingSettings = ProcessingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return Settings.settings_customise_sources(
            settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        )


def load_kafka_client_settings() -> KafkaClientSettings:
    """Like ``load_settings()``, without requiring the upstream sections."""
    return load_settings(KafkaClientSettings)
