"""``regen-sync-sandbox`` / ``python -m regen_sync_sandbox``: serve the upstream simulator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from regen_sync_sandbox.server import SandboxConfig, serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="regen-sync-sandbox",
        description="Serve a local simulator of the Zuora and SoftwareOne APIs regen-sync calls.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every answer")
    parser.add_argument("--client-id", default="sandbox-client")
    parser.add_argument("--client-secret", default="sandbox-client-secret")
    parser.add_argument("--api-token", default="sandbox-api-token")
    parser.add_argument(
        "--concurrency-limit", type=int, default=40, help="Zuora requests at once; 0 = no limit"
    )
    parser.add_argument("--token-ttl-seconds", type=int, default=3600)
    parser.add_argument(
        "--no-idempotency-store",
        dest="idempotency_store",
        action="store_false",
        help="for experiments only: do not store and replay Zuora answers by Idempotency-Key "
        "(Zuora does)",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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


if __name__ == "__main__":
    sys.exit(main())
