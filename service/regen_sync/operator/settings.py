"""The part of the service's settings a Kafka-only command needs.

``send`` talks to Kafka alone, so it must work where only the ``REGEN_KAFKA__*`` and
``REGEN_TOPICS__*`` variables are set (an operator's laptop, a CI job), while reading them
exactly as the service does: same sections, same sources (environment, then secret files),
same error lines naming each variable.
"""

from __future__ import annotations

from regen_sync.config import (
    EnvironmentSettings,
    KafkaSettings,
    ProcessingSettings,
    TopicSettings,
    load_settings,
)


class KafkaClientSettings(EnvironmentSettings):
    kafka: KafkaSettings
    topics: TopicSettings = TopicSettings()
    # Only for max_event_bytes: an event the service would refuse as too large is invalid.
    processing: ProcessingSettings = ProcessingSettings()


def load_kafka_client_settings() -> KafkaClientSettings:
    """Like ``load_settings()``, without requiring the upstream sections."""
    return load_settings(KafkaClientSettings)
