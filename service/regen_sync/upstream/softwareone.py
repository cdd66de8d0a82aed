"""SoftwareOne Marketplace: regenerate a billing journal.

The API takes no idempotency key, so a POST that may have reached the server is never
repeated blindly: only failures that prove the request was not taken are retried.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from regen_sync.config import SoftwareOneSettings
from regen_sync.domain import (
    AttemptResult,
    Failed,
    FailureReason,
    JournalFixed,
    RegenerationTask,
    Succeeded,
    TransientFailure,
)
from regen_sync.domain.outcomes import classify_http_error
from regen_sync.observability import Metrics
from regen_sync.upstream.http import (
    REQUEST_NOT_SENT_ERRORS,
    error_details,
    json_body,
    retry_after_seconds,
    timed_post,
)


class SoftwareOneClient:
    def __init__(
        self, settings: SoftwareOneSettings, http: httpx.AsyncClient, metrics: Metrics
    ) -> None:
        self._base_url = str(settings.base_url).rstrip("/")
        self._authorization = f"Bearer {settings.api_token.get_secret_value()}"
        self._http = http
        self._metrics = metrics

    async def attempt(self, task: RegenerationTask) -> AttemptResult:
        if not isinstance(task.event, JournalFixed):
            raise ValueError(f"{task.operation} is not a SoftwareOne operation")
        journal_id = task.event.data.journalId
        # The id is validated against ^[A-Za-z0-9-]{1,64}$; quoting is a second guard.
        url = f"{self._base_url}/public/v1/billing/journals/{quote(journal_id, safe='')}/regenerate"
        try:
            response = await timed_post(
                self._http,
                url,
                metrics=self._metrics,
                task=task,
                json=task.event.data.journal or {},
                headers={"Authorization": self._authorization},
            )
        except REQUEST_NOT_SENT_ERRORS as error:
            return TransientFailure(f"could not reach SoftwareOne: {type(error).__name__}")
        except httpx.TransportError as error:
            return Failed(
                FailureReason.OUTCOME_UNKNOWN,
                f"no answer from SoftwareOne after sending ({type(error).__name__}); "
                "the journal may have been regenerated, so the request is not repeated",
                retryable=True,
            )
        if response.status_code != 200:
            return classify_http_error(
                response.status_code,
                error_details(response),
                idempotent=False,
                retry_after_seconds=retry_after_seconds(response),
            )
        journal = json_body(response)
        journal = journal if isinstance(journal, dict) else {}
        return Succeeded(
            {
                "journalId": journal.get("id", journal_id),
                "status": journal.get("status"),
                "revision": journal.get("revision"),
            }
        )
