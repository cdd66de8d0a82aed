"""The pure parts of `regen-sync check` and `send`: events from flags, what is printed, the
Kafka-only settings, and the sandbox's read-only journal list the check relies on."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import Clock
from pydantic import SecretStr

from regen_sync.config import ConfigurationError
from regen_sync.domain import InvalidEvent, parse_event
from regen_sync.operator import add_operator_commands
from regen_sync.operator.check import configuration_summary, secrets_of
from regen_sync.operator.event_flags import (
    DATA_MODELS,
    build_event,
    event_from_arguments,
    flag_name,
)
from regen_sync.operator.output import (
    CheckResult,
    Progress,
    Redactor,
    Status,
    describe_error,
    format_duration,
)
from regen_sync.operator.send import SendRefused, copies, describe_result, prepare
from regen_sync.operator.settings import load_kafka_client_settings
from regen_sync_sandbox import SandboxConfig, create_app

NOW = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
MAX_BYTES = 1024 * 1024


def parse(*arguments: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="regen-sync")
    add_operator_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(arguments))


def send(*arguments: str) -> argparse.Namespace:
    return parse("send", *arguments)


# --- events from flags ---------------------------------------------------------------------------


def test_flag_names_are_the_json_names_in_kebab_case() -> None:
    assert flag_name("documentId") == "--document-id"
    assert flag_name("ratePlanChargeId") == "--rate-plan-charge-id"
    assert flag_name("onlyReSend") == "--only-re-send"
    assert flag_name("journal") == "--journal"


def test_every_data_field_of_every_type_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_operator_commands(parser.add_subparsers(dest="command"))
    namespace = parser.parse_known_args(["send"])[0]
    for model in DATA_MODELS.values():
        for name in model.model_fields:
            assert hasattr(namespace, name), name


@pytest.mark.parametrize(
    ("flags", "expected_data"),
    [
        (
            [
                "--type=billing.document.fixed",
                "--document-type=CreditMemo",
                "--document-number=CM-1",
                "--only-re-send",
                "--entity-id=E1",
            ],
            {"documentType": "CreditMemo", "documentNumber": "CM-1", "onlyReSend": True}
            | {"entityId": "E1"},
        ),
        (
            [
                "--type=booking.fixed",
                "--object-type=Subscription",
                "--subscription-name=A-S1",
                "--subscription-version=3",
                "--no-re-migrate",
                "--org-ids=O1",
                "--org-ids=O2",
            ],
            {"objectType": "Subscription", "subscriptionName": "A-S1", "subscriptionVersion": 3}
            | {"reMigrate": False, "orgIds": ["O1", "O2"]},
        ),
        (
            [
                "--type=account.charges.fixed",
                "--account-id=A1",
                "--invoice-date=2026-11-01",
                "--target-date=2026-11-30",
            ],
            {"accountId": "A1", "invoiceDate": "2026-11-01", "targetDate": "2026-11-30"},
        ),
        (
            ["--type=journal.fixed", "--journal-id=BJO-1", '--journal={"notes": "fixed"}'],
            {"journalId": "BJO-1", "journal": {"notes": "fixed"}},
        ),
    ],
)
def test_flags_build_an_event_the_service_accepts(
    flags: list[str], expected_data: dict[str, Any]
) -> None:
    arguments = send(*flags, "--id=evt-1", "--source=urn:test")

    event = event_from_arguments(arguments, now=NOW)

    assert event == build_event(
        arguments.type, expected_data, event_id="evt-1", source="urn:test", now=NOW
    )
    parsed = parse_event(json.dumps(event).encode(), max_bytes=MAX_BYTES)
    assert not isinstance(parsed, InvalidEvent), parsed
    assert parsed.type == arguments.type


def test_an_event_from_flags_gets_a_fresh_id_and_the_default_source() -> None:
    first = event_from_arguments(send("--type=journal.fixed", "--journal-id=J1"))
    second = event_from_arguments(send("--type=journal.fixed", "--journal-id=J1"))
    assert first["id"] != second["id"]
    assert first["source"] == "urn:regen-sync:send"
    assert dt.datetime.fromisoformat(first["time"]).tzinfo is not None


def test_a_journal_flag_must_be_a_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        send("--type=journal.fixed", "--journal-id=J1", "--journal=[1]")
    assert exit_.value.code == 2
    assert "must be a JSON object" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--type=journal.fixed", "--journal-id=J1", "--document-id=D1"], "data.documentId"),
        (["--type=booking.fixed", "--object-type=Subscription"], "needs subscriptionId"),
        (["--type=account.charges.fixed", "--account-id=A1"], "data.invoiceDate: Field required"),
    ],
)
def test_flags_the_service_would_refuse_are_refused_with_its_message(
    flags: list[str], problem: str
) -> None:
    with pytest.raises(SendRefused, match="invalid event") as refused:
        prepare(send(*flags), max_event_bytes=MAX_BYTES)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "give --type with its data flags, or --file"),
        (["--file=x.json", "--type=journal.fixed"], "drop --type"),
        (["--file=x.json", "--journal-id=J1"], "drop --journal-id"),
        (["--type=journal.fixed", "--journal-id=J1", "--id=e1", "--count=2"], "--id names one"),
    ],
)
def test_contradictory_arguments_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(SendRefused, match=message):
        prepare(send(*flags), max_event_bytes=MAX_BYTES)


def test_an_invalid_file_is_sent_only_with_allow_invalid(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text('{"specversion": "1.0", "id": "e1", "source": "s", "type": "nope"}')

    with pytest.raises(SendRefused, match="unknown event type 'nope'"):
        prepare(send(f"--file={path}"), max_event_bytes=MAX_BYTES)
    [event] = prepare(send(f"--file={path}", "--allow-invalid"), max_event_bytes=MAX_BYTES)

    assert event.value == path.read_bytes()
    assert event.event_id == "e1"
    assert event.key is None, "an invalid event has no business object to key by"


def test_wait_is_refused_for_an_event_without_an_id(tmp_path: Path) -> None:
    path = tmp_path / "event.bin"
    path.write_bytes(b"\x00not json")
    arguments = send(f"--file={path}", "--allow-invalid", "--wait")
    with pytest.raises(SendRefused, match="has none"):
        prepare(arguments, max_event_bytes=MAX_BYTES)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SendRefused, match="cannot read"):
        prepare(send(f"--file={tmp_path / 'missing.json'}"), max_event_bytes=MAX_BYTES)


def test_a_valid_event_is_keyed_by_its_business_object() -> None:
    [event] = prepare(send("--type=journal.fixed", "--journal-id=BJO-7"), max_event_bytes=MAX_BYTES)
    assert event.key == b"Journal:BJO-7"


def test_copies_get_fresh_ids_and_keep_everything_else() -> None:
    raw = json.dumps({"specversion": "1.0", "id": "original", "data": {"x": 1}}).encode()

    events = list(copies(raw, 3, b"key"))

    ids = [event.event_id for event in events]
    assert len(set(ids)) == 3
    assert "original" not in ids
    for event in events:
        document = json.loads(event.value)
        assert document == {"specversion": "1.0", "id": event.event_id, "data": {"x": 1}}
        assert event.key == b"key"


def test_a_single_event_is_sent_byte_for_byte() -> None:
    raw = b'{"id":  "kept", "extra" : true}'
    [event] = copies(raw, 1, None)
    assert (event.value, event.event_id) == (raw, "kept")


def test_copies_of_a_non_object_are_identical() -> None:
    events = list(copies(b"not json", 2, None))
    assert [(event.value, event.event_id) for event in events] == [(b"not json", None)] * 2


# --- what is printed -----------------------------------------------------------------------------


def test_check_lines_have_a_fixed_status_column_and_timing() -> None:
    assert CheckResult("broker", Status.OK, "1 broker", 0.0123).line() == (
        "OK   broker: 1 broker [12 ms]"
    )
    assert CheckResult("topic input", Status.FAIL, "t does not exist", 2.25).line() == (
        "FAIL topic input: t does not exist [2.2 s]"
    )
    assert CheckResult("consumer group", Status.SKIP, "broker down").line() == (
        "SKIP consumer group: broker down"
    )


def test_durations() -> None:
    assert format_duration(0.0004) == "0 ms"
    assert format_duration(0.999) == "999 ms"
    assert format_duration(12.34) == "12.3 s"


def test_redactor_replaces_every_secret_longest_first() -> None:
    redact = Redactor(["abc", "abcdef", None, ""])
    assert redact("x abcdef y abc z") == "x *** y *** z"
    assert redact("nothing secret") == "nothing secret"


def test_error_descriptions_do_not_repeat_the_class_name() -> None:
    class KafkaConnectionError(Exception):
        def __str__(self) -> str:
            return "KafkaConnectionError: Unable to bootstrap"

    assert describe_error(KafkaConnectionError()) == "KafkaConnectionError: Unable to bootstrap"
    assert describe_error(ConnectionRefusedError("refused")) == "ConnectionRefusedError: refused"
    assert describe_error(TimeoutError()) == "TimeoutError"


def test_progress_is_silent_for_quick_runs() -> None:
    stream, clock = io.StringIO(), Clock(100.0)
    progress = Progress("sent", 10, stream=stream, clock=clock)
    clock.now += 0.5
    progress.update(10)
    progress.finish(10)
    assert stream.getvalue() == ""


def test_progress_in_a_log_reports_at_most_once_per_interval_then_the_total() -> None:
    stream, clock = io.StringIO(), Clock(100.0)
    progress = Progress("sent", 1000, stream=stream, clock=clock)
    for done, now in [(0, 101.0), (150, 103.0), (400, 106.0)]:
        clock.now = now
        progress.update(done)
    clock.now = 108.0
    progress.finish(1000)
    assert stream.getvalue().splitlines() == [
        "sent 0/1000 (0%, 1 s)",
        "sent 400/1000 (40%, 6 s, 67/s)",
        "sent 1000/1000 (100%, 8 s, 125/s)",
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream, clock = Terminal(), Clock(100.0)
    progress = Progress("results", 2, stream=stream, clock=clock)
    for done, now in [(1, 101.0), (1, 101.2), (1, 101.5)]:
        clock.now = now
        progress.update(done)
    progress.finish(2)
    assert stream.getvalue() == (
        "\r\x1b[Kresults 1/2 (50%, 1 s, 1/s)"
        "\r\x1b[Kresults 1/2 (50%, 2 s, 1/s)"
        "\r\x1b[Kresults 2/2 (100%, 2 s, 1/s)\n"
    )


def test_a_result_is_one_line_and_optionally_the_whole_event() -> None:
    succeeded = {"type": "regeneration.succeeded", "data": {"sourceEventId": "e1"}}
    failed = {
        "type": "regeneration.failed",
        "data": {"sourceEventId": "e2", "reason": "not_found", "message": "no such journal"},
    }
    assert describe_result(succeeded, 0.25, full=False) == (
        "regeneration.succeeded for e1 after 250 ms"
    )
    assert describe_result(failed, 1.5, full=False) == (
        "regeneration.failed for e2 after 1.5 s: not_found: no such journal"
    )
    summary, document = describe_result(succeeded, 0.25, full=True).split("\n", 1)
    assert summary == "regeneration.succeeded for e1 after 250 ms"
    assert json.loads(document) == succeeded


# --- settings ------------------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in os.environ:
        if name.startswith("REGEN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REGEN_SECRETS_DIR", "/nonexistent")
    return monkeypatch


def test_send_needs_only_the_kafka_settings(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("REGEN_KAFKA__BOOTSTRAP_SERVERS", "k1:9092")
    clean_environment.setenv("REGEN_TOPICS__INPUT", "in")
    settings = load_kafka_client_settings()
    assert settings.kafka.bootstrap_server_list == ["k1:9092"]
    assert settings.topics.input == "in"


def test_send_names_invalid_kafka_variables_like_run(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("REGEN_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    clean_environment.setenv("REGEN_KAFKA__SASL_PASSWORD", "hunter2-secret")
    with pytest.raises(ConfigurationError) as error:
        load_kafka_client_settings()
    assert error.value.problems[0].startswith("REGEN_KAFKA__BOOTSTRAP_SERVERS: Field required")
    assert not any("ZUORA" in problem for problem in error.value.problems)
    assert "hunter2-secret" not in str(error.value)


def test_kafka_secrets_can_come_from_files(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "REGEN_KAFKA__SASL_PASSWORD").write_text("from-a-file")
    clean_environment.setenv("REGEN_SECRETS_DIR", str(tmp_path))
    clean_environment.setenv("REGEN_KAFKA__BOOTSTRAP_SERVERS", "k1:9093")
    clean_environment.setenv("REGEN_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    clean_environment.setenv("REGEN_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    clean_environment.setenv("REGEN_KAFKA__SASL_USERNAME", "regen")
    password = load_kafka_client_settings().kafka.sasl_password
    assert password == SecretStr("from-a-file")


def test_configuration_summary_names_endpoints_and_identities_but_no_secret(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    from regen_sync.config import load_settings

    for name, value in {
        "REGEN_KAFKA__BOOTSTRAP_SERVERS": "k1:9093,k2:9093",
        "REGEN_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "REGEN_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "REGEN_KAFKA__SASL_USERNAME": "regen",
        "REGEN_KAFKA__SASL_PASSWORD": "kafka-secret-value",
        "REGEN_ZUORA__BASE_URL": "https://rest.apisandbox.zuora.com",
        "REGEN_ZUORA__CLIENT_ID": "zuora-client",
        "REGEN_ZUORA__CLIENT_SECRET": "zuora-secret-value",
        "REGEN_SOFTWAREONE__BASE_URL": "https://api.platform.softwareone.com",
        "REGEN_SOFTWAREONE__API_TOKEN": "s1-token-value",
    }.items():
        clean_environment.setenv(name, value)
    settings = load_settings()

    summary = configuration_summary(settings)

    assert summary == (
        "Kafka k1:9093,k2:9093 (SASL_SSL SCRAM-SHA-512 as regen), group regen-sync; "
        "Zuora https://rest.apisandbox.zuora.com/ as client zuora-client; "
        "SoftwareOne https://api.platform.softwareone.com/"
    )
    assert set(secrets_of(settings)) == {
        "kafka-secret-value",
        "zuora-secret-value",
        "s1-token-value",
        None,
    }


# --- the sandbox's journal list ------------------------------------------------------------------

S1_AUTH = {"Authorization": "Bearer s1-token"}
JOURNALS = "/public/v1/billing/journals"


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(SandboxConfig(api_token="s1-token")))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


async def test_journal_list_pages_the_journals_regenerated_so_far(
    sandbox: httpx.AsyncClient,
) -> None:
    empty = await sandbox.get(JOURNALS, params={"limit": 1}, headers=S1_AUTH)
    for journal_id in ("BJO-2", "BJO-1", "BJO-2"):
        await sandbox.post(f"{JOURNALS}/{journal_id}/regenerate", json={}, headers=S1_AUTH)

    page = await sandbox.get(JOURNALS, params={"limit": 1, "offset": 1}, headers=S1_AUTH)

    assert empty.status_code == 200
    assert empty.json() == {
        "$meta": {"pagination": {"offset": 0, "limit": 1, "total": 0}},
        "data": [],
    }
    assert page.json() == {
        "$meta": {"pagination": {"offset": 1, "limit": 1, "total": 2}},
        "data": [{"id": "BJO-2", "name": "Journal BJO-2", "status": "Validating", "revision": 2}],
    }


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({}, {"Authorization": "Bearer wrong"}, 403),
        ({}, {}, 403),
        ({"limit": "many"}, S1_AUTH, 400),
        ({"limit": "-1"}, S1_AUTH, 400),
    ],
)
async def test_journal_list_refuses_bad_tokens_and_paging_as_problem_details(
    sandbox: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    response = await sandbox.get(JOURNALS, params=params, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


async def test_journal_list_is_logged_as_a_journal_request_and_takes_journal_faults(
    sandbox: httpx.AsyncClient,
) -> None:
    fault = {"operation": "journal", "kind": "status", "status": 503, "times": 1}
    assert (await sandbox.post("/_sandbox/faults", json=fault)).status_code == 201

    response = await sandbox.get(JOURNALS, headers=S1_AUTH)

    assert response.status_code == 503
    [logged] = (await sandbox.get("/_sandbox/requests", params={"operation": "journal"})).json()
    assert (logged["method"], logged["path"], logged["status"]) == ("GET", JOURNALS, 503)
