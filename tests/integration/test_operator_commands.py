"""`regen-sync check` and `regen-sync send`, run as real processes against the real stack."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    ResultWatcher,
    Sandbox,
    Topics,
    kafka_only,
    new_event,
    regen_sync,
    topic_names,
    unique,
)
from stack import SANDBOX_API_TOKEN, SANDBOX_CLIENT_SECRET

from devstack import TansuBroker, free_port

CHECK_NAMES = [
    "configuration",
    "Kafka broker",
    "topic input",
    "topic succeeded",
    "topic failed",
    "topic dead-letter",
    "consumer group",
    "Zuora token",
    "SoftwareOne token",
]
KAFKA_DEPENDENT = CHECK_NAMES[2:7]


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """Accepts connections (the kernel completes the handshake) but never answers a byte,
    like a broker behind a black-holing firewall: only a timeout ends the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"127.0.0.1:{listener.getsockname()[1]}"


# --- check ---------------------------------------------------------------------------------------


async def test_check_passes_against_the_real_stack(
    shared_topics: Topics, service_env: Callable[..., dict[str, str]]
) -> None:
    env = service_env(shared_topics)

    run = await regen_sync("check", env=env)

    assert run.returncode == 0, run.stdout + run.stderr
    assert list(run.lines) == CHECK_NAMES
    assert all(line.startswith("OK   ") for line in run.lines.values()), run.stdout
    for role, topic in zip(
        ["input", "succeeded", "failed", "dead-letter"], shared_topics.all, strict=True
    ):
        assert f"{topic}, 6 partitions" in run.lines[f"topic {role}"]
    assert env["REGEN_KAFKA__BOOTSTRAP_SERVERS"] in run.lines["configuration"]
    assert env["REGEN_KAFKA__GROUP_ID"] in run.lines["consumer group"]
    for secret in (SANDBOX_CLIENT_SECRET, SANDBOX_API_TOKEN):
        assert secret not in run.stdout + run.stderr


async def test_check_names_a_missing_topic_and_does_not_create_it(
    kafka_broker: TansuBroker, service_env: Callable[..., dict[str, str]]
) -> None:
    topics = Topics.named(unique("check-missing"))
    await kafka_broker.create_topics([topics.input, topics.succeeded, topics.failed], 2)

    run = await regen_sync("check", env=service_env(topics))

    assert run.returncode == 1, run.stdout + run.stderr
    assert run.lines["topic dead-letter"].startswith("FAIL ")
    assert f"{topics.dead_letter} does not exist" in run.lines["topic dead-letter"]
    failing = [name for name, line in run.lines.items() if not line.startswith("OK   ")]
    assert failing == ["topic dead-letter"]
    assert topics.dead_letter not in await topic_names(kafka_broker)


@pytest.mark.parametrize(
    ("variable", "check", "expected"),
    [
        ("REGEN_ZUORA__CLIENT_SECRET", "Zuora token", "HTTP 401"),
        ("REGEN_SOFTWAREONE__API_TOKEN", "SoftwareOne token", "HTTP 403"),
    ],
)
async def test_check_fails_on_refused_credentials_without_printing_them(
    shared_topics: Topics,
    service_env: Callable[..., dict[str, str]],
    variable: str,
    check: str,
    expected: str,
) -> None:
    wrong = unique("wrong-credential")

    run = await regen_sync("check", env=service_env(shared_topics, **{variable: wrong}))

    assert run.returncode == 1, run.stdout + run.stderr
    assert run.lines[check].startswith("FAIL ")
    assert expected in run.lines[check]
    assert variable in run.lines[check]
    assert [name for name, line in run.lines.items() if line.startswith("FAIL ")] == [check]
    assert wrong not in run.stdout + run.stderr


@pytest.mark.parametrize("broker", ["silent", "closed port"])
async def test_check_fails_on_an_unreachable_broker_within_the_timeout(
    shared_topics: Topics,
    service_env: Callable[..., dict[str, str]],
    silent_broker: str,
    broker: str,
) -> None:
    address = silent_broker if broker == "silent" else f"127.0.0.1:{free_port()}"
    env = service_env(shared_topics, REGEN_KAFKA__BOOTSTRAP_SERVERS=address)

    run = await regen_sync("check", "--timeout", "2", env=env)

    assert run.returncode == 1, run.stdout + run.stderr
    assert list(run.lines) == CHECK_NAMES
    assert run.lines["Kafka broker"].startswith("FAIL ")
    expected = "no answer within 2 s" if broker == "silent" else "Unable to bootstrap"
    assert expected in run.lines["Kafka broker"]
    assert all(run.lines[name].startswith("SKIP ") for name in KAFKA_DEPENDENT)
    # The upstream checks still ran, concurrently with the broker's wait.
    assert run.lines["Zuora token"].startswith("OK   ")
    assert run.lines["SoftwareOne token"].startswith("OK   ")
    assert run.seconds < 2 + 8, "interpreter start-up aside, bounded by the 2 s timeout"


async def test_check_exits_2_naming_every_invalid_variable(
    shared_topics: Topics, service_env: Callable[..., dict[str, str]]
) -> None:
    env = service_env(shared_topics, REGEN_ZUORA__CLIENT_SECRET="changeme")
    del env["REGEN_KAFKA__BOOTSTRAP_SERVERS"]

    run = await regen_sync("check", env=env)

    assert run.returncode == 2
    assert list(run.lines) == ["configuration"]
    assert run.lines["configuration"].startswith("FAIL ")
    assert "REGEN_KAFKA__BOOTSTRAP_SERVERS" in run.stdout
    assert "REGEN_ZUORA__CLIENT_SECRET" in run.stdout
    assert "changeme" not in run.stdout


# --- send ----------------------------------------------------------------------------------------


def _result_document(stdout: str) -> dict[str, Any]:
    """The result event `send --wait` prints after its one-line summary."""
    result: dict[str, Any] = json.loads(stdout[stdout.index("\n{") :])
    return result


@pytest.mark.usefixtures("regen_service")
async def test_send_from_flags_reaches_the_service_and_waits_for_success(
    shared_topics: Topics, service_env: Callable[..., dict[str, str]], sandbox: Sandbox
) -> None:
    journal_id = unique("send-flags")

    run = await regen_sync(
        "send",
        "--type",
        "journal.fixed",
        "--journal-id",
        journal_id,
        "--wait",
        env=kafka_only(service_env(shared_topics)),
    )

    assert run.returncode == 0, run.stdout + run.stderr
    sent, summary = run.stdout.splitlines()[:2]
    event_id = sent.split()[1]
    assert sent.startswith(f"sent {event_id} to {shared_topics.input} partition ")
    assert summary.startswith(f"regeneration.succeeded for {event_id} after ")
    result = _result_document(run.stdout)
    assert result["type"] == "regeneration.succeeded"
    assert result["subject"] == f"Journal:{journal_id}"
    assert result["data"] == result["data"] | {"sourceEventId": event_id, "attempts": 1}
    [call] = await sandbox.requests("journal", match=journal_id)
    assert call["method"] == "POST"


@pytest.mark.usefixtures("regen_service")
async def test_send_from_a_file_keeps_its_id_and_prints_the_result(
    shared_topics: Topics, service_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    event = new_event(
        "booking.fixed",
        {"objectType": "Subscription", "subscriptionName": unique("A-S"), "subscriptionVersion": 2},
    )
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))

    run = await regen_sync(
        "send", "--file", str(path), "--wait", env=kafka_only(service_env(shared_topics))
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"sent {event['id']} to {shared_topics.input} ")
    result = _result_document(run.stdout)
    assert result["type"] == "regeneration.succeeded"
    assert result["data"]["sourceEventId"] == event["id"]


@pytest.mark.usefixtures("regen_service")
async def test_send_count_sends_copies_with_fresh_ids_and_waits_for_all(
    shared_topics: Topics, service_env: Callable[..., dict[str, str]]
) -> None:
    run = await regen_sync(
        "send",
        "--type",
        "account.charges.fixed",
        "--account-id",
        unique("A"),
        "--invoice-date",
        "2026-11-01",
        "--target-date",
        "2026-11-30",
        "--count",
        "3",
        "--wait",
        env=kafka_only(service_env(shared_topics)),
    )

    assert run.returncode == 0, run.stdout + run.stderr
    sent_ids = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("sent ")]
    assert len(set(sent_ids)) == 3
    for event_id in sent_ids:
        assert f"regeneration.succeeded for {event_id} after " in run.stdout
    assert "results: 3 succeeded, 0 failed, 0 without a result" in run.stdout


async def test_send_refuses_an_invalid_file_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "invalid.json"
    path.write_text(json.dumps(new_event("journal.fixed", {"journalId": "not a journal id!"})))
    # Nothing listens here: refusing must happen before any attempt to reach Kafka.
    env = {
        "REGEN_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "REGEN_SECRETS_DIR": "/nonexistent",
    }

    run = await regen_sync("send", "--file", str(path), env=env)

    assert run.returncode == 2
    assert "invalid event" in run.stderr
    assert "data.journalId: String should match pattern" in run.stderr
    assert "sent " not in run.stdout


@pytest.mark.usefixtures("regen_service")
async def test_send_allow_invalid_reaches_the_failed_and_dead_letter_topics(
    shared_topics: Topics,
    service_env: Callable[..., dict[str, str]],
    watcher: ResultWatcher,
    tmp_path: Path,
) -> None:
    event = new_event("journal.fixed", {"journalId": "not a journal id!"})
    path = tmp_path / "invalid.json"
    path.write_text(json.dumps(event))

    run = await regen_sync(
        "send",
        "--file",
        str(path),
        "--allow-invalid",
        "--wait",
        env=kafka_only(service_env(shared_topics)),
    )

    assert run.returncode == 1, run.stdout + run.stderr
    assert f"regeneration.failed for {event['id']} after " in run.stdout
    assert _result_document(run.stdout)["data"]["reason"] == "invalid_event"
    marker = f'"id": "{event["id"]}"'.encode()
    [dead_letter] = await watcher.wait_for_dead_letters(
        1, lambda record: marker in (record.value or b""), timeout=30
    )
    assert dead_letter.headers["regen-error-reason"] == b"invalid_event"
