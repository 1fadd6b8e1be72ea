"""Where a webhook may be sent: an http or https URL whose host resolves only to public
addresses; private, loopback, link-local and other special ranges are refused unless
WEBHOOK_ALLOW_PRIVATE_ADDRESSES allows them (a key holder must not make the service call
into its own network: the metadata service at 169.254.169.254, the database, an admin
page on localhost)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

#: The longest URL an endpoint may have.
URL_MAX_LENGTH = 2048


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint's (its form alone), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a URL"
    if parts.scheme not in {"http", "https"}:
        return "the scheme must be http or https"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not allowed"
    if parts.fragment:
        return "a fragment is not allowed"
    del port
    return None


def _special(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def address_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` may not be called now (a host that does not resolve, or resolves to an
    address in a special range while those are not allowed), or None."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"the host does not resolve: {exc.strerror or exc}"
    if allow_private:
        return None
    for *_, address in found:
        if _special(str(address[0])):
            return f"{host} resolves to {address[0]}, a private or special address"
    return None
