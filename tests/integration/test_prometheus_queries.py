"""The dashboard's and the alerts' PromQL against a real Prometheus scraping the running service:
every expression evaluates, and every series it selects is one the service exports."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from harness import (
    EventSender,
    ResultWatcher,
    Sandbox,
    billing_event,
    eventually,
    new_event,
    unique,
)
from stack import ServiceProcess

from devstack import ManagedProcess, free_port

NAMESPACE = "regen-e2e"
JOB = "regen-sync"


# tests/monitoring/promql.py collects the expressions and their selectors; that directory is
# not on the path of an integration-only run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitoring"))
promql = importlib.import_module("promql")


@pytest.fixture(scope="module")
def prometheus_url(
    regen_service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path
) -> Iterator[str]:
    """A Prometheus server of its own (Debian's package, never its system service) scraping the
    session's service every second and evaluating the alerting rules, stopped by PID."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run scripts/install_system_tools.sh"
    root = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(promql.ALERTS)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {
                        "targets": [regen_service.http_url.removeprefix("http://")],
                        # What a ServiceMonitor would attach in a cluster.
                        "labels": {"namespace": NAMESPACE, "pod": "regen-sync-0"},
                    }
                ],
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = ManagedProcess(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_path=logs_dir / "prometheus.log",
    )
    process.start()
    try:
        process.wait_for_line("Server is ready to receive web requests", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()


@pytest_asyncio.fixture(loop_scope="session")
async def prometheus(prometheus_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=prometheus_url, timeout=10) as client:
        yield client


def _data(response: httpx.Response) -> Any:
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"{response.url}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


async def _api(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    return _data(await client.get(f"/api/v1/{path}", params=params))


def _api_now(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    """For ``eventually``'s conditions, which run in a thread."""
    url = client.base_url.join(f"/api/v1/{path}")
    return _data(httpx.get(url, params=params, timeout=10))


async def _send_traffic(sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox) -> None:
    """One event of each type, one throttled and retried, one failing for good, one unreadable:
    the series behind every panel and alert come into being."""
    throttled, missing = unique("INV"), unique("JRN")
    await sandbox.fault(
        operation="billing", kind="status", status=429, retryAfter=0, times=1, match=throttled
    )
    await sandbox.fault(operation="journal", kind="status", status=404, match=missing)
    events = [
        (billing_event(throttled), throttled),
        (
            new_event(
                "booking.fixed", {"objectType": "Subscription", "subscriptionId": unique("A-S")}
            ),
            unique("sub"),
        ),
        (
            new_event(
                "account.charges.fixed",
                {
                    "accountId": unique("ACC"),
                    "invoiceDate": "2026-11-01",
                    "targetDate": "2026-11-30",
                },
            ),
            unique("acc"),
        ),
        (new_event("journal.fixed", {"journalId": unique("JRN")}), unique("jrn")),
        (new_event("journal.fixed", {"journalId": missing}), missing),
    ]
    for event, key in events:
        await sender.send(event, key=key)
    unreadable = unique("bad")
    await sender.send(b"{not json", key=unreadable)
    results = await watcher.wait_for([event["id"] for event, _ in events])
    assert results[events[-1][0]["id"]].topic == watcher.topics.failed
    await watcher.wait_for_keys([unreadable.encode()])


async def test_every_dashboard_and_alert_query_works_on_the_services_metrics(
    prometheus: httpx.AsyncClient,
    regen_service: ServiceProcess,
    sender: EventSender,
    watcher: ResultWatcher,
    sandbox: Sandbox,
) -> None:
    await _send_traffic(sender, watcher, sandbox)

    # Everything the traffic caused has been scraped.
    for query in (
        f'regen_upstream_throttled_total{{job="{JOB}", upstream="zuora"}} >= 1',
        f'regen_dead_letters_total{{job="{JOB}", reason="not_found"}} >= 1',
        f'regen_results_total{{job="{JOB}", operation="none", reason="invalid_event"}} >= 1',
    ):
        await eventually(lambda q=query: bool(_api_now(prometheus, "query", query=q)["result"]), 30)

    variables = {"namespace": NAMESPACE, "job": JOB}
    problems = []
    for expression in promql.expressions(variables):
        try:
            await _api(prometheus, "query", query=expression.promql)
        except AssertionError as invalid:
            problems.append(f"{expression.origin}: invalid: {invalid}")
            continue
        for selector in promql.selectors(expression.promql):
            if not await _api(prometheus, "series", **{"match[]": selector}):
                problems.append(f"{expression.origin}: no series of the service match {selector}")
    for query in promql.label_values_queries(variables):
        values = await _api(
            prometheus, f"label/{query.label}/values", **{"match[]": query.selector}
        )
        if not values:
            problems.append(f"variable {query.variable}: no {query.label} on {query.selector}")
    assert not problems, "\n".join(problems)


async def test_prometheus_evaluates_every_alerting_rule_without_error(
    prometheus: httpx.AsyncClient, regen_service: ServiceProcess
) -> None:
    expected = {rule["alert"] for rule in promql.alert_rules()}

    def all_evaluated() -> bool:
        groups = _api_now(prometheus, "rules", type="alert")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        # An unevaluated rule reports Go's zero time.
        evaluated = {r["name"] for r in rules if not r["lastEvaluation"].startswith("0001")}
        return evaluated == expected

    await eventually(all_evaluated, 30)
    groups = (await _api(prometheus, "rules", type="alert"))["groups"]
    unhealthy = [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in groups
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]
    assert unhealthy == []
