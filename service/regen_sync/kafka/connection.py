"""Kafka connection security from settings, in FastStream's terms and in aiokafka's."""

from __future__ import annotations

import ssl
from typing import Any

from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from regen_sync.config import KafkaSettings


def kafka_security(settings: KafkaSettings) -> BaseSecurity | None:
    ssl_context = _ssl_context(settings) if settings.uses_tls else None
    if not settings.uses_sasl:
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True) if ssl_context else None
    assert settings.sasl_username is not None, "checked by KafkaSettings"
    assert settings.sasl_password is not None, "checked by KafkaSettings"
    mechanism = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }[settings.sasl_mechanism or "PLAIN"]
    return mechanism(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        ssl_context=ssl_context,
        use_ssl=settings.uses_tls,
    )


def aiokafka_connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """The same connection for a client built outside FastStream (the dead-letter producer)."""
    return {
        "bootstrap_servers": settings.bootstrap_server_list,
        "client_id": settings.client_id,
        **parse_security(kafka_security(settings)),
    }


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    # Verification stays on: the default context checks the chain and the host name.
    context = ssl.create_default_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
    )
    if settings.ssl_certfile and settings.ssl_keyfile:
        context.load_cert_chain(
            str(settings.ssl_certfile),
            str(settings.ssl_keyfile),
            password=settings.ssl_key_password.get_secret_value()
            if settings.ssl_key_password
            else None,
        )
    return context
