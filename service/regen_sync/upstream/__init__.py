"""Adapters for the upstream APIs: each turns a RegenerationTask into one HTTP attempt."""

from regen_sync.upstream.http import UpstreamClient, upstream_http_client
from regen_sync.upstream.softwareone import SoftwareOneClient
from regen_sync.upstream.zuora import ZuoraClient, zuora_request
from regen_sync.upstream.zuora_auth import TokenUnavailable, ZuoraTokens

__all__ = [
    "SoftwareOneClient",
    "TokenUnavailable",
    "UpstreamClient",
    "ZuoraClient",
    "ZuoraTokens",
    "upstream_http_client",
    "zuora_request",
]
