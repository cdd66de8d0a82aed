"""Zuora OAuth 2 client-credentials tokens: fetched once, shared, refreshed before expiry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from regen_sync.config import ZuoraSettings
from regen_sync.observability import Metrics
from regen_sync.upstream.http import json_body

logger = logging.getLogger(__name__)


class TokenUnavailable(Exception):
    """No token could be had. ``transient`` tells whether trying again later may help."""

    def __init__(self, message: str, *, transient: bool, http_status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float


class ZuoraTokens:
    def __init__(
        self,
        settings: ZuoraSettings,
        http: httpx.AsyncClient,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._http = http
        self._metrics = metrics
        self._clock = clock
        self._token: _Token | None = None
        # One refresh at a time: many calls seeing an expired token must not each mint one
        # (the token endpoint is rate-limited per IP).
        self._refresh_lock = asyncio.Lock()

    async def bearer(self) -> str:
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        async with self._refresh_lock:
            token = self._token
            if token is not None and self._clock() < token.refresh_at:
                return token.value
            self._token = await self._fetch()
            return self._token.value

    def invalidate(self, rejected: str) -> None:
        """Forget a token the API refused, unless another call already replaced it."""
        if self._token is not None and self._token.value == rejected:
            self._token = None

    async def _fetch(self) -> _Token:
        url = str(self._settings.base_url).rstrip("/") + "/oauth/token"
        try:
            response = await self._http.post(
                url,
                data={
                    "client_id": self._settings.client_id,
                    "client_secret": self._settings.client_secret.get_secret_value(),
                    "grant_type": "client_credentials",
                },
            )
        except httpx.TransportError as error:
            self._metrics.token_refreshes.labels("failure").inc()
            raise TokenUnavailable(
                f"token request failed: {type(error).__name__}", transient=True
            ) from None
        body = json_body(response)
        if response.status_code != 200 or not isinstance(body, dict):
            self._metrics.token_refreshes.labels("failure").inc()
            status = response.status_code
            raise TokenUnavailable(
                f"token endpoint answered HTTP {status}",
                transient=status == 429 or status >= 500 or status == 200,
                http_status=status,
            )
        access_token = body.get("access_token")
        expires_in = body.get("expires_in", 3600)
        if not isinstance(access_token, str) or not access_token:
            self._metrics.token_refreshes.labels("failure").inc()
            raise TokenUnavailable("token endpoint answered no access_token", transient=True)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        # Refresh ahead of expiry, but never sooner than half the token's life.
        margin = min(self._settings.token_refresh_margin_seconds, lifetime / 2)
        self._metrics.token_refreshes.labels("success").inc()
        logger.info("fetched a Zuora access token", extra={"expires_in": lifetime})
        return _Token(access_token, self._clock() + lifetime - margin)
