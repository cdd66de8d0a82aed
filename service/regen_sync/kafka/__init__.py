"""The Kafka adapter: reading input records, committing offsets, publishing outcomes."""

from regen_sync.kafka.connection import aiokafka_connection_options, kafka_security
from regen_sync.kafka.dispatcher import Dispatcher, Group
from regen_sync.kafka.intake import Intake, parse_records_with_any_headers
from regen_sync.kafka.offsets import OffsetTracker, Partition
from regen_sync.kafka.publishing import KafkaResultSink

__all__ = [
    "Dispatcher",
    "Group",
    "Intake",
    "KafkaResultSink",
    "OffsetTracker",
    "Partition",
    "aiokafka_connection_options",
    "kafka_security",
    "parse_records_with_any_headers",
]
