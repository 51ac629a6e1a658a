"""The transport stage: who the client is, whether it came over TLS, and whether that is enough.

Performs no I/O; reads no clock. ``X-Forwarded-Proto`` and ``X-Forwarded-For`` are only believed
from a TCP peer listed in ``server.trusted_proxies``; from anyone else they are attacker input
and ignored entirely (otherwise any client could claim ``https`` or someone else's address and
dodge the per-IP limits). ``Forwarded`` (RFC 7239) is not read.

Plain ``ws://`` exposes credentials and messages to anyone on the path, so it is accepted only
from a loopback peer that is not a proxy, or with the loud ``server.allow_plaintext`` switch.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Final, NamedTuple

from wsguard.core.decisions import Reject
from wsguard.core.host import Scheme
from wsguard.core.upgrade import UpgradeRequest
from wsguard.settings import ServerConfig

__all__ = ["ProxyNetwork", "Resolved", "TransportPolicy", "parse_trusted_proxy"]

ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_PLAINTEXT: Final = Reject(403, "Forbidden", "plaintext")


def parse_trusted_proxy(entry: str) -> ProxyNetwork:
    """Parse a ``server.trusted_proxies`` entry: an IP address or a CIDR network.

    Host bits are allowed (``10.0.0.7/24`` means ``10.0.0.0/24``).

    Raises:
        ValueError: when ``entry`` is neither.
    """
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None


def _address(text: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; judge them as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# The TCP peer's address is parsed by both stages of every handshake, and a client reconnects
# from the same address: remember the parses (bounded; the peer string comes from the socket,
# not from text the peer writes).
@functools.lru_cache(maxsize=1024)
def _peer(text: str) -> tuple[_Address | None, str]:
    """The TCP peer's address and its canonical text (``text`` itself when not an address)."""
    address = _address(text)
    return address, text if address is None else str(address)


class Resolved(NamedTuple):
    """The client as the transport stage sees it."""

    client_ip: str
    scheme: Scheme


class TransportPolicy:
    """Resolves the client address and effective scheme, and refuses plaintext.

    Args:
        server: the ``[server]`` section (``trusted_proxies``, ``allow_plaintext``).

    Raises:
        ValueError: when a ``trusted_proxies`` entry is invalid.
    """

    __slots__ = ("_allow_plaintext", "_proxies")

    def __init__(self, server: ServerConfig) -> None:
        self._proxies = tuple(parse_trusted_proxy(entry) for entry in server.trusted_proxies)
        self._allow_plaintext = server.allow_plaintext

    def _trusted(self, address: _Address | None) -> bool:
        if not self._proxies or address is None:
            return False
        return any(address in network for network in self._proxies)

    def resolve(self, request: UpgradeRequest) -> Resolved:
        """The client IP and effective scheme of ``request``.

        From an untrusted peer: the peer address, and ``https`` exactly when the connection is
        TLS. From a trusted proxy: the scheme is ``https`` only when the single
        ``X-Forwarded-Proto`` field's last element says so (a missing field keeps the
        connection's own scheme, for TLS passthrough); the client IP is the rightmost
        ``X-Forwarded-For`` element that is not itself a trusted proxy.
        """
        peer, peer_ip = _peer(request.peer)
        own: Scheme = "https" if request.is_tls else "http"
        if not self._trusted(peer):
            return Resolved(peer_ip, own)
        headers = request.headers
        protos = headers.get_all("X-Forwarded-Proto")
        scheme = own
        if protos:
            # Several fields mean something upstream appended instead of replacing: believe
            # none of them. A list's last element is the one our proxy wrote.
            last = protos[0].rpartition(",")[2].strip(" \t")
            https = len(protos) == 1 and last.isascii() and last.lower() == "https"
            scheme = "https" if https else "http"
        return Resolved(self._forwarded_for(headers.get_all("X-Forwarded-For"), peer_ip), scheme)

    def _forwarded_for(self, values: tuple[str, ...], peer_ip: str) -> str:
        # Walk from the right: each trusted hop appended the address it saw; the first address
        # not in our trusted set is the client. Anything left of it may be forged.
        elements = [e.strip(" \t") for value in values for e in value.split(",")]
        client = peer_ip
        for element in reversed(elements):
            address = _address(element)
            if address is None:
                return peer_ip
            client = str(address)
            if not self._trusted(address):
                return client
        # Every hop was trusted: the leftmost one is the client (or no header: the peer).
        return client

    def check(self, request: UpgradeRequest, scheme: Scheme) -> Reject | None:
        """Refuse plaintext unless it comes from a loopback non-proxy peer or is allowed."""
        if scheme == "https" or self._allow_plaintext:
            return None
        peer = _peer(request.peer)[0]
        # A trusted proxy saying http means the client's leg was plaintext, even though the
        # proxy itself sits on loopback.
        if peer is not None and peer.is_loopback and not self._trusted(peer):
            return None
        return _PLAINTEXT
