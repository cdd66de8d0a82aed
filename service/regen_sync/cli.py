"""The ``regen-sync`` command: ``run`` the service, write its ``schemas``, operator commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from regen_sync.config import ConfigurationError, Settings, load_settings
from regen_sync.observability import configure_logging
from regen_sync.operator import add_operator_commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="regen-sync",
        description="Regenerates Zuora / SoftwareOne billing data when 'data fixed' events "
        "arrive on Kafka, and publishes the outcome.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="consume events and regenerate (configured by REGEN_* variables)"
    )
    run.set_defaults(handler=_run)
    schemas = commands.add_parser(
        "schemas", help="write the JSON Schemas and the AsyncAPI document generated from the code"
    )
    schemas.add_argument("--dir", default="schemas", help="target directory")
    schemas.set_defaults(handler=_schemas)
    add_operator_commands(commands)
    arguments = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    return handler(arguments)


def _schemas(arguments: argparse.Namespace) -> int:
    from regen_sync.schemas import write_schemas

    for path in write_schemas(Path(arguments.dir)):
        print(path)
    return 0


def _run(arguments: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"regen-sync: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level)
    # uvicorn drains on SIGTERM, then raises the signal again once shut down; ending with
    # exit status 0 there tells the orchestrator the shutdown was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    from regen_sync.app import create_app

    # Assembled inside the running loop: aiokafka binds a client to the loop it is built in.
    app = create_app(settings)
    await app.run(
        log_level=logging.getLevelName(settings.log.level),
        run_extra_options={
            "host": settings.http.host,
            "port": settings.http.port,
            "access_log": "false",
            # uvicorn would replace the JSON logging configured above.
            "log_config": None,
        },
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
