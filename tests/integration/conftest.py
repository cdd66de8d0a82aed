"""Fixtures of the real stack for integration tests: Tansu broker, the sandbox, and regen-sync
itself, each a separate process on 127.0.0.1, stopped by PID at the end of the session or test."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from harness import EventSender, ResultWatcher, Sandbox, Topics, unique
from stack import (
    PARTITIONS,
    SANDBOX_API_TOKEN,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    ServiceProcess,
    Stack,
    restart_if_down,
    start_sandbox_process,
)

from devstack import TansuBroker, free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# What each reliability test measured, printed at the end of the run (docs/reliability.md).
MEASURED: dict[str, dict[str, object]] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, object]:
    measured: dict[str, object] = {}
    MEASURED[request.node.name] = measured
    return measured


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not MEASURED:
        return
    terminalreporter.section("reliability figures")
    for test, measured in MEASURED.items():
        if measured:
            terminalreporter.write_line(f"{test}: {json.dumps(measured)}")


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def sandbox_url(logs_dir: Path) -> Iterator[str]:
    process, url = start_sandbox_process(logs_dir / "sandbox.log", "--concurrency-limit", "0")
    try:
        yield url
    finally:
        process.terminate()


@pytest_asyncio.fixture(scope="session")
async def sandbox(sandbox_url: str) -> AsyncIterator[Sandbox]:
    control = Sandbox(sandbox_url)
    yield control
    await control.close()


@pytest.fixture(scope="session")
def service_env(kafka_broker: TansuBroker, sandbox_url: str) -> Callable[..., dict[str, str]]:
    def env(topics: Topics, **overrides: str) -> dict[str, str]:
        return {
            "REGEN_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "REGEN_KAFKA__GROUP_ID": f"regen-sync-{topics.input}",
            "REGEN_KAFKA__ENABLE_IDEMPOTENCE": "false",
            "REGEN_ZUORA__BASE_URL": sandbox_url,
            "REGEN_ZUORA__CLIENT_ID": SANDBOX_CLIENT_ID,
            "REGEN_ZUORA__CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            "REGEN_SOFTWAREONE__BASE_URL": sandbox_url,
            "REGEN_SOFTWAREONE__API_TOKEN": SANDBOX_API_TOKEN,
            "REGEN_HTTP__HOST": "127.0.0.1",
            "REGEN_HTTP__PORT": str(free_port()),
            # Short backoff keeps retry tests quick; Retry-After still rules when given.
            "REGEN_PROCESSING__BACKOFF_INITIAL_SECONDS": "0.05",
            "REGEN_PROCESSING__BACKOFF_MAX_SECONDS": "0.5",
            "REGEN_PROCESSING__COMMIT_INTERVAL_SECONDS": "0.2",
            "REGEN_SECRETS_DIR": "/nonexistent",
            **topics.env(),
        } | overrides

    return env


@pytest.fixture(scope="session")
def shared_topics(kafka_broker: TansuBroker) -> Topics:
    topics = Topics.named("it-shared")
    asyncio.run(kafka_broker.create_topics(topics.all, PARTITIONS))
    return topics


@pytest.fixture(scope="session")
def regen_service(
    shared_topics: Topics, service_env: Callable[..., dict[str, str]], logs_dir: Path
) -> Iterator[ServiceProcess]:
    """One service for the tests that only need it running; they tell their events apart
    by id and their sandbox faults by object id."""
    service = ServiceProcess(service_env(shared_topics), logs_dir / "service.log")
    service.start()
    try:
        yield service
    finally:
        service.process.terminate()


@pytest_asyncio.fixture(scope="session")
async def watcher(kafka_broker: TansuBroker, shared_topics: Topics) -> AsyncIterator[ResultWatcher]:
    results = ResultWatcher(kafka_broker.bootstrap_servers, shared_topics)
    await results.start()
    yield results
    await results.stop()


@pytest_asyncio.fixture(scope="session")
async def sender(kafka_broker: TansuBroker, shared_topics: Topics) -> AsyncIterator[EventSender]:
    events = EventSender(kafka_broker.bootstrap_servers, shared_topics.input)
    await events.start()
    yield events
    await events.stop()


@pytest_asyncio.fixture
async def make_stack(
    kafka_broker: TansuBroker,
    service_env: Callable[..., dict[str, str]],
    sandbox: Sandbox,
    logs_dir: Path,
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """``await make_stack(name, broker=..., sandbox_flags=(...), start=True, **env)``;
    everything it started is stopped at the end of the test, in the reverse order.

    ``broker`` (the session's by default) must be a fixture set up before this one, so that
    it is still there when the stack's clients are closed.
    """
    async with contextlib.AsyncExitStack() as cleanup:

        async def make(
            name: str,
            *,
            broker: TansuBroker | None = None,
            sandbox_flags: tuple[str, ...] | None = None,
            start: bool = True,
            **overrides: str,
        ) -> Stack:
            broker = kafka_broker if broker is None else broker
            topics = Topics.named(unique(name))
            await broker.create_topics(topics.all, PARTITIONS)
            settings = {"REGEN_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers}
            control = sandbox
            if sandbox_flags is not None:
                process, url = await asyncio.to_thread(
                    start_sandbox_process, logs_dir / f"{topics.input}-sandbox.log", *sandbox_flags
                )
                cleanup.callback(process.terminate)
                control = Sandbox(url)
                cleanup.push_async_callback(control.close)
                settings |= {"REGEN_ZUORA__BASE_URL": url, "REGEN_SOFTWAREONE__BASE_URL": url}
            env = service_env(topics, **settings | overrides)
            results = ResultWatcher(broker.bootstrap_servers, topics)
            await results.start()
            cleanup.push_async_callback(results.stop)
            events = EventSender(broker.bootstrap_servers, topics.input)
            await events.start()
            cleanup.push_async_callback(events.stop)
            cleanup.push_async_callback(restart_if_down, broker)
            services: list[ServiceProcess] = []

            def new_service(**more: str) -> ServiceProcess:
                number = f"-{len(services)}" if services else ""
                log = logs_dir / f"{topics.input}-service{number}.log"
                # Each its own HTTP port: replicas of one group run side by side.
                port = {"REGEN_HTTP__PORT": str(free_port())} if services else {}
                service = ServiceProcess(env | port | more, log)
                services.append(service)
                cleanup.callback(service.process.terminate)
                return service

            service = new_service()
            if start:
                await asyncio.to_thread(service.start)
            return Stack(topics, service, control, results, events, new_service)

        yield make
