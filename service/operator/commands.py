"""The operator subcommands of ``regen-sync``: their arguments, and which function runs each.

The functions are imported when their command runs, so the other commands do not pay for
loading the Kafka and HTTP clients.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from service.operator.event_flags import add_event_arguments

CHECK_TIMEOUT_SECONDS = 10.0
SEND_TIMEOUT_SECONDS = 30.0


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
    check.set_defaults(operator_command=_check)

    send = commands.add_parser(
        "send",
        help="publish a valid input event (from flags or a file) for a smoke test",
        description="Publishes one input event to the configured input topic, validated as "
        "the service validates it. Needs only the REGEN_KAFKA__* / REGEN_TOPICS__* settings. "
        "Exit 0 when sent (with --wait: succeeded), 1 when not delivered, failed or no result "
        "in time, 2 for invalid configuration, arguments or event.",
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
    add_event_arguments(send)
    send.set_defaults(operator_command=_send)


def run_operator_command(arguments: argparse.Namespace) -> int | None:
    """The exit status of the operator command parsed, or None when another was parsed."""
    command: Callable[[argparse.Namespace], int] | None = getattr(
        arguments, "operator_command", None
    )
    return None if command is None else command(arguments)


def _check(arguments: argparse.Namespace) -> int:
    from service.operator.check import check_command

    return check_command(arguments)


def _send(arguments: argparse.Namespace) -> int:
    from service.operator.send import send_command

    return send_command(arguments)


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
