"""Where the kernel may send a webhook or a Slack message: the address a URL's host resolves
to, checked before it is used (see `rules.address_refusal`), so that the request connects to
exactly the address that was checked, not to what the name resolves to a moment later.

Loopback, private, link-local (cloud metadata), multicast, unspecified and reserved
addresses are refused unless BILLING_ALLOW_PRIVATE_WEBHOOKS is set; the name is still
resolved once and the request pinned to that address either way, so one path serves both."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from billing_kernel.errors import UrlNotAllowed
from billing_kernel.notifications.rules import address_refusal

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves a host name and port to its IP addresses (OSError when it cannot)."""

PRIVATE_ALLOWED = "BILLING_ALLOW_PRIVATE_WEBHOOKS=true"


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves `host` to."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in found]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a request to a URL goes: the address checked, and the host as the URL names it
    (for the Host header and TLS)."""

    address: str
    host: str


async def destination(
    url: str, resolve: Resolver, *, allow_private: bool, field: str
) -> Destination:
    """The address to send a request for `url` to: the host itself when it is an IP
    address, else the first address it resolves to. UrlNotAllowed naming `field` when the
    host does not resolve or, unless `allow_private`, any address it resolves to is not a
    public one (then with the `address` in its details)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = list(await resolve(host, port))
        except OSError:
            addresses = []
        if not addresses:
            raise UrlNotAllowed(f"{field}: {host!r} does not resolve", field=field) from None
    else:
        addresses = [host]
    if not allow_private:
        for address in addresses:
            kind = address_refusal(address)
            if kind is not None:
                what = f"{address} is" if host == address else f"{host!r} is {address},"
                raise UrlNotAllowed(
                    f"{field}: {what} a {kind} address; webhooks and Slack messages go only "
                    f"to public addresses ({PRIVATE_ALLOWED} allows others)",
                    field=field,
                    address=address,
                )
    return Destination(addresses[0], host)
