"""Adapters for the upstream APIs: each turns a RegenerationTask into one HTTP attempt."""

from service.upstream.http import UpstreamClient
from service.upstream.softwareone import SoftwareOneClient
from service.upstream.zuora import ZuoraClient, zuora_request
from service.upstream.zuora_auth import TokenUnavailable, ZuoraTokens

__all__ = [
    "SoftwareOneClient",
    "TokenUnavailable",
    "UpstreamClient",
    "ZuoraClient",
    "ZuoraTokens",
    "zuora_request",
]
