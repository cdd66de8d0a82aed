"""The operator subcommands of ``regen-sync``: their arguments, and the handler that runs each
(``set_defaults(handler=...)``, as every subcommand registers itself).

The functions are imported when their command runs, so the other commands do not pay for
loading the Kafka and HTTP clients.
"""

from __future__ import annotations

import argparse
import datetime as dt

from regen_sync.domain import FailureReason
from regen_sync.operator.event_flags import add_event_arguments

CHECK_TIMEOUT_SECONDS = 10.0
SEND_TIMEOUT_SECONDS = 30.0
READ_TIMEOUT_SECONDS = 30.0


def add_operator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="preflight: configuration, broker, topics, Zuora token, SoftwareOne token",
        description="Checks everything `run` needs, one line per check; changes nothing. "
        "Exit 0 when all pass, 1 when one fails, 2 for invalid configuration.",
    )
    check.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=CHECK_TIMEOUT_SECONDS,
        help="seconds each check may take (default %(default)g)",
    )
    check.set_defaults(handler=_check)

    send = commands.add_parser(
        "send",
        help="publish input events: one (from flags or a file), or one per row of a CSV / "
        "JSONL file, optionally waiting for their results and writing a report",
        description="Publishes one input event, or one per row of --csv / --jsonl, to the "
        "configured input topic, validated as the service validates them (a batch is sent only "
        "when every row is valid). Needs only the REGEN_KAFKA__* / REGEN_TOPICS__* settings. "
        "Exit 0 when sent (with --wait: succeeded), 1 when not delivered, failed or no result "
        "in time, 2 for invalid configuration, arguments, event or rows.",
    )
    send.add_argument("--file", help="the event as CloudEvents JSON ('-' for stdin)")
    send.add_argument(
        "--allow-invalid",
        action="store_true",
        help="send an event the parser refuses, to test the failed / dead-letter path",
    )
    send.add_argument(
        "--count", type=_positive_int, default=1, help="send N copies, each with a fresh id"
    )
    send.add_argument(
        "--wait",
        action="store_true",
        help="wait for each event's result on the succeeded / failed topics and print it",
    )
    send.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=SEND_TIMEOUT_SECONDS,
        help="seconds to wait for results, and for each Kafka request (default %(default)g)",
    )
    rows = send.add_argument_group(
        "a batch from a file (with --type)",
        "One event per row: the columns (CSV) or keys (JSON Lines) are the `data` fields of "
        "--type. Every row is validated first; if one is invalid nothing is sent (exit 2) "
        "unless --skip-invalid. Row n gets the event id <batch>-n, so the same file sent "
        "again has the same ids and the same Zuora Idempotency-Keys. With --wait, the wait "
        "ends when every row has its result, or when none came for --timeout seconds.",
    )
    rows.add_argument(
        "--csv",
        metavar="FILE",
        help="a CSV file ('-' for stdin), header row of data field names; booleans "
        "TRUE/FALSE/yes/no/1/0, whole numbers 2 or 2.0, dates YYYY-MM-DD, list fields "
        "';'-separated, an empty cell for an absent field",
    )
    rows.add_argument(
        "--jsonl", metavar="FILE", help="a JSON Lines file ('-' for stdin): a data object a line"
    )
    rows.add_argument(
        "--batch",
        metavar="NAME",
        help="the event ids' prefix (default: batch- and 12 hex digits of the file's sha256)",
    )
    rows.add_argument(
        "--skip-invalid",
        action="store_true",
        help="send the valid rows, list the invalid ones, exit 1",
    )
    rows.add_argument(
        "--report",
        metavar="OUT.csv",
        help="with --wait: one line per row: row, eventId, outcome (succeeded, failed, "
        "no_result, invalid), reason, message, attempts, upstreamIds, deadLettered",
    )
    add_event_arguments(send)
    send.set_defaults(handler=_send)
    _add_redrive(commands)
    _add_trace(commands)


def _add_redrive(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    redrive = commands.add_parser(
        "redrive",
        help="republish dead-lettered events to the input topic, with their original event ids",
        description="Reads the dead-letter topic up to its end at start and republishes the "
        "selected dead letters to the input topic: original value and key, original headers "
        "without the regen-* ones, plus regen-redriven-from: <topic>/<partition>/<offset> and "
        "regen-redrive: <count> (one more than the record's own). The event id is unchanged; "
        "the re-drive count gives its Zuora calls Idempotency-Keys of their own, so Zuora "
        "does the work again instead of replaying the stored failure. Nothing is committed "
        "or removed from the dead-letter topic: running the same re-drive twice republishes "
        "twice with the same count, so Zuora answers the second from its store; SoftwareOne "
        "has no idempotency and regenerates a journal again. Filters combine (a dead letter "
        "must pass all). invalid_event dead letters are held back unless --reason "
        "invalid_event is given: sent unchanged, they fail again. Truncated dead letters are "
        "never re-driven. When an event was dead-lettered more than once, only its latest "
        "dead letter is re-driven. Needs only the REGEN_KAFKA__* / REGEN_TOPICS__* settings. "
        "Exit 0 when every selected dead letter was sent (or listed, with --dry-run), 1 when "
        "reading or sending failed, 2 for invalid configuration or arguments.",
    )
    redrive.add_argument(
        "--reason",
        action="append",
        choices=[reason.value for reason in FailureReason],
        metavar="REASON",
        help="only dead letters of this failure reason (repeatable; default: every reason "
        "but invalid_event): %(choices)s",
    )
    redrive.add_argument(
        "--since",
        type=_timestamp,
        metavar="TIME",
        help="only dead letters that failed at or after this ISO-8601 time (UTC unless it "
        "has an offset)",
    )
    redrive.add_argument(
        "--until", type=_timestamp, metavar="TIME", help="only those that failed before this time"
    )
    redrive.add_argument(
        "--event-id",
        action="append",
        metavar="ID",
        help="only the event with this CloudEvent id (repeatable)",
    )
    redrive.add_argument(
        "--csv",
        metavar="REPORT.csv",
        help="only the events listed in this CSV's eventId column, like repeating --event-id; "
        "with an outcome column (a `send --report`), only the rows whose outcome is failed",
    )
    redrive.add_argument(
        "--limit", type=_positive_int, metavar="N", help="at most N, oldest failure first"
    )
    redrive.add_argument("--to", metavar="TOPIC", help="republish here instead of the input topic")
    redrive.add_argument(
        "--dry-run", action="store_true", help="list what would be sent, and send nothing"
    )
    _add_reading_timeout(redrive)
    redrive.set_defaults(handler=_redrive)


def _add_trace(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = commands.add_parser(
        "trace",
        help="what happened to one event: its input records, dead letters and results",
        description="Finds, within the window, the input records with this CloudEvent id "
        "(re-driven ones included), its dead letters, and its results (data.sourceEventId; "
        "also when another event's coalesced call served it), and prints them as a timeline, "
        "oldest first. Each partition is read from the first offset of the window (ListOffsets "
        "by timestamp) to its end at start, without a consumer group; nothing is committed. "
        "Needs only the REGEN_KAFKA__* / REGEN_TOPICS__* settings. Exit 0 when the event has "
        "an outcome (a result after its latest input record; a failure is one), 1 when it was "
        "seen but has none yet, 2 when nothing of it is in the window or for invalid "
        "configuration or arguments, 3 when Kafka could not be read.",
    )
    trace.add_argument("event_id", metavar="EVENT_ID", help="the input event's CloudEvent id")
    trace.add_argument(
        "--since",
        default="24h",
        metavar="DURATION",
        help="how far back to look: 30s, 90m, 24h, 7d, or a sum such as 1h30m "
        "(default %(default)s)",
    )
    trace.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the timeline"
    )
    _add_reading_timeout(trace)
    trace.set_defaults(handler=_trace)


def _check(arguments: argparse.Namespace) -> int:
    from regen_sync.operator.check import check_command

    return check_command(arguments)


def _send(arguments: argparse.Namespace) -> int:
    from regen_sync.operator.send import send_command

    return send_command(arguments)


def _redrive(arguments: argparse.Namespace) -> int:
    from regen_sync.operator.redrive import redrive_command

    return redrive_command(arguments)


def _trace(arguments: argparse.Namespace) -> int:
    from regen_sync.operator.trace import trace_command

    return trace_command(arguments)


def _add_reading_timeout(command: argparse.ArgumentParser) -> None:
    """``--timeout`` of the commands that read topics (redrive, trace)."""
    command.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=READ_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="seconds each Kafka request, and each wait for records, may take "
        "(default %(default)g)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _timestamp(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "not an ISO-8601 time, e.g. 2026-11-21T10:00:00Z or 2026-11-21"
        ) from None
