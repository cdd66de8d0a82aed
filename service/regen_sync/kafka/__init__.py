"""The Kafka adapter: reading input records, committing offsets, publishing outcomes."""

from regen_sync.kafka.committer import Committer, ConsumerSource
from regen_sync.kafka.connection import aiokafka_connection_options, kafka_security
from regen_sync.kafka.delivery import ReliableDelivery, ResultSink
from regen_sync.kafka.dispatcher import Dispatcher
from regen_sync.kafka.intake import Intake, parse_records_with_any_headers
from regen_sync.kafka.offsets import Offsets, Partition, Ticket
from regen_sync.kafka.publishing import KafkaResultSink

__all__ = [
    "Committer",
    "ConsumerSource",
    "Dispatcher",
    "Intake",
    "KafkaResultSink",
    "Offsets",
    "Partition",
    "ReliableDelivery",
    "ResultSink",
    "Ticket",
    "aiokafka_connection_options",
    "kafka_security",
    "parse_records_with_any_headers",
]
