"""The Kafka adapter: reading input records, committing offsets, publishing outcomes."""

from regen_sync.kafka.connection import aiokafka_connection_options, kafka_security
from regen_sync.kafka.delivery import ReliableDelivery, ResultSink
from regen_sync.kafka.dispatcher import Dispatcher
from regen_sync.kafka.intake import Intake, parse_records_with_any_headers
from regen_sync.kafka.offsets import OffsetTracker, Partition
from regen_sync.kafka.publishing import KafkaResultSink

__all__ = [
    "Dispatcher",
    "Intake",
    "KafkaResultSink",
    "OffsetTracker",
    "Partition",
    "ReliableDelivery",
    "ResultSink",
    "aiokafka_connection_options",
    "kafka_security",
    "parse_records_with_any_headers",
]
