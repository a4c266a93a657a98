"""Where a webhook may not go: checked at delivery time, after DNS, on the addresses the
connection then uses (the resolver refuses them), so a DNS change cannot turn an accepted
URL toward the service's own network.

Refused unless ``PRESENCE_WEBHOOK_ALLOW_PRIVATE=1``: every address that is not globally
routable (loopback, private, link-local, the cloud metadata address 169.254.169.254,
carrier-grade NAT, unspecified, reserved, documentation) and multicast; an IPv4-mapped
IPv6 address is judged as its IPv4 address.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

__all__ = ["GuardedResolver", "RefusedAddress", "check_address", "check_url", "url_problem"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def _refused(ip: IpAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_address(host: str, address: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if _refused(ip):
        raise RefusedAddress(f"{host} is {ip}, a non-public address")


def check_url(url: str) -> None:
    """An IP literal in the URL is checked here (no resolver sees it)."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    check_address(host, host)


def url_problem(url: str, *, allow_http: bool) -> str | None:
    """Why ``url`` cannot be an endpoint's URL (None: it can)."""
    if len(url) > 2048:
        return "must be at most 2048 characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"is not a URL: {exc}"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        return "must be an https:// URL" if not allow_http else "must be an http(s):// URL"
    if not parts.hostname or any(c.isspace() for c in url):
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if parts.fragment:
        return "must not have a fragment"
    return None


class GuardedResolver(AbstractResolver):
    """DNS through the default resolver, refusing a name with any non-public address."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for result in found:
            check_address(host, result["host"])
        return found

    async def close(self) -> None:
        await self._inner.close()
