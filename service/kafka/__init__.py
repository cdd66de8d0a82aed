"""The Kafka adapter: reading input records, committing offsets, publishing outcomes."""

from service.kafka.connection import aiokafka_connection_options, kafka_security
from service.kafka.dispatcher import Dispatcher, Group
from service.kafka.intake import Intake, parse_records_with_any_headers
from service.kafka.offsets import OffsetTracker, Partition
from service.kafka.publishing import KafkaResultSink

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
