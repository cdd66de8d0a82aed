"""What every operator command does around its own work: settings and arguments refused with
exit status 2, one event loop, and each Kafka failure said once, without a secret."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from regen_sync.config import ConfigurationError, KafkaSettings
from regen_sync.operator.metadata import UnusableTopics
from regen_sync.operator.output import Redactor, describe_error
from regen_sync.operator.reading import ReadStalled

EXIT_REFUSED = 2


class CommandRefused(Exception):
    """Arguments, configuration or input a command refuses (exit 2); the message says why."""


class NothingToDo(Exception):
    """The arguments leave nothing to do: said on stdout, exit 0."""


@dataclass(frozen=True, slots=True)
class KafkaWork:
    """What a command runs once its settings and arguments are accepted."""

    kafka: KafkaSettings
    """Whose secrets never appear in what is printed."""
    run: Coroutine[Any, Any, int]
    """Its exit status."""


def run_kafka_command(
    command: str, prepare: Callable[[], KafkaWork], *, kafka_failed: int = 1
) -> int:
    """Runs ``regen-sync <command>``: ``prepare`` loads the settings and checks the arguments
    (ConfigurationError or CommandRefused: exit 2; NothingToDo: exit 0); then its work runs in
    a new event loop. Unusable topics exit 1 naming each; another Kafka failure exits
    ``kafka_failed``."""
    try:
        work = prepare()
    except (ConfigurationError, CommandRefused) as refusal:
        print(f"regen-sync {command}: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    except NothingToDo as nothing:
        print(f"regen-sync {command}: {nothing}")
        return 0
    redact = Redactor(kafka_secrets(work.kafka))
    quiet_aiokafka()
    try:
        return asyncio.run(work.run)
    except CommandRefused as refusal:
        print(redact(f"regen-sync {command}: {refusal}"), file=sys.stderr)
        return EXIT_REFUSED
    except UnusableTopics as unusable:
        for topic in unusable.topics:
            print(f"regen-sync {command}: topic {topic.name} {topic.problem}", file=sys.stderr)
        return 1
    except (KafkaError, OSError, TimeoutError, ReadStalled) as error:
        print(redact(f"regen-sync {command}: Kafka: {describe_error(error)}"), file=sys.stderr)
        return kafka_failed


def kafka_secrets(settings: KafkaSettings) -> list[str | None]:
    return [
        secret.get_secret_value() if secret else None
        for secret in (settings.sasl_password, settings.ssl_key_password)
    ]


def quiet_aiokafka() -> None:
    """Failures are reported once, by the command; aiokafka would log them again, with
    tracebacks."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
