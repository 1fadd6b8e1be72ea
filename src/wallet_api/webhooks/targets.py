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
#: What an endpoint's URL may be, as its schema publishes it: http or https, a host of
#: DNS labels (1 to 63 letters, digits or hyphens each) or an IPv4 address, a port from 0
#: to 65535, a path and a query; no credentials, no fragment, no IPv6 literal, no control
#: character and no white space. Those are listed, not written `\s`: `\s` is not the same
#: set in the schema's regular expressions (ECMAScript's: U+FEFF, not U+0085) and in the
#: service's (pydantic's Rust engine: U+0085, not U+FEFF), so a URL the schema allowed
#: was refused.
URL_PATTERN = (
    r"^https?://[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*"
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5]?[0-9]{1,4}))?"
    r"(?:[/?][^#\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*)?$"
)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint's (its form alone), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range raises)
    except ValueError:
        return "not a URL"
    problems = [
        (parts.scheme not in {"http", "https"}, "the scheme must be http or https"),
        (not parts.hostname, "the URL has no host"),
        (
            parts.username is not None or parts.password is not None,
            "credentials in the URL are not allowed",
        ),
        (bool(parts.fragment), "a fragment is not allowed"),
        (bool(parts.hostname) and not _encodable(parts.hostname or ""), "not a valid host name"),
    ]
    return next((problem for failed, problem in problems if failed), None)


def _encodable(host: str) -> bool:
    """Whether DNS can hold the name: labels of 1 to 63 characters."""
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052) and
#: the deprecated IPv4-compatible form.
_EMBEDDING_V4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a translation or a tunnel."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in network for network in _EMBEDDING_V4):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [each for each in found if each is not None]


def _special(address: str) -> bool:
    """Whether an address is not a public unicast one, or reaches one that is not."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    reached: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        reached += _embedded_v4(ip)
    return any(not each.is_global or each.is_multicast for each in reached)


async def address_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` may not be called now (a host that does not resolve, or resolves to an
    address in a special range while those are not allowed), or None."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        # Not what the resolver said: an attempt's error is shown to the endpoint's owner,
        # who must not learn the service's own network from it.
        return "the host does not resolve"
    if allow_private:
        return None
    if any(_special(str(address[0])) for *_, address in found):
        return "the host resolves to a private or special address"
    return None
