"""HTTP plumbing shared by the upstream adapters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from regen_sync.domain import AttemptResult, RegenerationTask, UpstreamLoad
from regen_sync.observability import Metrics

_MAX_DETAIL_CHARS = 4000
# Errors raised before a single byte of the request left: repeating is always safe.
REQUEST_NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


class UpstreamClient(Protocol):
    async def attempt(self, task: RegenerationTask) -> AttemptResult:
        """Make one attempt at the task's upstream call and classify its answer."""
        ...


async def timed_post(
    http: httpx.AsyncClient,
    url: str,
    *,
    metrics: Metrics,
    task: RegenerationTask,
    **kwargs: Any,
) -> httpx.Response:
    started = time.perf_counter()
    try:
        return await http.post(url, **kwargs)
    finally:
        metrics.upstream_latency.labels(task.operation).observe(time.perf_counter() - started)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds or an HTTP date; Zuora's ratelimit-reset on a 429 otherwise."""
    value = response.headers.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.replace(".", "", 1).isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    reset = response.headers.get("ratelimit-reset")
    if response.status_code == 429 and reset is not None and reset.strip().isdigit():
        return float(reset)
    return None


def with_load(result: AttemptResult, response: httpx.Response) -> AttemptResult:
    """The result, carrying what the answer's headers say about the upstream's limits."""
    headers = response.headers
    load = UpstreamLoad(
        concurrency_limit=_int_header(headers, "concurrency-limit-limit"),
        concurrency_remaining=_int_header(headers, "concurrency-limit-remaining"),
        rate_remaining=_int_header(headers, "ratelimit-remaining"),
        rate_reset_seconds=_int_header(headers, "ratelimit-reset"),
    )
    if load == UpstreamLoad():
        return result
    return dataclasses.replace(result, load=load)


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_details(response: httpx.Response) -> dict[str, Any]:
    """The upstream's error body, bounded, for the failed event."""
    body = json_body(response)
    if isinstance(body, Mapping):
        return _bounded(dict(body))
    if isinstance(body, list):
        return _bounded({"errors": body})
    text = response.text[:_MAX_DETAIL_CHARS]
    return {"body": text} if text else {}


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    # An upstream error page can be megabytes; the failed event carries the gist.
    if len(repr(details)) <= _MAX_DETAIL_CHARS:
        return details
    return {"truncated": repr(details)[:_MAX_DETAIL_CHARS]}
