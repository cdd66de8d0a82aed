"""The ``regen-sync`` command: ``run`` the service, or serve the upstream ``sandbox``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from service.config import ConfigurationError, load_settings
from service.observability import configure_logging
from service.operator import add_operator_commands, run_operator_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="regen-sync",
        description="Regenerates Zuora / SoftwareOne billing data when 'data fixed' events "
        "arrive on Kafka, and publishes the outcome.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", help="consume events and regenerate (configured by REGEN_* variables)"
    )
    sandbox = commands.add_parser(
        "sandbox", help="serve a local simulator of the Zuora and SoftwareOne APIs"
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8081)
    sandbox.add_argument("--latency-ms", type=int, default=0, help="added to every answer")
    sandbox.add_argument("--client-id", default="sandbox-client")
    sandbox.add_argument("--client-secret", default="sandbox-client-secret")
    sandbox.add_argument("--api-token", default="sandbox-api-token")
    sandbox.add_argument(
        "--concurrency-limit", type=int, default=40, help="Zuora requests at once; 0 = no limit"
    )
    sandbox.add_argument("--token-ttl-seconds", type=int, default=3600)
    sandbox.add_argument(
        "--no-idempotency-store",
        dest="idempotency_store",
        action="store_false",
        help="for experiments only: do not store and replay Zuora answers by Idempotency-Key "
        "(Zuora does)",
    )
    schemas = commands.add_parser(
        "schemas", help="write the JSON Schemas and the AsyncAPI document generated from the code"
    )
    schemas.add_argument("--dir", default="schemas", help="target directory")
    add_operator_commands(commands)
    arguments = parser.parse_args(argv)
    if (status := run_operator_command(arguments)) is not None:
        return status

    if arguments.command == "run":
        return _run()
    if arguments.command == "schemas":
        from service.schemas import write_schemas

        for path in write_schemas(Path(arguments.dir)):
            print(path)
        return 0
    return _sandbox(arguments)


def _run() -> int:
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"regen-sync: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level)
    from service.app import create_app

    app = create_app(settings)
    # uvicorn drains on SIGTERM, then raises the signal again once shut down; ending with
    # exit status 0 there tells the orchestrator the shutdown was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    asyncio.run(
        app.run(
            log_level=logging.getLevelName(settings.log.level),
            run_extra_options={
                "host": settings.http.host,
                "port": settings.http.port,
                "access_log": "false",
                # uvicorn would replace the JSON logging configured above.
                "log_config": None,
            },
        )
    )
    return 0


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _sandbox(arguments: argparse.Namespace) -> int:
    from service.sandbox import SandboxConfig, serve

    configure_logging("INFO")
    asyncio.run(
        serve(
            SandboxConfig(
                host=arguments.host,
                port=arguments.port,
                latency_ms=arguments.latency_ms,
                client_id=arguments.client_id,
                client_secret=arguments.client_secret,
                api_token=arguments.api_token,
                concurrency_limit=arguments.concurrency_limit,
                token_ttl_seconds=arguments.token_ttl_seconds,
                idempotency_store=arguments.idempotency_store,
            )
        )
    )
    return 0
