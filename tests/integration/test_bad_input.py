"""Bad input: a failed event and a dead letter within seconds, no upstream call, no stall."""

from __future__ import annotations

import json

import pytest
from harness import EventSender, ResultWatcher, Sandbox, nested, new_event, unique

pytestmark = pytest.mark.usefixtures("regen_service")


BAD_INPUTS: dict[str, tuple[bytes, str]] = {
    "not-json": (b"\x00\xffthis is not json", "not JSON"),
    "json-not-cloudevent": (b'{"hello": "world"}', "not a CloudEvent 1.0"),
    "json-array": (b"[1,2,3]", "not a CloudEvent"),
    "unknown-type": (json.dumps(new_event("invoice.deleted", {})).encode(), "unknown event type"),
    "schema-violation": (
        json.dumps(new_event("account.charges.fixed", {"accountId": "A1"})).encode(),
        "data.invoiceDate: Field required",
    ),
    "both-flags": (
        json.dumps(
            new_event(
                "booking.fixed",
                {
                    "objectType": "Subscription",
                    "subscriptionId": "S1",
                    "onlyReSend": True,
                    "reMigrate": True,
                },
            )
        ).encode(),
        "onlyReSend and reMigrate cannot both be true",
    ),
    # Deep enough to make a recursive JSON decoder raise, not just to fail validation.
    "nested-too-deeply": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "nested-within-json-limits": (
        json.dumps(
            new_event("journal.fixed", {"journalId": "BJO-1", "journal": nested(200)})
        ).encode(),
        "nested deeper than 32 levels",
    ),
    "unsafe-journal-id": (
        json.dumps(new_event("journal.fixed", {"journalId": "../../users/1?x=y"})).encode(),
        "data.journalId",
    ),
}


async def test_every_bad_input_gets_a_failed_event_and_a_dead_letter(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    run = unique("bad")
    keys = {name: f"{run}-{name}" for name in BAD_INPUTS}
    requests_before = len(await sandbox.requests())
    for name, (raw, _) in BAD_INPUTS.items():
        await sender.send(raw, key=keys[name], headers=[("origin", name.encode())])
    good = new_event("journal.fixed", {"journalId": unique("after-bad")})
    await sender.send(good, key=f"{run}-good")

    results = await watcher.wait_for_keys([key.encode() for key in keys.values()], timeout=30)
    await watcher.wait_for([good["id"]], timeout=30)  # the consumer kept going

    for name, (raw, expected_problem) in BAD_INPUTS.items():
        result = results[keys[name].encode()]
        assert result.topic == watcher.topics.failed, name
        data = result.json()["data"]
        assert data["reason"] == "invalid_event", name
        assert data["retryable"] is False
        assert data["attempts"] == 0
        assert any(expected_problem in problem for problem in data["problems"]), (name, data)
        [dead] = await watcher.wait_for_dead_letters(
            1, lambda r, key=keys[name]: r.key == key.encode()
        )
        assert dead.value == raw, name
        assert dead.headers["origin"] == name.encode()
        assert dead.headers["regen-error-reason"] == b"invalid_event"
    assert results[keys["unknown-type"].encode()].json()["data"]["sourceEventId"]
    assert "sourceEventId" not in results[keys["not-json"].encode()].json()["data"]
    # Only the good journal event reached an upstream.
    assert len(await sandbox.requests()) == requests_before + 1


async def test_header_bytes_that_are_not_utf8_neither_lose_the_record_nor_its_neighbours(
    sender: EventSender, watcher: ResultWatcher
) -> None:
    # Kafka headers are bytes; FastStream's parser decoded them as UTF-8 and dropped the whole
    # poll, silently, when one was not.
    binary = ("signature", b"\xff\xfe\x00\x80")
    run = unique("binary-header")
    good = new_event("journal.fixed", {"journalId": unique("BJO")})
    bad = json.dumps(new_event("invoice.deleted", {})).encode()
    await sender.send(good, key=f"{run}-good", headers=[binary])
    await sender.send(bad, key=f"{run}-bad", headers=[binary])

    results = await watcher.wait_for_keys([f"{run}-good".encode(), f"{run}-bad".encode()])

    assert results[f"{run}-good".encode()].topic == watcher.topics.succeeded
    assert results[f"{run}-bad".encode()].topic == watcher.topics.failed
    [dead] = await watcher.wait_for_dead_letters(1, lambda r: r.key == f"{run}-bad".encode())
    assert dead.headers["signature"] == binary[1], "the dead letter keeps the header's bytes"
